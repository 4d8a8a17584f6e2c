//! The array view: every microinverter once, in layout order, adding up to the system.

use datafusion::arrow::array::AsArray;
use datafusion::arrow::datatypes::Int64Type;
use sunfleet_query::{QueryError, Scope};

use crate::fleet::{Layout, first_day, test_fleet};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_microinverter_in_layout_order_adding_up_to_the_system() {
    let fleet = test_fleet(Layout::Buffered).await;
    let (start, end) = (
        first_day().start_micros(),
        first_day().add_days(3).start_micros(),
    );
    for system in 1..=4u32 {
        let panels = fleet
            .engine
            .array_view(&Scope::Fleet, system, start, end)
            .await
            .unwrap();
        let cells: Vec<_> = panels.iter().flat_map(|p| &p.cells).collect();
        let micros = fleet
            .sql(
                &Scope::Fleet,
                &format!(
                    "SELECT count(*) FROM devices WHERE system_id = {system} AND kind = 'microinverter'"
                ),
            )
            .await;
        assert_eq!(
            cells.len() as i64,
            micros.batches[0]
                .column(0)
                .as_primitive::<Int64Type>()
                .value(0)
        );
        for panel in &panels {
            let order: Vec<(i64, i64)> = panel.cells.iter().map(|c| (c.row, c.column)).collect();
            let mut sorted = order.clone();
            sorted.sort_unstable();
            assert_eq!(
                order, sorted,
                "array {} out of layout order",
                panel.array_id
            );
            assert!(
                panel
                    .cells
                    .iter()
                    .all(|c| c.row < panel.rows.max(1) && c.column < panel.columns.max(1))
            );
        }
        let raw_wh = fleet.raw_wh(system, None).await;
        let total: f64 = cells.iter().map(|c| c.energy_wh).sum();
        assert!(
            (total - raw_wh).abs() < 1e-6,
            "system {system}: {total} vs {raw_wh}"
        );
        assert!(cells.iter().all(|c| c.readings > 0 && c.peak_power_w > 0));
    }
    let owner = Scope::of_owner(&fleet.registry, 1).unwrap();
    assert!(matches!(
        fleet.engine.array_view(&owner, 2, start, end).await,
        Err(QueryError::NotFound { .. })
    ));
    assert!(matches!(
        fleet
            .engine
            .array_view(&owner, 1, start, start + 100 * 86_400_000_000)
            .await,
        Err(QueryError::BadRequest { .. })
    ));
}
