//! A foreign QUIC client against the real server: `tests/interop/foreign_quic.py` (aioquic)
//! connects to `sunfleet serve` without a client certificate, with certificates from another
//! CA, expired, for an unregistered serial or naming no serial, with the wrong ALPN, and with
//! a valid gateway certificate sends malformed and out-of-place frames, stalls, and opens
//! streams it may not; the script checks every outcome against `ingest/PROTOCOL.md`.
//! Meanwhile the simulated fleet (`sunfleet simulate`) streams to the same server: it stays
//! connected and keeps getting readings acknowledged during the hostile connections and
//! after them, and the foreign client's own well-formed batch is stored.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sunfleet::simulator::demo_fleet;

use crate::{
    Server, free_udp_port, interop_script, interrupt, python, serve_command, stderr, stdout,
    sunfleet,
};

const WAIT: Duration = Duration::from_secs(60);
/// The demo fleet both sides use: the server registers `REGISTERED` systems and the
/// simulator drives the first `SIMULATED`; the foreign client plays the gateways of the
/// others (a new connection of a gateway would replace the simulator's).
const SEED: &str = "4";
const REGISTERED: u32 = 9;
const SIMULATED: u32 = 6;

/// Every scenario the script runs (without `--slow`).
const SCENARIOS: &[&str] = &[
    "ready",
    "tls-no-client-certificate",
    "tls-certificate-from-another-ca",
    "tls-certificate-from-unknown-ca",
    "tls-expired-certificate",
    "tls-wrong-alpn",
    "certificate-unregistered-serial",
    "certificate-common-name-not-a-serial",
    "certificate-without-common-name",
    "first-bytes-garbage",
    "first-frame-version-2",
    "first-frame-unknown-kind-9",
    "first-frame-unknown-kind-0",
    "first-frame-length-over-4mib",
    "first-frame-length-4gib",
    "first-frame-heartbeat",
    "first-frame-valid-batch",
    "hello-short-body",
    "hello-trailing-bytes",
    "hello-bad-utf8",
    "hello-text-over-1kib",
    "hello-serial-13-digits",
    "hello-serial-mismatch",
    "hello-truncated-then-fin",
    "header-truncated-then-fin",
    "empty-stream-fin",
    "after-hello-garbage",
    "after-hello-unknown-kind-200",
    "after-hello-length-over-4mib",
    "batch-garbage-body",
    "batch-unknown-body-version",
    "batch-trailing-bytes",
    "batch-row-count-beyond-body",
    "batch-reading-serial-13-digits",
    "batch-value-out-of-range",
    "batch-reading-time-i64-max",
    "batch-reading-time-i64-min",
    "batch-reading-time-year-10000",
    "batch-reading-time-before-2000",
    "batch-names-another-gateway",
    "batch-sequence-0",
    "batch-truncated-then-fin",
    "task-result-unknown-state",
    "error-frame-unknown-code",
    "heartbeat-short-body",
    "second-hello",
    "gateway-sends-welcome",
    "gateway-sends-ack",
    "gateway-sends-task",
    "batch-then-garbage",
    "task-result-for-unknown-task",
    "gateway-error-frame",
    "batch-from-unregistered-device",
    "stream-reset-before-hello",
    "stream-reset-mid-batch",
    "second-bidirectional-stream",
    "unidirectional-stream",
    "healthy-while-others-stall",
    "silent-no-stream",
    "hello-header-then-stall",
    "healthy-after-all",
];

/// The simulator's progress lines (standard error), collected as they come.
struct ProgressLines(Arc<Mutex<Vec<String>>>);

impl ProgressLines {
    fn follow(child: &mut Child) -> Self {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        let stream = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { return };
                sink.lock().unwrap().push(line);
            }
        });
        Self(lines)
    }

    fn snapshot(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }

    /// Waits for a line, among those from index `from` on, that passes `check`.
    fn wait_for(&self, from: usize, what: &str, check: impl Fn(&str) -> bool) {
        let began = Instant::now();
        loop {
            let lines = self.snapshot();
            if lines.iter().skip(from).any(|line| check(line.as_str())) {
                return;
            }
            assert!(
                began.elapsed() < WAIT,
                "the simulator never showed {what}:\n{}",
                lines.join("\n")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// `readings <sent> sent <acked> acked` in a progress line.
fn readings_acked(line: &str) -> Option<u64> {
    let rest = line.split(" · readings ").nth(1)?;
    rest.split_whitespace().nth(2)?.parse().ok()
}

fn all_connected(line: &str) -> bool {
    line.contains(&format!(" {SIMULATED}/{SIMULATED} connected "))
}

/// Waits for a child to exit, sending SIGINT every second if `interrupting`.
fn wait_exit(child: &mut Child, what: &str, interrupting: bool) -> std::process::ExitStatus {
    let began = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(began.elapsed() < WAIT, "{what} did not stop");
        if interrupting {
            interrupt(child);
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn count(data: &str, sql: &str) -> u64 {
    let out = sunfleet(&["sql", "--data", data, "--format", "csv", sql]);
    assert!(out.status.success(), "{sql}: {}", stderr(&out));
    let text = stdout(&out);
    text.lines()
        .nth(1)
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("{sql}: {text}"))
}

#[test]
fn a_foreign_quic_client_gets_the_documented_errors_and_the_fleet_keeps_streaming() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_arg = data.to_str().unwrap();
    let addr = format!("127.0.0.1:{}", free_udp_port());
    let log_path = dir.path().join("serve.log");
    let mut server = Server(
        serve_command(data_arg, &addr, REGISTERED, SEED, 3600)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log_path).unwrap())
            .spawn()
            .unwrap(),
    );
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let began = Instant::now();
    while !data.join("tls/ca.pem").exists() {
        assert!(began.elapsed() < WAIT, "no CA created:\n{}", log());
        std::thread::sleep(Duration::from_millis(50));
    }

    let fleet = demo_fleet(SEED.parse().unwrap(), REGISTERED);
    let own = fleet.system(SIMULATED);
    let gateway = own.gateway.serial.to_string();
    let micro = own.micros[0].serial;
    let spares: Vec<String> = (SIMULATED + 1..REGISTERED)
        .map(|index| fleet.system(index).gateway.serial.to_string())
        .collect();
    assert_eq!(spares.len(), 2, "the script stalls two spare gateways");
    let certs = dir.path().join("certs");
    let out = sunfleet(&[
        "cert",
        "gateway",
        "--data",
        data_arg,
        "--serial",
        &gateway,
        "-o",
        certs.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));

    // The fleet streams (ten simulated minutes a second) before, during and after.
    let mut simulator = Server(
        Command::new(env!("CARGO_BIN_EXE_sunfleet"))
            .args([
                "simulate",
                "--data",
                data_arg,
                "--addr",
                &addr,
                "--systems",
                &SIMULATED.to_string(),
                "--seed",
                SEED,
                "--speed",
                "600",
                "--at",
                "2026-06-01T10:00",
                "--duration",
                "600",
                "--progress-every",
                "0.5",
            ])
            .env("SUNFLEET_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let progress = ProgressLines::follow(&mut simulator.0);
    progress.wait_for(0, "every gateway connected and acknowledged", |line| {
        all_connected(line) && readings_acked(line).is_some_and(|n| n > 0)
    });

    let tls = data.join("tls");
    let out = Command::new(python())
        .arg(interop_script("foreign_quic.py"))
        .args([
            "--addr",
            &addr,
            "--ca",
            tls.join("ca.pem").to_str().unwrap(),
            "--ca-key",
            tls.join("ca.key").to_str().unwrap(),
            "--cert",
            certs.join(format!("{gateway}.pem")).to_str().unwrap(),
            "--key",
            certs.join(format!("{gateway}.key")).to_str().unwrap(),
            "--spare-serial",
            &spares[0],
            "--spare-serial",
            &spares[1],
            "--micro",
            &micro.value().to_string(),
        ])
        .output()
        .unwrap();
    let text = stdout(&out);
    assert!(
        out.status.success(),
        "outcomes PROTOCOL.md does not document:\n{text}\n{}\nserver log:\n{}",
        stderr(&out),
        log()
    );
    for scenario in SCENARIOS {
        let ok = format!("ok {scenario}:");
        assert!(
            text.lines().any(|line| line.starts_with(&ok)),
            "no `{ok}` line:\n{text}"
        );
    }
    let n = SCENARIOS.len();
    assert!(
        text.contains(&format!("summary: {n} scenarios, {n} as documented, 0 not")),
        "{text}"
    );

    // The fleet is still served: more readings acknowledged after the last hostile
    // connection, every gateway still connected.
    let seen = progress.snapshot();
    let acked_before = seen
        .iter()
        .filter_map(|l| readings_acked(l))
        .max()
        .unwrap_or(0);
    progress.wait_for(
        seen.len(),
        "readings acknowledged after the script",
        |line| all_connected(line) && readings_acked(line).is_some_and(|n| n > acked_before),
    );
    let status = wait_exit(&mut simulator.0, "the simulator", true);
    let mut totals = String::new();
    simulator
        .0
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut totals)
        .unwrap();
    assert!(
        status.success(),
        "simulator: {status}\n{totals}\n{}",
        progress.snapshot().join("\n")
    );
    let value = |label: &str| -> u64 {
        totals
            .lines()
            .find(|l| l.starts_with(label))
            .and_then(|l| l.split_whitespace().last())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {label} in {totals}"))
    };
    // No simulated gateway was cut off or turned away, and nothing is left unacknowledged.
    assert_eq!(value("connections"), u64::from(SIMULATED), "{totals}");
    assert_eq!(value("refused gateways"), 0, "{totals}");
    assert_eq!(value("batches unacked"), 0, "{totals}");
    assert!(value("readings acked") > acked_before, "{totals}");

    interrupt(&server.0);
    let status = wait_exit(&mut server.0, "the server", false);
    let log = log();
    assert!(status.success(), "serve exit: {status}\n{log}");
    assert!(!log.contains("panicked"), "the server panicked:\n{log}");
    assert!(
        log.contains("closing connection"),
        "no refusal logged:\n{log}"
    );

    // The foreign client's well-formed batches were stored, and so was the fleet's data.
    let stored = count(
        data_arg,
        &format!(
            "SELECT count(*) AS n FROM readings WHERE serial = {}",
            micro.value()
        ),
    );
    assert!(stored >= 1, "the foreign client's reading was not stored");
    let fleet_rows = count(
        data_arg,
        &format!("SELECT count(*) AS n FROM readings WHERE system_id <= {SIMULATED}"),
    );
    assert!(
        fleet_rows > 0,
        "the simulated fleet's readings were not stored"
    );
}
