//! `portal`: one system's pages as the portal serves them, on the `query` bench's data
//! folder (built on first use): the commercial system with the fewest microinverters at or
//! above `--micros`, every tab and settings section requested over loopback HTTP by a
//! signed-in installer of its company, timed from request to the last byte (p50, p95).
//! The pages look at the last day of the data (the held-back day, in the write buffer).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rusqlite::params;
use sunfleet_engine::time::CivilDate;
use sunfleet_portal::{PortalConfig, PortalServer};
use sunfleet_query::{QueryConfig, QueryEngine};

use crate::machine_description;
use crate::query::{BenchData, open_data};

pub struct Options {
    pub systems: u32,
    pub days: u32,
    pub seed: u64,
    pub micros: u32,
    pub runs: usize,
    pub dir: Option<std::path::PathBuf>,
}

/// A GET over a fresh connection: the status line's code and the body's length.
fn get(address: SocketAddr, path: &str, cookie: &str) -> anyhow::Result<(u16, usize)> {
    let mut stream = TcpStream::connect(address)?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n"
    )?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer)?;
    let text = String::from_utf8_lossy(&answer);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .context("an HTTP status line")?;
    Ok((status, answer.len()))
}

fn percentile(times: &mut [Duration], share: f64) -> Duration {
    times.sort();
    let index = ((times.len() as f64 - 1.0) * share).round() as usize;
    times[index.min(times.len() - 1)]
}

pub fn run(options: Options) -> anyhow::Result<()> {
    say!("machine: {}", machine_description());
    let BenchData {
        runtime,
        registry,
        store,
        start,
        held_back,
        folder,
        ..
    } = open_data(options.systems, options.days, options.seed, options.dir)?;
    for batch in held_back {
        store.append(batch)?.wait()?;
    }
    // The commercial system with the fewest microinverters at or above the target, and an
    // administrator of its installer.
    let (system, micros, user): (i64, i64, i64) = registry.read(|c| {
        c.query_row(
            "SELECT s.id, count(d.id) AS micros,
                    (SELECT u.id FROM users u WHERE u.company_id = s.installer_id
                       AND u.role = 'installer_admin' ORDER BY u.id LIMIT 1)
               FROM systems s JOIN devices d ON d.system_id = s.id AND d.kind = 'microinverter'
              WHERE s.kind = 'commercial'
              GROUP BY s.id HAVING micros >= ?1
              ORDER BY micros, s.id LIMIT 1",
            params![options.micros],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )
        .map_err(|e| sunfleet_engine::Error::Registry {
            context: "choosing the benchmark's system".into(),
            source: e,
        })
    })?;
    let engine = Arc::new(QueryEngine::start(
        Arc::clone(&store),
        Arc::clone(&registry),
        QueryConfig::new(folder.join("tmp").join("query")),
    )?);
    let session =
        registry.create_session(user, sunfleet_engine::time::now_micros(), 3_600_000_000)?;
    let cookie = format!(
        "{}={}",
        sunfleet_portal::session::SESSION_COOKIE,
        session.token
    );
    let portal = runtime.block_on(PortalServer::start(
        PortalConfig::new("127.0.0.1:0".parse()?),
        Arc::clone(&engine),
        Arc::clone(&registry),
    ))?;
    let address = portal.local_addr();
    let last_day: CivilDate = start.add_days(options.days as i32 - 1);
    let week_start = last_day.add_days(-6);
    let pages = [
        (
            "view (array, one day)",
            format!("/systems/{system}?date={last_day}"),
        ),
        (
            "graph (7 days, hourly)",
            format!("/systems/{system}/graph?from={week_start}&to={last_day}"),
        ),
        (
            "graph data (1 day, 5 min)",
            format!("/systems/{system}/graph.json?from={last_day}&to={last_day}"),
        ),
        (
            "reports (production, 7 days by day)",
            format!("/systems/{system}/reports?kind=production&from={week_start}&to={last_day}"),
        ),
        ("devices", format!("/systems/{system}/devices")),
        ("events", format!("/systems/{system}/events")),
        ("live status", format!("/systems/{system}/live")),
        ("services", format!("/systems/{system}/services")),
        ("kiosk", format!("/systems/{system}/kiosk")),
        ("settings", format!("/systems/{system}/settings")),
    ];
    say!(
        "portal: system {system} ({micros} microinverters) of {} systems × {} days; {} requests per page after a warm-up, one connection each, over loopback",
        options.systems,
        options.days,
        options.runs
    );
    say!("| page | p50 | p95 | bytes |");
    say!("|---|---|---|---|");
    for (name, path) in &pages {
        let (status, _) = get(address, path, &cookie)?;
        if status != 200 {
            bail!("{path} answered {status}");
        }
        let mut times = Vec::with_capacity(options.runs);
        let mut bytes = 0;
        for _ in 0..options.runs {
            let began = Instant::now();
            let (status, size) = get(address, path, &cookie)?;
            times.push(began.elapsed());
            if status != 200 {
                bail!("{path} answered {status}");
            }
            bytes = size;
        }
        let p50 = percentile(&mut times, 0.5);
        let p95 = percentile(&mut times, 0.95);
        say!(
            "| {name} | {:.1} ms | {:.1} ms | {bytes} |",
            p50.as_secs_f64() * 1e3,
            p95.as_secs_f64() * 1e3
        );
    }
    runtime.block_on(portal.shutdown());
    Ok(())
}
