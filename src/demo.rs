//! `sunfleet demo`: the whole product on a local data folder. On first start it seeds a
//! generated fleet into the registry, backfills its recent history through the engine's
//! write path, and creates demo accounts; then (and on every later start, reusing the
//! folder) it runs the server (QUIC ingest, fleet checks, SQL endpoints, portal) with the
//! fleet's gateways simulated in real time, faults included.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use rusqlite::OptionalExtension;
use serde::{Deserialize, Serialize};
use sunfleet_engine::ids::BatchSeq;
use sunfleet_engine::registry::{NewUser, Registry, insert_user};
use sunfleet_engine::store::Store;
use sunfleet_engine::time::{CivilDate, now_micros};
use sunfleet_fixtures::stream::stream_system;
use sunfleet_fixtures::{Fleet, FleetConfig};

use crate::data::DataFolder;
use crate::serve::{DemoFleet, MailArgs, QueryLimitArgs, ServeArgs, run_services};

/// The password of every demo account.
pub const DEMO_PASSWORD: &str = "sunfleet-demo";

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Data folder (created on first start, reused after).
    #[arg(long, default_value = "sunfleet-demo", env = "SUNFLEET_DATA")]
    pub data: PathBuf,
    /// Systems in the demo fleet (first start only).
    #[arg(long, default_value_t = 200)]
    pub systems: u32,
    /// Days of history backfilled before now (first start only).
    #[arg(long, default_value_t = 30)]
    pub history_days: u32,
    /// Seed of the generated fleet (first start only).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Time acceleration of the simulated gateways (1 = real time).
    #[arg(long, default_value_t = 1.0)]
    pub speed: f64,
    #[arg(long, default_value = "127.0.0.1:8080", env = "SUNFLEET_PORTAL")]
    pub portal: SocketAddr,
    #[arg(long, default_value = "127.0.0.1:4433", env = "SUNFLEET_QUIC")]
    pub quic: SocketAddr,
    #[arg(long, default_value = "127.0.0.1:5433", env = "SUNFLEET_POSTGRES")]
    pub postgres: SocketAddr,
    #[arg(long, default_value = "127.0.0.1:8815", env = "SUNFLEET_FLIGHT")]
    pub flight: SocketAddr,
    #[command(flatten)]
    pub mail: MailArgs,
    #[command(flatten)]
    pub query: QueryLimitArgs,
}

/// What a demo folder was made with, so a later start drives the same fleet.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct DemoPlan {
    seed: u64,
    systems: u32,
    /// First UTC day of the backfilled history.
    start: String,
    history_days: u32,
    /// The history is in the store (a first start stopped before that backfills again).
    history_done: bool,
}

const PLAN_FILE: &str = "demo.json";

pub fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        (1..=100_000).contains(&args.systems),
        "--systems must be between 1 and 100000, got {}",
        args.systems
    );
    anyhow::ensure!(
        (1..=366).contains(&args.history_days),
        "--history-days must be between 1 and 366, got {}",
        args.history_days
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(demo(args))?;
    Ok(ExitCode::SUCCESS)
}

fn load_plan(data: &Path, args: &DemoArgs) -> anyhow::Result<DemoPlan> {
    let path = data.join(PLAN_FILE);
    if path.exists() {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let plan: DemoPlan = serde_json::from_str(&text).with_context(|| {
            format!(
                "{} is not a demo plan; remove the folder to start afresh",
                path.display()
            )
        })?;
        return Ok(plan);
    }
    let today = CivilDate::of_timestamp(now_micros());
    Ok(DemoPlan {
        seed: args.seed,
        systems: args.systems,
        start: today.add_days(-(args.history_days as i32)).to_string(),
        history_days: args.history_days,
        history_done: false,
    })
}

fn save_plan(data: &Path, plan: &DemoPlan) -> anyhow::Result<()> {
    std::fs::create_dir_all(data)?;
    let path = data.join(PLAN_FILE);
    let temporary = data.join(format!("{PLAN_FILE}.tmp"));
    std::fs::write(&temporary, serde_json::to_vec_pretty(plan)?)?;
    std::fs::rename(&temporary, &path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

async fn demo(args: DemoArgs) -> anyhow::Result<()> {
    // A bad --smtp-url or --mail-from is refused before the long first start.
    args.mail.config()?;
    let mut plan = load_plan(&args.data, &args)?;
    let start: CivilDate = plan
        .start
        .parse()
        .with_context(|| format!("the demo plan's start {:?}", plan.start))?;
    // The window reaches past today, so the fleet's world (install dates, faults) covers
    // the live run too.
    let fleet = Arc::new(Fleet::new(FleetConfig::new(
        plan.seed,
        plan.systems,
        start,
        plan.history_days + 2,
    )));
    save_plan(&args.data, &plan)?;
    let seeding = Arc::clone(&fleet);
    let folder = DataFolder::open_with(&args.data, move |registry| {
        if registry.count("systems")? == 0 {
            let report = sunfleet_fixtures::seed::seed_registry(registry, &seeding)?;
            tracing::info!(?report, "registry seeded with the demo fleet");
        }
        Ok(())
    })
    .await?;
    let accounts = demo_accounts(&folder.registry)?;
    if !plan.history_done {
        backfill(&folder.store, &fleet).await?;
        plan.history_done = true;
        save_plan(&args.data, &plan)?;
    }
    let mut welcome = format!(
        "sunfleet demo: {} systems, history since {}; open http://{} and sign in (password {DEMO_PASSWORD:?} for every account):",
        plan.systems, plan.start, args.portal
    );
    for (role, email) in &accounts {
        welcome.push_str(&format!("\n  {role:<24} {email}"));
    }
    welcome.push_str(&format!(
        "\n  SQL: psql -h 127.0.0.1 -p {} -U <analyst e-mail> (same password)",
        args.postgres.port()
    ));
    let serve_args = ServeArgs {
        data: args.data.clone(),
        quic: args.quic,
        server_names: vec!["localhost".into(), "127.0.0.1".into()],
        tls: None,
        seed_systems: None,
        seed: plan.seed,
        check_every: 300,
        check_after_ingest: 15,
        postgres: args.postgres,
        flight: args.flight,
        portal: args.portal,
        public_url: None,
        sql_tls: false,
        query: args.query.clone(),
        mail: args.mail.clone(),
    };
    run_services(
        folder,
        &serve_args,
        Some(DemoFleet {
            fleet,
            speed: args.speed,
            welcome,
        }),
    )
    .await
}

/// The demo accounts (role, e-mail), given the demo password unless they have one: company 1's first
/// administrator and installer, a subcontractor with granted systems, the owner of
/// company 1's first system, an analyst of company 1 and the platform administrator (the
/// last three created here).
fn demo_accounts(registry: &Registry) -> anyhow::Result<Vec<(&'static str, String)>> {
    let now = now_micros();
    let first_email = |sql: &str| -> anyhow::Result<Option<String>> {
        Ok(registry.read(|c| {
            c.query_row(sql, [], |row| row.get(0))
                .optional()
                .map_err(|source| sunfleet_engine::Error::Registry {
                    context: "finding demo accounts".into(),
                    source,
                })
        })?)
    };
    let admin = first_email(
        "SELECT email FROM users WHERE role = 'installer_admin' AND company_id = 1 ORDER BY id LIMIT 1",
    )?;
    let installer = first_email(
        "SELECT email FROM users WHERE role = 'installer_user' AND company_id = 1 ORDER BY id LIMIT 1",
    )?;
    let subcontractor = first_email(
        "SELECT u.email FROM users u JOIN subcontractor_grants g ON g.company_id = u.company_id
         WHERE u.role = 'subcontractor' AND g.revoked_us IS NULL ORDER BY u.id LIMIT 1",
    )?;
    // The owner and the analyst do not come with the generated fleet: add them once.
    registry.transaction("demo accounts", |tx| {
        let owner: Option<(i64, String, String, String)> = tx
            .query_row(
                "SELECT o.id, o.email, o.given_name, o.family_name FROM systems s
                 JOIN owners o ON o.id = s.owner_id
                 WHERE s.installer_id = 1 ORDER BY s.id LIMIT 1",
                [],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
            )
            .optional()
            .map_err(|source| sunfleet_engine::Error::Registry {
                context: "finding a demo owner".into(),
                source,
            })?;
        let exists = |email: &str| -> Result<bool, sunfleet_engine::Error> {
            tx.query_row(
                "SELECT count(*) FROM users WHERE email = ?1",
                [email],
                |row| row.get::<_, i64>(0),
            )
            .map(|n| n > 0)
            .map_err(|source| sunfleet_engine::Error::Registry {
                context: "finding a demo account".into(),
                source,
            })
        };
        if let Some((owner_id, email, given, family)) = owner
            && !exists(&email)?
        {
            insert_user(
                tx,
                &NewUser {
                    email,
                    given_name: given,
                    family_name: family,
                    phone: String::new(),
                    language: "en".into(),
                    role: "owner",
                    company_id: None,
                    owner_id: Some(owner_id),
                    password_hash: None,
                    created_us: now,
                },
            )?;
        }
        for (email, family_name, role, company_id) in [
            (DEMO_ANALYST, "Analyst", "analyst", Some(1)),
            (DEMO_PLATFORM_ADMIN, "Operator", "platform_admin", None),
        ] {
            if !exists(email)? {
                insert_user(
                    tx,
                    &NewUser {
                        email: email.into(),
                        given_name: "Demo".into(),
                        family_name: family_name.into(),
                        phone: String::new(),
                        language: "en".into(),
                        role,
                        company_id,
                        owner_id: None,
                        password_hash: None,
                        created_us: now,
                    },
                )?;
            }
        }
        Ok(())
    })?;
    let owner = first_email(
        "SELECT u.email FROM users u JOIN systems s ON s.owner_id = u.owner_id
         WHERE u.role = 'owner' AND s.installer_id = 1 ORDER BY u.id LIMIT 1",
    )?;
    let mut accounts = Vec::new();
    for (role, email) in [
        ("installer administrator", admin),
        ("installer", installer),
        ("subcontractor", subcontractor),
        ("system owner (read-only)", owner),
        ("analyst (SQL only)", Some(DEMO_ANALYST.to_owned())),
        (
            "platform administrator",
            Some(DEMO_PLATFORM_ADMIN.to_owned()),
        ),
    ] {
        if let Some(email) = email {
            // A password changed since the first start is kept.
            let has_password: bool = registry.read(|c| {
                c.query_row(
                    "SELECT password_hash IS NOT NULL FROM users WHERE email = ?1",
                    [&email],
                    |row| row.get(0),
                )
                .map_err(|source| sunfleet_engine::Error::Registry {
                    context: format!("checking the password of {email}"),
                    source,
                })
            })?;
            if !has_password {
                registry.set_password(&email, DEMO_PASSWORD)?;
            }
            accounts.push((role, email));
        }
    }
    Ok(accounts)
}

const DEMO_ANALYST: &str = "analyst@sunfleet.demo";
const DEMO_PLATFORM_ADMIN: &str = "operator@sunfleet.demo";

/// Appends the fleet's uploads from the start of its window until now through the store's
/// durable write path, then persists, rolls up and compacts, with a progress bar.
async fn backfill(store: &Arc<Store>, fleet: &Arc<Fleet>) -> anyhow::Result<()> {
    let now = now_micros();
    let specs: Vec<_> = fleet.systems().collect();
    let bar = indicatif::ProgressBar::new(specs.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "backfilling history {bar:40} {pos}/{len} systems, {msg} ({elapsed})",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let maintenance =
        tokio::spawn(Arc::clone(store).run_maintenance(Duration::from_secs(1), stopped));
    let mut readings = 0u64;
    for spec in specs {
        let store = Arc::clone(store);
        let fleet = Arc::clone(fleet);
        let appended = tokio::task::spawn_blocking(move || -> anyhow::Result<u64> {
            let mut pending = Vec::new();
            let mut failure = None;
            let mut count = 0u64;
            stream_system(&fleet, spec, |upload| {
                if failure.is_some() || upload.send_us > now {
                    return;
                }
                let mut batch = (*upload.batch).clone();
                // History does not come through ingest: no gateway sequence numbers, so
                // the live gateways' numbering is not mistaken for already acknowledged.
                batch.seq = BatchSeq(0);
                count += batch.reading_count() as u64;
                loop {
                    match store.append(batch.clone()) {
                        Err(sunfleet_engine::Error::BufferFull { .. }) => {
                            std::thread::sleep(Duration::from_millis(50));
                        }
                        Ok(append) => {
                            pending.push(append);
                            break;
                        }
                        Err(error) => {
                            failure = Some(error);
                            break;
                        }
                    }
                }
            });
            if let Some(error) = failure {
                return Err(error.into());
            }
            for append in pending {
                append.wait()?;
            }
            Ok(count)
        })
        .await??;
        readings += appended;
        bar.set_message(format!("{readings} readings"));
        bar.inc(1);
    }
    bar.finish();
    let _ = stop.send(true);
    maintenance.await?;
    store.persist().await?;
    store.roll_up().await?;
    store.compact().await?;
    tracing::info!(readings, "history backfilled");
    Ok(())
}
