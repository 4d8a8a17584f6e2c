//! The array view (S2): each microinverter's energy and peak power over a day or a range,
//! placed where it sits in its array. A cell whose unit replaced others (R2) counts their
//! readings in the range too: the cell's history continues across the swap.

use std::collections::HashMap;

use sunfleet_engine::time::MICROS_PER_DAY;

use crate::{QueryEngine, QueryError, Scope};

/// Longest range the array view sums from raw readings.
pub const MAX_RANGE_DAYS: i64 = 93;

/// One array of a system, with its microinverters row by row.
#[derive(Debug, Clone, PartialEq)]
pub struct ArrayPanel {
    pub array_id: i64,
    pub name: String,
    pub tilt_deg: f64,
    pub azimuth_deg: f64,
    pub rows: i64,
    pub columns: i64,
    /// In layout order: row, then column.
    pub cells: Vec<ArrayCell>,
}

/// One microinverter in its array (with the readings of the units it replaced).
#[derive(Debug, Clone, PartialEq)]
pub struct ArrayCell {
    pub row: i64,
    pub column: i64,
    pub device_id: u32,
    pub serial: String,
    pub energy_wh: f64,
    /// Highest average power of one reading interval.
    pub peak_power_w: u32,
    /// Readings in the range.
    pub readings: u64,
}

impl QueryEngine {
    /// The arrays of `system` with each microinverter's production over `[start, end)`.
    /// Microinverters not placed in an array come last, in a pseudo-array with id 0.
    pub async fn array_view(
        &self,
        scope: &Scope,
        system: u32,
        start_us: i64,
        end_us: i64,
    ) -> Result<Vec<ArrayPanel>, QueryError> {
        if start_us >= end_us || end_us.saturating_sub(start_us) > MAX_RANGE_DAYS * MICROS_PER_DAY {
            return Err(QueryError::BadRequest {
                message: format!(
                    "the array view covers a range of up to {MAX_RANGE_DAYS} days that ends after it starts"
                ),
            });
        }
        self.visible_system_zone(scope, system).await?;
        let arrays = self
            .internal_sql(
                scope,
                &format!(
                    "SELECT id, name, tilt_deg, azimuth_deg, grid_rows, grid_columns FROM arrays
                     WHERE system_id = {system} ORDER BY position, id"
                ),
            )
            .await?;
        let devices = self
            .internal_sql(
                scope,
                &format!(
                    "SELECT id, lpad(CAST(serial AS VARCHAR), 12, '0'), COALESCE(array_id, 0),
                            COALESCE(grid_row, 0), COALESCE(grid_column, 0)
                     FROM devices
                     WHERE system_id = {system} AND kind = 'microinverter' AND state <> 'retired'
                     ORDER BY 3, 4, 5, 1"
                ),
            )
            .await?;
        let production = self
            .internal_sql(
                scope,
                &format!(
                    "SELECT CAST(device_id AS BIGINT), CAST(sum(energy_j) AS BIGINT),
                            CAST(max(ac_power_w) AS BIGINT), count(*)
                     FROM readings
                     WHERE system_id = {system}
                       AND time > to_timestamp_micros({start_us}) AND time <= to_timestamp_micros({end_us})
                     GROUP BY 1"
                ),
            )
            .await?;
        let predecessors = self.predecessors(system).await?;
        let mut produced: HashMap<i64, (i64, i64, i64)> = HashMap::new();
        let (ids, joules, peaks, counts) = (
            production.i64s(0),
            production.i64s(1),
            production.i64s(2),
            production.i64s(3),
        );
        for i in 0..ids.len() {
            if let Some(id) = ids[i] {
                produced.insert(
                    id,
                    (
                        joules[i].unwrap_or(0),
                        peaks[i].unwrap_or(0),
                        counts[i].unwrap_or(0),
                    ),
                );
            }
        }
        let (array_ids, names, tilts, azimuths, grid_rows, grid_columns) = (
            arrays.i64s(0),
            arrays.strings(1),
            arrays.f64s(2),
            arrays.f64s(3),
            arrays.i64s(4),
            arrays.i64s(5),
        );
        let mut panels: Vec<ArrayPanel> = (0..array_ids.len())
            .map(|i| ArrayPanel {
                array_id: array_ids[i].unwrap_or(0),
                name: names[i].clone().unwrap_or_default(),
                tilt_deg: tilts[i].unwrap_or(0.0),
                azimuth_deg: azimuths[i].unwrap_or(0.0),
                rows: grid_rows[i].unwrap_or(0),
                columns: grid_columns[i].unwrap_or(0),
                cells: Vec::new(),
            })
            .collect();
        let (device_ids, serials, device_arrays, rows, columns) = (
            devices.i64s(0),
            devices.strings(1),
            devices.i64s(2),
            devices.i64s(3),
            devices.i64s(4),
        );
        for i in 0..device_ids.len() {
            let Some(Ok(device_id)) = device_ids[i].map(u32::try_from) else {
                continue;
            };
            let lineage = predecessors
                .get(&device_id)
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            let (joules, peak, count) = std::iter::once(&device_id)
                .chain(lineage)
                .filter_map(|d| produced.get(&i64::from(*d)))
                .fold((0, 0, 0), |(j, p, c), (dj, dp, dc)| {
                    (j + dj, p.max(*dp), c + dc)
                });
            let cell = ArrayCell {
                row: rows[i].unwrap_or(0),
                column: columns[i].unwrap_or(0),
                device_id,
                serial: serials[i].clone().unwrap_or_default(),
                energy_wh: joules as f64 / 3600.0,
                peak_power_w: u32::try_from(peak).unwrap_or(0),
                readings: u64::try_from(count).unwrap_or(0),
            };
            let array_id = device_arrays[i].unwrap_or(0);
            match panels.iter_mut().find(|p| p.array_id == array_id) {
                Some(panel) => panel.cells.push(cell),
                None => {
                    let loose = match panels.iter().position(|p| p.array_id == 0) {
                        Some(index) => index,
                        None => {
                            panels.push(ArrayPanel {
                                array_id: 0,
                                name: "Not placed".to_owned(),
                                tilt_deg: 0.0,
                                azimuth_deg: 0.0,
                                rows: 0,
                                columns: 0,
                                cells: Vec::new(),
                            });
                            panels.len() - 1
                        }
                    };
                    panels[loose].cells.push(cell);
                }
            }
        }
        Ok(panels)
    }
}
