//! `sunfleet soak`, short and seeded: the server killed, kept down for a backlog storm, its
//! disk filled (when the test runs as root) and slowed, with gateways, portal users and
//! analysts at work; then every check of the soak must hold.

use crate::{stderr, stdout, sunfleet};

#[test]
fn a_short_soak_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("soak");
    let out = sunfleet(&[
        "soak",
        "--minutes",
        "0.75",
        "--seed",
        "3",
        "--gateways",
        "40",
        "--speed",
        "600",
        "--kill-every",
        "10",
        "--users",
        "2",
        "--disk-mib",
        "256",
        "--data",
        data.to_str().unwrap(),
    ]);
    let table = stdout(&out);
    assert!(out.status.success(), "{table}\n{}", stderr(&out));
    assert!(table.contains("soak passed"), "{table}");
    for check in [
        "acknowledged readings: all there, once",
        "hourly rollups = raw readings",
        "every task ran exactly once",
        "compaction: one file per closed day",
        "SIGTERM stops the server cleanly",
        "gateways delivered everything",
    ] {
        let line = table.lines().find(|l| l.starts_with(check));
        assert!(
            line.is_some_and(|l| l.contains(" ok: ")),
            "{check}\n{table}"
        );
    }
    // Faults really happened: kills and the storm's long outage.
    let kills: u32 = table
        .lines()
        .find_map(|l| l.strip_prefix("SIGKILL of the server"))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap();
    assert!(kills >= 3, "{table}");
    assert!(
        table.contains("0 missing, 0 stored twice, 0 with another value"),
        "{table}"
    );
}
