//! The real binaries: `sunfleet serve` seeds a data folder and takes gateways over QUIC,
//! `sunfleet simulate` streams the demo fleet to it, `sunfleet cert` issues certificates,
//! and after a clean shutdown the data is there to export.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::{Server, free_udp_port, interrupt, serve_command, stderr, stdout, sunfleet};

#[test]
fn serve_takes_the_simulated_fleet_over_quic_and_shuts_down_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_arg = data.to_str().unwrap();
    let addr = format!("127.0.0.1:{}", free_udp_port());
    let mut server = Server(
        serve_command(data_arg, &addr, 6, "4", 1)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    // The CA appears on first start.
    let began = Instant::now();
    while !data.join("tls/ca.pem").exists() {
        assert!(began.elapsed() < Duration::from_secs(60), "no CA created");
        std::thread::sleep(Duration::from_millis(50));
    }

    let out = sunfleet(&["cert", "ca", "--data", data_arg]);
    assert_eq!(out.status.code(), Some(1), "a second CA must be refused");
    assert!(stderr(&out).contains("already"), "{}", stderr(&out));
    let certs = dir.path().join("certs");
    let out = sunfleet(&[
        "cert",
        "gateway",
        "--data",
        data_arg,
        "--serial",
        "121900000001",
        "-o",
        certs.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(certs.join("121900000001.pem").exists() && certs.join("ca.pem").exists());

    let out = sunfleet(&[
        "simulate",
        "--data",
        data_arg,
        "--addr",
        &addr,
        "--systems",
        "6",
        "--seed",
        "4",
        "--speed",
        "900",
        "--at",
        "2026-06-01T18:00",
        "--duration",
        "5",
        "--progress-every",
        "1",
    ]);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    let text = stdout(&out);
    let value = |label: &str| -> u64 {
        text.lines()
            .find(|l| l.starts_with(label))
            .and_then(|l| l.split_whitespace().last())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {label} in {text}"))
    };
    assert_eq!(value("connections"), 6, "{text}");
    assert!(value("readings acked") > 0, "{text}");
    assert_eq!(value("batches unacked"), 0, "{text}");
    assert!(
        stderr(&out).contains("connected"),
        "progress lines: {}",
        stderr(&out)
    );

    interrupt(&server.0);
    let status = server.0.wait().unwrap();
    assert!(status.success(), "serve exit: {status}");

    let csv = dir.path().join("out.csv");
    let out = sunfleet(&[
        "export",
        "--data",
        data_arg,
        "--from",
        "2026-06-01",
        "--to",
        "2026-06-02",
        "--format",
        "csv",
        "-o",
        csv.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let rows = std::fs::read_to_string(&csv).unwrap().lines().count();
    assert!(rows > 1, "exported {rows} lines");

    // The fleet checks ran on their schedule: judged at today's date, the systems simulated
    // on 2026-06-01 have not reported for months.
    let out = sunfleet(&[
        "sql",
        "--data",
        data_arg,
        "--format",
        "csv",
        "SELECT count(DISTINCT e.system_id) AS n FROM events e JOIN systems s ON s.id = e.system_id
         WHERE e.code = 'gateway_not_reporting' AND e.ended_us IS NULL AND s.status = 'comm'",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let flagged: u32 = stdout(&out).lines().nth(1).unwrap().parse().unwrap();
    assert!(flagged > 0, "no system flagged: {}", stdout(&out));
}
