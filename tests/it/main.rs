//! End-to-end tests of the `sunfleet` binary.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers: a panic is the failure report

mod activation;
mod api_schema;
mod browser;
mod demo;
mod diagnostics;
mod foreign_quic;
mod http;
mod import_export;
mod members;
mod owner_mail;
mod self_service_replacements;
mod self_service_returns;
mod serve;
mod soak;
mod sql_endpoints;
mod sweep;
mod system_devices;
mod system_pages;
mod system_settings;
mod tasks;

use std::path::PathBuf;
use std::process::{Child, Command, Output};

pub fn sunfleet(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sunfleet"))
        .args(args)
        .env("SUNFLEET_LOG", "warn")
        .output()
        .expect("the binary runs")
}

pub fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `sunfleet serve`, killed if the test ends without stopping it.
pub struct Server(pub Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn interrupt(child: &Child) {
    // SIGINT, as Ctrl-C would send: the server shuts down in order.
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// `sunfleet serve` on `data` with QUIC on `quic`, its other listeners on free loopback
/// ports and the demo fleet of `systems` systems (seed `seed`) in the registry; the caller
/// sets output and spawns it.
pub fn serve_command(
    data: &str,
    quic: &str,
    systems: u32,
    seed: &str,
    check_every_s: u32,
) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sunfleet"));
    command
        .args(["serve", "--data", data, "--quic", quic])
        .args(["--postgres", &format!("127.0.0.1:{}", free_tcp_port())])
        .args(["--flight", &format!("127.0.0.1:{}", free_tcp_port())])
        .args(["--portal", &format!("127.0.0.1:{}", free_tcp_port())])
        .args(["--seed-systems", &systems.to_string(), "--seed", seed])
        .args(["--check-every", &check_every_s.to_string()])
        .env("SUNFLEET_LOG", "warn");
    command
}

/// The pinned Python with the interop tools (`bash scripts/test` prepares it).
pub fn python() -> PathBuf {
    if let Some(python) = std::env::var_os("SUNFLEET_PYTHON") {
        return PathBuf::from(python);
    }
    let cached = std::env::home_dir()
        .unwrap_or_default()
        .join(".cache/sunfleet-venv-interop/bin/python");
    assert!(
        cached.exists(),
        "interop tests need the pinned Python tools: run `bash scripts/test` once (it creates \
         them), or set SUNFLEET_PYTHON to a python with scripts/interop-requirements.txt"
    );
    cached
}

pub fn interop_script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/interop")
        .join(name)
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
        "demo", "serve", "simulate", "sql", "import", "export", "cert", "user",
    ] {
        assert!(text.contains(command), "{command} missing from --help");
    }
}
