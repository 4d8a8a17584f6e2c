//! Analysts' SQL endpoints, driven by stock clients against the real server: `psql` and
//! psycopg over the Postgres wire protocol, the ADBC driver over Arrow Flight SQL (password
//! sign-in, company scope, refusals, TLS), agreeing with each other and with DuckDB reading
//! the same Parquet files.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use sunfleet_engine::registry::Registry;

use crate::{
    Server, free_tcp_port, free_udp_port, interop_script, interrupt, python, stderr, stdout,
    sunfleet,
};

const PASSWORD: &str = "a long analyst password";

fn start_server(data: &Path, quic: &str, (postgres, flight): (u16, u16), extra: &[&str]) -> Server {
    let postgres_addr = format!("127.0.0.1:{postgres}");
    let flight_addr = format!("127.0.0.1:{flight}");
    let portal_addr = format!("127.0.0.1:{}", crate::free_tcp_port());
    let mut args = vec![
        "serve",
        "--data",
        data.to_str().unwrap(),
        "--quic",
        quic,
        "--postgres",
        &postgres_addr,
        "--flight",
        &flight_addr,
        "--portal",
        &portal_addr,
        "--seed-systems",
        "12",
        "--seed",
        "4",
        "--check-every",
        "3600",
    ];
    args.extend_from_slice(extra);
    let server = Server(
        Command::new(env!("CARGO_BIN_EXE_sunfleet"))
            .args(&args)
            .env("SUNFLEET_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let began = Instant::now();
    for addr in [&postgres_addr, &flight_addr] {
        while TcpStream::connect(addr).is_err() {
            assert!(
                began.elapsed() < Duration::from_secs(60),
                "the SQL endpoint {addr} did not open"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    server
}

/// `psql` with unaligned, comma-separated output and no startup file.
fn psql(connection: &str, password: &str, sql: &str) -> Output {
    Command::new("psql")
        .args([
            "-X",
            "-A",
            "-t",
            "-F",
            ",",
            "-v",
            "ON_ERROR_STOP=1",
            connection,
            "-c",
            sql,
        ])
        .env("PGPASSWORD", password)
        .env("PGCONNECT_TIMEOUT", "20")
        .output()
        .expect("psql runs (apt-get install postgresql-client; .ci/run installs it)")
}

fn psql_ok(connection: &str, sql: &str) -> Vec<String> {
    let out = psql(connection, PASSWORD, sql);
    assert!(out.status.success(), "{sql}: {}", stderr(&out));
    stdout(&out).lines().map(str::to_owned).collect()
}

fn add_analyst(data: &str, email: &str, company: i64) {
    let out = sunfleet(&[
        "user",
        "add",
        "--data",
        data,
        "--email",
        email,
        "--role",
        "analyst",
        "--company",
        &company.to_string(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut child = Command::new(env!("CARGO_BIN_EXE_sunfleet"))
        .args(["user", "password", "--data", data, "--email", email])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{PASSWORD}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
}

/// What `postgres_client.py` (psycopg) prints for `system`, signed in as `user`.
fn psycopg(port: u16, user: &str, system: u32) -> String {
    let out = Command::new(python())
        .arg(interop_script("postgres_client.py"))
        .args(["127.0.0.1", &port.to_string(), user, PASSWORD])
        .arg(system.to_string())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out)
}

/// Runs `statements` with the ADBC Flight SQL driver; each statement's output lines (or one
/// "error: …" line). A failed sign-in is one "error: …" result.
fn adbc(
    uri: &str,
    user: &str,
    password: &str,
    ca: Option<&Path>,
    statements: &[&str],
) -> Vec<Vec<String>> {
    let mut command = Command::new(python());
    command
        .arg(interop_script("flight_sql_client.py"))
        .args([uri, user, password]);
    if let Some(ca) = ca {
        command.arg(ca);
    }
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{}", statements.join("\n")).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out)
        .split("--\n")
        .filter(|chunk| !chunk.is_empty())
        .map(|chunk| chunk.lines().map(str::to_owned).collect())
        .collect()
}

/// "system,joules,rows" lines into a map.
fn energy_lines(lines: &[String]) -> BTreeMap<u32, (u64, u64)> {
    lines
        .iter()
        .map(|line| {
            let fields: Vec<&str> = line.split(',').collect();
            (
                fields[0].parse().unwrap(),
                (fields[1].parse().unwrap(), fields[2].parse().unwrap()),
            )
        })
        .collect()
}

#[test]
fn sql_clients_sign_in_see_their_company_and_agree_with_duckdb() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_arg = data.to_str().unwrap();
    let quic = format!("127.0.0.1:{}", free_udp_port());
    let (port, flight_port) = (free_tcp_port(), free_tcp_port());
    let mut server = start_server(&data, &quic, (port, flight_port), &[]);

    // Readings arrive over QUIC from the simulated fleet.
    let out = sunfleet(&[
        "simulate",
        "--data",
        data_arg,
        "--addr",
        &quic,
        "--systems",
        "12",
        "--seed",
        "4",
        "--speed",
        "900",
        "--at",
        "2026-06-01T10:00",
        "--duration",
        "4",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));

    // Two companies' analysts; what each may see comes from the registry.
    let registry = Registry::open(sunfleet::data::registry_path(&data)).unwrap();
    let now = sunfleet_engine::time::now_micros();
    let companies: Vec<i64> = registry
        .read(|c| {
            let mut statement = c.prepare("SELECT id FROM companies ORDER BY id").unwrap();
            let ids = statement
                .query_map([], |row| row.get(0))
                .unwrap()
                .map(Result::unwrap)
                .collect();
            Ok(ids)
        })
        .unwrap();
    let mut visible: Vec<(i64, Vec<u32>)> = companies
        .iter()
        .map(|&c| {
            let systems = registry.systems_of_company(c, now).unwrap();
            (c, systems.iter().collect::<Vec<u32>>())
        })
        .filter(|(_, systems)| !systems.is_empty())
        .collect();
    assert!(
        visible.len() >= 2,
        "the fleet needs two companies with systems"
    );
    // The company that sees least, and the one that sees most.
    visible.sort_by_key(|(_, systems)| systems.len());
    let (first, first_systems) = visible[0].clone();
    let (second, second_systems) = visible[visible.len() - 1].clone();
    assert_ne!(first_systems, second_systems);
    add_analyst(data_arg, "first@analysts.example", first);
    add_analyst(data_arg, "second@analysts.example", second);
    let connect = |user: &str| format!("host=127.0.0.1 port={port} user={user} dbname=sunfleet");
    let first_conn = connect("first@analysts.example");
    let second_conn = connect("second@analysts.example");

    // Each sees exactly its company's systems, in the registry tables and the telemetry.
    for (conn, expected) in [
        (&first_conn, &first_systems),
        (&second_conn, &second_systems),
    ] {
        let ids: Vec<u32> = psql_ok(conn, "SELECT id FROM systems ORDER BY id")
            .iter()
            .map(|l| l.parse().unwrap())
            .collect();
        assert_eq!(&ids, expected);
        let reporting: Vec<u32> =
            psql_ok(conn, "SELECT DISTINCT system_id FROM readings ORDER BY 1")
                .iter()
                .map(|l| l.parse().unwrap())
                .collect();
        assert!(!reporting.is_empty(), "no readings visible");
        assert!(
            reporting.iter().all(|s| expected.contains(s)),
            "{reporting:?} vs {expected:?}"
        );
    }

    // Writes, file access and settings are refused with the reason; the session goes on.
    for sql in [
        "COPY (SELECT 1) TO '/tmp/sunfleet-pg-copy.csv'",
        "CREATE EXTERNAL TABLE x STORED AS PARQUET LOCATION '/tmp'",
        "SET datafusion.execution.target_partitions = 1",
        "INSERT INTO systems (id) VALUES (1)",
    ] {
        let out = psql(&first_conn, PASSWORD, sql);
        assert!(!out.status.success(), "{sql} was accepted");
        assert!(
            stderr(&out).contains("refused") || stderr(&out).contains("not"),
            "{sql}: {}",
            stderr(&out)
        );
    }
    let out = psql(&first_conn, PASSWORD, "SELEC 1");
    assert!(stderr(&out).contains("SELEC"), "{}", stderr(&out));

    // No anonymous access, no guessing: one answer for a wrong password and an unknown user.
    for (conn, password) in [
        (&first_conn, "not the password"),
        (&connect("nobody@analysts.example"), PASSWORD),
    ] {
        let out = psql(conn, password, "SELECT 1");
        assert!(!out.status.success());
        assert!(
            stderr(&out).contains("password authentication failed"),
            "{}",
            stderr(&out)
        );
    }

    // psycopg: bound parameters (text and binary), a transaction, the same numbers as psql.
    let system = first_systems[0];
    let by_psql = psql_ok(
        &first_conn,
        &format!(
            "SELECT system_id, sum(energy_j), count(*) FROM readings WHERE system_id = {system} GROUP BY 1"
        ),
    );
    let by_psycopg = psycopg(port, "first@analysts.example", system);
    assert!(
        by_psycopg.contains(&format!("energy,{}", by_psql[0])),
        "{by_psycopg} vs {by_psql:?}"
    );
    let name = psql_ok(
        &first_conn,
        &format!("SELECT name FROM systems WHERE id = {system}"),
    );
    assert!(
        by_psycopg.contains(&format!("name,{system},{}", name[0])),
        "{by_psycopg}"
    );
    // Another company's system is not there, whatever the parameters say.
    let other = visible
        .iter()
        .flat_map(|(_, systems)| systems)
        .find(|s| !first_systems.contains(s))
        .expect("a system the first company may not see");
    assert_eq!(
        psycopg(port, "first@analysts.example", *other),
        "",
        "another company's system leaked"
    );

    let fleet_sql = "SELECT system_id, sum(energy_j), count(*) FROM readings GROUP BY 1 ORDER BY 1";
    let first_energy = energy_lines(&psql_ok(&first_conn, fleet_sql));

    // ADBC over Arrow Flight SQL: same user, same rows, same refusals.
    let flight_uri = format!("grpc://127.0.0.1:{flight_port}");
    let results = adbc(
        &flight_uri,
        "first@analysts.example",
        PASSWORD,
        None,
        &[
            "SELECT id FROM systems ORDER BY id",
            fleet_sql,
            "COPY (SELECT 1) TO '/tmp/sunfleet-flight-copy.csv'",
        ],
    );
    let ids: Vec<u32> = results[0].iter().map(|l| l.parse().unwrap()).collect();
    assert_eq!(ids, first_systems);
    assert_eq!(energy_lines(&results[1]), first_energy);
    assert!(
        results[2][0].contains("statement refused"),
        "{:?}",
        results[2]
    );
    let refused = adbc(
        &flight_uri,
        "first@analysts.example",
        "not the password",
        None,
        &["SELECT 1"],
    );
    assert!(
        refused[0][0].contains("password authentication failed"),
        "{refused:?}"
    );

    // After a clean shutdown the Parquet files hold the same readings: DuckDB agrees.
    interrupt(&server.0);
    assert!(server.0.wait().unwrap().success());
    let out = Command::new(python())
        .arg(interop_script("duckdb_energy.py"))
        .arg(&data)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let lines: Vec<String> = stdout(&out).lines().map(str::to_owned).collect();
    let duckdb_energy: BTreeMap<u32, (u64, u64)> = energy_lines(&lines)
        .into_iter()
        .filter(|(system, _)| first_systems.contains(system))
        .collect();
    assert_eq!(first_energy, duckdb_energy);

    // With TLS required, plaintext is refused and a verified TLS connection works.
    let _server = start_server(&data, &quic, (port, flight_port), &["--sql-tls"]);
    let out = psql(
        &format!("{first_conn} sslmode=disable"),
        PASSWORD,
        "SELECT 1",
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("encrypted connections only"),
        "{}",
        stderr(&out)
    );
    let ca = data.join("tls/ca.pem");
    let verified = format!(
        "host=localhost port={port} user=first@analysts.example dbname=sunfleet sslmode=verify-full sslrootcert={}",
        ca.display()
    );
    let over_tls = adbc(
        &format!("grpc+tls://localhost:{flight_port}"),
        "first@analysts.example",
        PASSWORD,
        Some(&ca),
        &["SELECT count(*) FROM systems"],
    );
    assert_eq!(over_tls[0], vec![first_systems.len().to_string()]);
    let plaintext = adbc(
        &format!("grpc://127.0.0.1:{flight_port}"),
        "first@analysts.example",
        PASSWORD,
        None,
        &["SELECT 1"],
    );
    assert!(plaintext[0][0].starts_with("error"), "{plaintext:?}");
    assert_eq!(
        psql_ok(&verified, "SELECT count(*) FROM systems"),
        vec![first_systems.len().to_string()]
    );
}

/// `standing_sql_session.py`: one open connection whose statements the test releases one
/// at a time (a line on its standard input each), so something can change in between.
struct StandingSession {
    child: std::process::Child,
    input: std::process::ChildStdin,
    output: std::io::Lines<std::io::BufReader<std::process::ChildStdout>>,
}

impl StandingSession {
    /// Signs in and runs a first statement; its answer line.
    fn open(protocol: &str, port: u16, user: &str, password: &str) -> (Self, String) {
        let mut child = Command::new(python())
            .arg(interop_script("standing_sql_session.py"))
            .args([protocol, "127.0.0.1", &port.to_string(), user, password])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let input = child.stdin.take().unwrap();
        let mut output = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let first = output.next().unwrap().unwrap();
        assert_eq!(output.next().unwrap().unwrap(), "ready");
        (
            Self {
                child,
                input,
                output,
            },
            first,
        )
    }

    /// Runs the statement again on the same connection; its answer line.
    fn again(&mut self) -> String {
        writeln!(self.input, "go").unwrap();
        self.output.next().unwrap().unwrap()
    }
}

impl Drop for StandingSession {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn sql_sign_ins_end_with_deactivation_or_a_new_password_and_owners_get_no_sql() {
    use crate::demo::{PASSWORD as DEMO_PASSWORD, start_demo};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("demo");
    let demo = start_demo(&data, free_tcp_port());
    let (postgres, flight) = demo.sql_ports;
    let analyst = demo.accounts["analyst (SQL only)"].clone();
    let owner = &demo.accounts["system owner (read-only)"];
    let admin = &demo.accounts["installer administrator"];
    let connect =
        |user: &str| format!("host=127.0.0.1 port={postgres} user={user} dbname=sunfleet");

    // Owners see their systems through the portal's pages only, on every SQL surface.
    let out = psql(&connect(owner), DEMO_PASSWORD, "SELECT 1");
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("has no SQL access"),
        "{}",
        stderr(&out)
    );
    let by_adbc = adbc(
        &format!("grpc://127.0.0.1:{flight}"),
        owner,
        DEMO_PASSWORD,
        None,
        &["SELECT 1"],
    );
    assert!(by_adbc[0][0].contains("no SQL access"), "{by_adbc:?}");

    let registry = Registry::open(sunfleet::data::registry_path(&data)).unwrap();
    let analyst_user = registry.user_by_email(&analyst).unwrap().unwrap();
    let admin_user = registry.user_by_email(admin).unwrap().unwrap();
    let company = analyst_user.company_id.unwrap();
    let now = sunfleet_engine::time::now_micros;

    // Deactivated: an open Postgres connection and a Flight token stop at their next statement.
    let (mut by_postgres, first) =
        StandingSession::open("postgres", postgres, &analyst, DEMO_PASSWORD);
    assert!(first.starts_with("count,"), "{first}");
    let (mut by_flight, first) = StandingSession::open("flight", flight, &analyst, DEMO_PASSWORD);
    assert!(first.starts_with("count,"), "{first}");
    registry
        .set_user_active(company, analyst_user.id, false, admin_user.id, now())
        .unwrap();
    for session in [&mut by_postgres, &mut by_flight] {
        let answer = session.again();
        assert!(answer.contains("no longer holds"), "{answer}");
    }
    registry
        .set_user_active(company, analyst_user.id, true, admin_user.id, now())
        .unwrap();
    // Reactivated, the same sign-ins hold again (their password did not change).
    assert!(by_postgres.again().starts_with("count,"));

    // A new password: the old sign-ins end, the old password no longer opens, the new one does.
    let new_password = "a brand new analyst password";
    registry.set_password(&analyst, new_password).unwrap();
    for session in [&mut by_postgres, &mut by_flight] {
        let answer = session.again();
        assert!(answer.contains("no longer holds"), "{answer}");
    }
    assert!(
        !psql(&connect(&analyst), DEMO_PASSWORD, "SELECT 1")
            .status
            .success()
    );
    let out = psql(&connect(&analyst), new_password, "SELECT 1");
    assert!(out.status.success(), "{}", stderr(&out));

    // Guessing is throttled: after five failures for one e-mail, even the right password
    // waits, on both endpoints and in the portal, which share the count.
    for _ in 0..5 {
        let out = psql(&connect(admin), "a wrong guess", "SELECT 1");
        assert!(
            stderr(&out).contains("password authentication failed"),
            "{}",
            stderr(&out)
        );
    }
    let out = psql(&connect(admin), DEMO_PASSWORD, "SELECT 1");
    assert!(
        stderr(&out).contains("too many failed sign-ins"),
        "{}",
        stderr(&out)
    );
    let by_adbc = adbc(
        &format!("grpc://127.0.0.1:{flight}"),
        admin,
        DEMO_PASSWORD,
        None,
        &["SELECT 1"],
    );
    assert!(
        by_adbc[0][0].contains("too many failed sign-ins"),
        "{by_adbc:?}"
    );
    let mut browser = crate::http::Client::new(&demo.portal);
    assert_eq!(browser.sign_in(admin, DEMO_PASSWORD).status, 429);

    // Every attempt is in the audit log of the account it named, with where it came from.
    let actions = |company: i64, email: &str| -> Vec<(String, String)> {
        registry
            .company_audit_log(company, 500)
            .unwrap()
            .into_iter()
            .filter(|e| e.user_email.as_deref() == Some(email))
            .map(|e| (e.action, e.details))
            .collect()
    };
    let admin_log = actions(admin_user.company_id.unwrap(), admin);
    let count = |log: &[(String, String)], action: &str, from: &str| {
        log.iter()
            .filter(|(a, d)| a == action && d.starts_with(from))
            .count()
    };
    assert_eq!(
        count(&admin_log, "sql_sign_in_failed", "Postgres, from 127.0.0.1"),
        5
    );
    assert_eq!(count(&admin_log, "sql_sign_in_throttled", "Postgres"), 1);
    assert_eq!(count(&admin_log, "sql_sign_in_throttled", "Flight SQL"), 1);
    assert_eq!(count(&admin_log, "sign_in_throttled", "portal"), 1);
    let analyst_log = actions(company, &analyst);
    assert!(
        count(&analyst_log, "sql_sign_in", "Flight SQL") >= 1,
        "{analyst_log:?}"
    );
    assert!(
        count(&analyst_log, "sql_sign_in_failed", "Postgres") >= 1,
        "{analyst_log:?}"
    );
}

#[test]
fn psql_and_flight_sql_meet_the_row_cap_time_limit_and_memory_pool() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let quic = format!("127.0.0.1:{}", free_udp_port());
    let (port, flight_port) = (free_tcp_port(), free_tcp_port());
    let _server = start_server(
        &data,
        &quic,
        (port, flight_port),
        &[
            "--sql-max-rows",
            "1000",
            "--query-timeout-s",
            "2",
            "--query-memory-mib",
            "4",
        ],
    );
    add_analyst(data.to_str().unwrap(), "limits@analysts.example", 1);
    let conn = format!("host=127.0.0.1 port={port} user=limits@analysts.example dbname=sunfleet");
    let too_many_rows = "SELECT value FROM generate_series(1, 5000)";
    // Streams in little memory, but for far longer than 2 s.
    let too_long = "SELECT sum(value % 7) FROM generate_series(1, 50000000000)";
    // A cross join holds its left side: 2 M rows do not fit in 4 MiB.
    let too_big = "SELECT sum(a.value * b.value) FROM generate_series(1, 2000000) a, \
                   generate_series(1, 3) b";
    let expected = [
        (too_many_rows, "result has more than 1000 rows"),
        (too_long, "query stopped after 2 s"),
        (too_big, "query memory limit reached"),
    ];
    for (sql, message) in expected {
        let out = psql(&conn, PASSWORD, sql);
        assert!(!out.status.success(), "{sql}");
        assert!(stderr(&out).contains(message), "{sql}: {}", stderr(&out));
    }
    let by_adbc = adbc(
        &format!("grpc://127.0.0.1:{flight_port}"),
        "limits@analysts.example",
        PASSWORD,
        None,
        &[
            too_many_rows,
            too_long,
            too_big,
            "SELECT count(*) FROM systems",
        ],
    );
    for ((_, message), answer) in expected.iter().zip(&by_adbc) {
        assert!(answer[0].contains(message), "{message}: {by_adbc:?}");
    }
    // The server is still there for the next query.
    assert_eq!(by_adbc[3], vec!["12".to_owned()]);
}
