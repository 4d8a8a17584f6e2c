//! End-to-end tests of the `sunfleet` binary.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers: a panic is the failure report

mod import_export;
mod serve;
mod tasks;

use std::process::{Command, Output};

pub fn sunfleet(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sunfleet"))
        .args(args)
        .env("SUNFLEET_LOG", "warn")
        .output()
        .expect("the binary runs")
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn dry_run(seed: &str) -> Output {
    sunfleet(&[
        "simulate",
        "--dry-run",
        "--systems",
        "30",
        "--days",
        "1",
        "--seed",
        seed,
    ])
}

#[test]
fn dry_run_prints_the_same_checksum_every_time() {
    let first = dry_run("7");
    assert!(first.status.success(), "{}", stderr(&first));
    let second = dry_run("7");
    assert_eq!(stdout(&first), stdout(&second));
    let text = stdout(&first);
    assert!(text.contains("checksum"), "{text}");
    assert!(text.contains("microinverter readings"), "{text}");
    assert_ne!(stdout(&first), stdout(&dry_run("8")));
}

#[test]
fn dry_run_lists_the_ground_truth() {
    let out = sunfleet(&[
        "simulate",
        "--dry-run",
        "--list-faults",
        "--systems",
        "300",
        "--seed",
        "7",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.starts_with("system\tfault\tdetail\n"), "{text}");
    assert!(text.lines().count() > 5, "{text}");
    assert!(text.contains("under_production"), "{text}");
}

#[test]
fn commands_not_built_yet_say_so_and_fail() {
    let out = sunfleet(&["demo"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(stderr(&out).contains("not built yet"), "{}", stderr(&out));
    assert!(stdout(&out).is_empty());
}

#[test]
fn bad_arguments_get_a_clear_error() {
    let out = sunfleet(&["simulate", "--dry-run", "--start", "2026-02-30"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("2026-02-30"), "{}", stderr(&out));

    let out = sunfleet(&["simulate", "--dry-run", "--systems", "0"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("--systems"), "{}", stderr(&out));
}

#[test]
fn help_lists_every_subcommand() {
    let out = sunfleet(&["--help"]);
    assert!(out.status.success());
    let text = stdout(&out);
    for command in [
        "demo", "serve", "simulate", "sql", "import", "export", "cert",
    ] {
        assert!(text.contains(command), "{command} missing from --help");
    }
}
