//! Analyst SQL over every storage path: visibility, dedup, scope, refusals and limits.

use std::collections::HashMap;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{Int64Type, TimestampMicrosecondType, UInt32Type, UInt64Type};
use sunfleet_query::{QueryConfig, QueryEngine, QueryError, ResultFormat, Scope};

use crate::fleet::{Layout, test_fleet};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_reading_is_read_once_with_the_latest_ingest() {
    let fleet = test_fleet(Layout::Buffered).await;
    let answer = fleet
        .sql(&Scope::Fleet, "SELECT serial, time, energy_j FROM readings")
        .await;
    let mut seen = HashMap::new();
    for batch in &answer.batches {
        let serials = batch.column(0).as_primitive::<UInt64Type>();
        let times = batch.column(1).as_primitive::<TimestampMicrosecondType>();
        let energy = batch.column(2).as_primitive::<UInt32Type>();
        for i in 0..batch.num_rows() {
            let previous = seen.insert((serials.value(i), times.value(i)), energy.value(i));
            assert!(previous.is_none(), "reading read twice");
        }
    }
    let expected = fleet.expected_energy();
    assert_eq!(seen.len(), expected.len());
    assert!(seen == expected, "energies differ from the latest appends");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_on_system_and_time_return_exactly_the_matching_rows() {
    let fleet = test_fleet(Layout::Buffered).await;
    let expected = fleet.expected_energy();
    let system = fleet
        .sql(&Scope::Fleet, "SELECT min(system_id) AS s FROM readings")
        .await;
    let system = system.batches[0]
        .column(0)
        .as_primitive::<UInt32Type>()
        .value(0);
    let answer = fleet
        .sql(
            &Scope::Fleet,
            &format!(
                "SELECT count(*) AS n, sum(energy_j) AS e FROM readings
                 WHERE system_id = {system}
                   AND time >= '2026-03-29T00:00:00Z' AND time < '2026-03-30T00:00:00Z'"
            ),
        )
        .await;
    let serials: Vec<u64> = fleet
        .sql(
            &Scope::Fleet,
            &format!("SELECT serial FROM devices WHERE system_id = {system}"),
        )
        .await
        .batches
        .iter()
        .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
        .map(|s| s as u64)
        .collect();
    let (start, end) = (1_774_742_400_000_000_i64, 1_774_828_800_000_000_i64);
    let matching: Vec<u32> = expected
        .iter()
        .filter(|((serial, time), _)| serials.contains(serial) && (start..end).contains(time))
        .map(|(_, e)| *e)
        .collect();
    let batch = &answer.batches[0];
    assert_eq!(
        batch.column(0).as_primitive::<Int64Type>().value(0),
        matching.len() as i64
    );
    assert_eq!(
        batch.column(1).as_primitive::<UInt64Type>().value(0),
        matching.iter().map(|&e| u64::from(e)).sum::<u64>()
    );
    assert!(!matching.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reading_is_visible_as_soon_as_its_append_is_durable() {
    let fleet = test_fleet(Layout::Settled).await;
    let count = |answer: sunfleet_query::SqlAnswer| {
        answer.batches[0]
            .column(0)
            .as_primitive::<Int64Type>()
            .value(0)
    };
    let before = count(
        fleet
            .sql(&Scope::Fleet, "SELECT count(*) FROM readings")
            .await,
    );
    let mut batch = fleet.appended[0].clone();
    batch.seq = sunfleet_engine::ids::BatchSeq(5_000_000);
    for time in &mut batch.micro.time_us {
        *time += 365 * 86_400_000_000;
    }
    let added = batch.micro.rows().len() as i64;
    fleet.store.append(batch).unwrap().durable().await.unwrap();
    let after = count(
        fleet
            .sql(&Scope::Fleet, "SELECT count(*) FROM readings")
            .await,
    );
    assert_eq!(after, before + added);
}

fn system_ids(answer: &sunfleet_query::SqlAnswer) -> Vec<i64> {
    let mut ids: Vec<i64> = answer
        .batches
        .iter()
        .flat_map(|b| {
            let column = b.column(0);
            (0..column.len())
                .map(|i| {
                    datafusion::arrow::util::display::array_value_to_string(column, i)
                        .unwrap()
                        .parse::<i64>()
                        .unwrap()
                })
                .collect::<Vec<_>>()
        })
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_company_sees_only_its_systems_and_grants_in_every_table() {
    let fleet = test_fleet(Layout::Buffered).await;
    // Company 900 installed the first system; subcontractor 901 was granted the second
    // (revoked grants and expired ones do not count).
    fleet
        .registry
        .transaction("test companies", |tx| {
            tx.execute_batch(
                "INSERT INTO companies (id, name, kind, created_us) VALUES
                   (900, 'Other Solar', 'installer', 0), (901, 'Sub Co', 'subcontractor', 0);
                 UPDATE systems SET installer_id = 900 WHERE id = (SELECT min(id) FROM systems);
                 INSERT INTO subcontractor_grants (system_id, company_id, granted_us, revoked_us)
                   SELECT id, 901, 0, NULL FROM systems ORDER BY id LIMIT 1 OFFSET 1;
                 INSERT INTO subcontractor_grants (system_id, company_id, granted_us, revoked_us)
                   SELECT id, 901, 0, 1 FROM systems ORDER BY id LIMIT 1 OFFSET 2;",
            )
            .map_err(|source| sunfleet_engine::Error::Registry {
                context: "test companies".into(),
                source,
            })
        })
        .unwrap();
    let all = system_ids(&fleet.sql(&Scope::Fleet, "SELECT id FROM systems").await);
    assert_eq!(all.len(), 4);
    let now = sunfleet_engine::time::now_micros();
    let installer = Scope::of_company(&fleet.registry, 900, now).unwrap();
    let subcontractor = Scope::of_company(&fleet.registry, 901, now).unwrap();
    for (scope, visible) in [(&installer, vec![all[0]]), (&subcontractor, vec![all[1]])] {
        for sql in [
            "SELECT id FROM systems",
            "SELECT system_id FROM readings",
            "SELECT system_id FROM rollup_day",
            "SELECT system_id FROM devices",
            "SELECT system_id FROM arrays",
            "SELECT r.system_id FROM readings r JOIN systems s ON s.id = r.system_id",
            "SELECT system_id FROM readings UNION ALL SELECT id FROM systems",
        ] {
            assert_eq!(system_ids(&fleet.sql(scope, sql).await), visible, "{sql}");
        }
    }
    // Users: only the company's own; companies: itself and the installers of its grants.
    let users = fleet.sql(&installer, "SELECT count(*) FROM users").await;
    assert_eq!(
        users.batches[0]
            .column(0)
            .as_primitive::<Int64Type>()
            .value(0),
        0
    );
    let companies = system_ids(&fleet.sql(&subcontractor, "SELECT id FROM companies").await);
    let installer_of_second = system_ids(
        &fleet
            .sql(
                &Scope::Fleet,
                &format!("SELECT installer_id FROM systems WHERE id = {}", all[1]),
            )
            .await,
    );
    let mut expected = vec![901, installer_of_second[0]];
    expected.sort_unstable();
    assert_eq!(companies, expected);
    // Grants: a subcontractor sees its own, not another subcontractor's on the same system;
    // the installer of that system sees both.
    fleet
        .registry
        .transaction("a second subcontractor", |tx| {
            tx.execute_batch(&format!(
                "INSERT INTO companies (id, name, kind, created_us) VALUES (902, 'Other Sub', 'subcontractor', 0);
                 INSERT INTO subcontractor_grants (system_id, company_id, granted_us) VALUES ({}, 902, 0);",
                all[1]
            ))
            .map_err(|source| sunfleet_engine::Error::Registry {
                context: "a second subcontractor".into(),
                source,
            })
        })
        .unwrap();
    let grantees = |answer: &sunfleet_query::SqlAnswer| {
        let mut ids: Vec<Option<i64>> = answer.i64s(0);
        ids.sort_unstable();
        ids
    };
    let seen = fleet
        .sql(
            &subcontractor,
            "SELECT company_id FROM subcontractor_grants",
        )
        .await;
    assert_eq!(
        grantees(&seen),
        vec![Some(901), Some(901)],
        "its own grants only (one revoked)"
    );
    let installer_scope = Scope::of_company(&fleet.registry, installer_of_second[0], now).unwrap();
    let seen = fleet
        .sql(
            &installer_scope,
            &format!(
                "SELECT company_id FROM subcontractor_grants WHERE system_id = {}",
                all[1]
            ),
        )
        .await;
    assert_eq!(grantees(&seen), vec![Some(901), Some(902)]);
    // Gateway tasks follow the devices they are for.
    let tasks = fleet
        .sql(&installer, "SELECT count(*) FROM gateway_tasks")
        .await;
    assert_eq!(
        tasks.batches[0]
            .column(0)
            .as_primitive::<Int64Type>()
            .value(0),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_that_write_create_or_configure_are_refused() {
    let fleet = test_fleet(Layout::Settled).await;
    let target = fleet.dir.path().join("escaped");
    for sql in [
        format!(
            "CREATE EXTERNAL TABLE x STORED AS CSV LOCATION '{}'",
            fleet.dir.path().join("registry.sqlite3").display()
        ),
        format!("COPY (SELECT 1) TO '{}' STORED AS CSV", target.display()),
        format!("COPY readings TO '{}' STORED AS PARQUET", target.display()),
        "INSERT INTO systems (id) VALUES (1)".to_owned(),
        "CREATE TABLE t AS SELECT 1".to_owned(),
        "CREATE VIEW v AS SELECT 1".to_owned(),
        "DROP TABLE readings".to_owned(),
        "SET datafusion.execution.target_partitions = 1".to_owned(),
    ] {
        match fleet.engine.sql(&Scope::Fleet, &sql).await {
            Err(QueryError::Refused { .. }) => {}
            other => panic!("{sql}: {other:?}"),
        }
    }
    assert!(!target.exists(), "a refused COPY wrote a file");
    // Nothing outside the catalog can be read by naming a path.
    let path = fleet.dir.path().join("registry.sqlite3");
    match fleet
        .engine
        .sql(
            &Scope::Fleet,
            &format!("SELECT * FROM '{}'", path.display()),
        )
        .await
    {
        Err(QueryError::Sql { message }) => assert!(message.contains("not found"), "{message}"),
        other => panic!("reading a path: {other:?}"),
    }
    match fleet.engine.sql(&Scope::Fleet, "SELEC 1").await {
        Err(QueryError::Sql { message }) => assert!(message.contains("SELEC"), "{message}"),
        other => panic!("a typo: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_over_the_caps_and_queries_over_time_are_stopped() {
    let fleet = test_fleet(Layout::Settled).await;
    let mut config = QueryConfig::new(fleet.dir.path().join("spill2"));
    config.max_result_rows = 100;
    config.timeout = std::time::Duration::from_millis(200);
    let engine = QueryEngine::start(fleet.store.clone(), fleet.registry.clone(), config).unwrap();
    match engine.sql(&Scope::Fleet, "SELECT * FROM readings").await {
        Err(QueryError::ResultTooLarge { limit: 100, .. }) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(
        engine
            .sql(&Scope::Fleet, "SELECT * FROM readings LIMIT 100")
            .await
            .unwrap()
            .rows(),
        100
    );
    match engine
        .sql(
            &Scope::Fleet,
            "SELECT count(*) FROM generate_series(1, 100000000000) a",
        )
        .await
    {
        Err(QueryError::Timeout { .. }) => {}
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_are_written_as_json_csv_and_arrow() {
    let fleet = test_fleet(Layout::Settled).await;
    let answer = fleet
        .sql(
            &Scope::Fleet,
            "SELECT id, name FROM systems ORDER BY id LIMIT 2",
        )
        .await;
    let mut json = Vec::new();
    answer.write(ResultFormat::Json, &mut json).unwrap();
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&json).unwrap();
    assert_eq!(rows.len(), 2);
    assert!(rows[0]["name"].is_string() && rows[0]["id"].is_i64());
    let mut csv = Vec::new();
    answer.write(ResultFormat::Csv, &mut csv).unwrap();
    let csv = String::from_utf8(csv).unwrap();
    assert_eq!(csv.lines().next(), Some("id,name"));
    assert_eq!(csv.lines().count(), 3);
    let mut ipc = Vec::new();
    answer.write(ResultFormat::ArrowIpc, &mut ipc).unwrap();
    let reader =
        datafusion::arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(ipc), None)
            .unwrap();
    let rows: usize = reader.map(|b| b.unwrap().num_rows()).sum();
    assert_eq!(rows, 2);
    let empty = fleet
        .sql(&Scope::Fleet, "SELECT id FROM systems WHERE id < 0")
        .await;
    let mut json = Vec::new();
    empty.write(ResultFormat::Json, &mut json).unwrap();
    assert_eq!(json, b"[]");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_days_are_scanned_as_parquet_and_others_merged() {
    let fleet = test_fleet(Layout::Buffered).await;
    let answer = fleet
        .sql(&Scope::Fleet, "EXPLAIN SELECT energy_j FROM readings")
        .await;
    let mut plan = Vec::new();
    answer.write(ResultFormat::Csv, &mut plan).unwrap();
    let plan = String::from_utf8(plan).unwrap();
    assert!(plan.contains("file_type=parquet"), "{plan}");
    assert!(plan.contains("StreamingTableExec"), "{plan}");
    // A bound that excludes every day reads nothing.
    let none = fleet
        .sql(
            &Scope::Fleet,
            "EXPLAIN SELECT energy_j FROM readings WHERE time < '2000-01-01T00:00:00Z'",
        )
        .await;
    let mut plan = Vec::new();
    none.write(ResultFormat::Csv, &mut plan).unwrap();
    let plan = String::from_utf8(plan).unwrap();
    assert!(
        !plan.contains("file_type=parquet") && !plan.contains("StreamingTableExec"),
        "{plan}"
    );
}
