//! Rollup jobs of the store: rebuilding the rollups of changed (system, day) pairs, and
//! storing imported daily totals.

use std::collections::HashSet;

use arrow::array::{BooleanArray, Date32Array, TimestampMicrosecondArray, UInt32Array};
use arrow::compute::filter_record_batch;
use arrow::record_batch::RecordBatch;
use roaring::RoaringBitmap;

use super::{Store, file_path, join_error, now_micros};
use crate::Error;
use crate::dedup::sort_dedup;
use crate::ids::SystemId;
use crate::manifest::{Manifest, PendingRollup, typed_column};
use crate::rollups::{
    bucket_rollups, calendar_rollups, imported_day_rows, local_days_touching, month_of,
};
use crate::scan::{Systems, read_files};
use crate::tables::{LOCAL_DATE, SYSTEM_ID, TIME, Table};
use crate::time::CivilDate;

/// What [`Store::import_daily_totals`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DailyImport {
    pub stored: usize,
    /// (system, date) pairs left alone because readings measured them.
    pub skipped_measured: Vec<(SystemId, CivilDate)>,
}

impl Store {
    /// Rebuilds the rollups of every closed UTC day with changed readings, for the systems
    /// that changed: 15-minute and hourly buckets of that day, the site-local days it
    /// touches and their months. Returns how many days were rolled up.
    pub async fn roll_up(&self) -> Result<usize, Error> {
        let _turn = self.maintenance.lock().await;
        let base = self.manifest();
        let now = now_micros();
        let due: Vec<PendingRollup> = base
            .rollups_pending
            .iter()
            .filter(|p| self.day_closed(p.day, now))
            .cloned()
            .collect();
        if due.is_empty() {
            return Ok(0);
        }
        let mut manifest = Manifest {
            version: base.version + 1,
            ..(*base).clone()
        };
        drop(base);
        for pending in &due {
            self.roll_up_day(&mut manifest, pending).await?;
        }
        manifest
            .rollups_pending
            .retain(|p| !due.iter().any(|d| d.day == p.day));
        self.install_manifest(manifest, Vec::new(), |_| {}).await?;
        Ok(due.len())
    }

    /// Adds to `manifest` the rollup files rebuilt for one pending day.
    async fn roll_up_day(
        &self,
        manifest: &mut Manifest,
        pending: &PendingRollup,
    ) -> Result<(), Error> {
        let day = pending.day;
        let systems = Systems::Set(&pending.systems);
        // The day's buckets hold the readings stamped in (midnight, next midnight]: a reading
        // is stamped with its interval's end. The one at the next midnight is stored with
        // the next day; the one at this midnight belongs to the day before.
        let (start, end) = (day.start_micros(), day.add_days(1).start_micros());
        let raw_files: Vec<_> = manifest
            .files_of(Table::Readings, day, day.add_days(1))
            .into_iter()
            .filter(|f| f.day == day || f.min_time_us <= end)
            .collect();
        let raw = read_files(&self.storage, &raw_files, systems).await?;
        let (quarter, hour) = tokio::task::spawn_blocking(move || {
            let readings = sort_dedup(Table::Readings, &raw)?;
            let readings = rows_stamped_in(&readings, start, end)?;
            Ok::<_, Error>((
                bucket_rollups(Table::Rollup15m, &readings)?,
                bucket_rollups(Table::RollupHour, &readings)?,
            ))
        })
        .await
        .map_err(join_error)??;
        // Site-local days touching this UTC day, from the 15-minute rollups of the UTC days
        // around it (stored ones first, then the new ones, which win).
        let mut fifteen = read_files(
            &self.storage,
            &manifest.files_of(Table::Rollup15m, day.add_days(-2), day.add_days(2)),
            systems,
        )
        .await?;
        fifteen.push(quarter.clone());
        self.add_rollup_file(manifest, Table::Rollup15m, day, vec![quarter])
            .await?;
        self.add_rollup_file(manifest, Table::RollupHour, day, vec![hour])
            .await?;
        let local_days = local_days_touching(day);
        let devices = self.devices.clone();
        let day_rows = tokio::task::spawn_blocking(move || {
            let fifteen = sort_dedup(Table::Rollup15m, &fifteen)?;
            calendar_rollups(
                Table::RollupDay,
                &fifteen,
                |system| devices.time_zone(system),
                |date| local_days.contains(&date),
            )
        })
        .await
        .map_err(join_error)??;
        for local_day in local_days {
            let rows = rows_of_local_date(&day_rows, local_day)?;
            self.add_rollup_file(manifest, Table::RollupDay, local_day, vec![rows])
                .await?;
        }
        let mut months: Vec<CivilDate> = local_days.iter().map(|d| month_of(*d)).collect();
        months.dedup();
        for month in months {
            self.rebuild_month(manifest, month, &pending.systems)
                .await?;
        }
        Ok(())
    }

    /// Stores daily production totals imported for systems (history from before Sunfleet):
    /// rows of `rollup_day` for the system (`device_id` 0), then the months they fall in are
    /// rebuilt. A (system, date) that already has measured readings keeps its measured total
    /// and is returned as skipped.
    pub async fn import_daily_totals(
        &self,
        totals: &[(SystemId, CivilDate, u64)],
    ) -> Result<DailyImport, Error> {
        let _turn = self.maintenance.lock().await;
        let base = self.manifest();
        let mut manifest = Manifest {
            version: base.version + 1,
            ..(*base).clone()
        };
        drop(base);
        let systems: RoaringBitmap = totals.iter().map(|(s, _, _)| s.0).collect();
        let (Some(first), Some(last)) = (
            totals.iter().map(|t| t.1).min(),
            totals.iter().map(|t| t.1).max(),
        ) else {
            return Ok(DailyImport::default());
        };
        // Days measured by readings (their rollup rows count readings) are not overwritten.
        let existing = read_files(
            &self.storage,
            &manifest.files_of(Table::RollupDay, month_of(first), last),
            Systems::Set(&systems),
        )
        .await?;
        let mut measured = HashSet::new();
        for batch in &existing {
            let system = typed_column::<UInt32Array>(batch, Table::RollupDay, SYSTEM_ID)?;
            let device = typed_column::<UInt32Array>(batch, Table::RollupDay, "device_id")?;
            let date = typed_column::<Date32Array>(batch, Table::RollupDay, LOCAL_DATE)?;
            let readings = typed_column::<UInt32Array>(batch, Table::RollupDay, "readings")?;
            for i in 0..batch.num_rows() {
                if device.value(i) == 0 && readings.value(i) > 0 {
                    measured.insert((system.value(i), date.value(i)));
                }
            }
        }
        let (kept, skipped): (Vec<_>, Vec<_>) = totals
            .iter()
            .copied()
            .partition(|(s, d, _)| !measured.contains(&(s.0, d.days_since_epoch())));
        let devices = self.devices.clone();
        let day_rows = imported_day_rows(&kept, |s| devices.time_zone(s))?;
        let mut dates: Vec<CivilDate> = kept.iter().map(|t| t.1).collect();
        dates.sort();
        dates.dedup();
        for date in &dates {
            let rows = rows_of_local_date(&day_rows, *date)?;
            self.add_rollup_file(&mut manifest, Table::RollupDay, *date, vec![rows])
                .await?;
        }
        let mut months: Vec<CivilDate> = dates.iter().map(|d| month_of(*d)).collect();
        months.dedup();
        for month in months {
            self.rebuild_month(&mut manifest, month, &systems).await?;
        }
        self.install_manifest(manifest, Vec::new(), |_| {}).await?;
        Ok(DailyImport {
            stored: kept.len(),
            skipped_measured: skipped.into_iter().map(|(s, d, _)| (s, d)).collect(),
        })
    }

    /// Rebuilds the month rollups of `systems` for `month` from the day rollups `manifest`
    /// lists (new day files included).
    async fn rebuild_month(
        &self,
        manifest: &mut Manifest,
        month: CivilDate,
        systems: &RoaringBitmap,
    ) -> Result<(), Error> {
        let next_month = month_of(month.add_days(31));
        let days = read_files(
            &self.storage,
            &manifest.files_of(Table::RollupDay, month, next_month.add_days(-1)),
            Systems::Set(systems),
        )
        .await?;
        let devices = self.devices.clone();
        let month_rows = tokio::task::spawn_blocking(move || {
            let days = sort_dedup(Table::RollupDay, &days)?;
            calendar_rollups(
                Table::RollupMonth,
                &days,
                |system| devices.time_zone(system),
                |date| date == month,
            )
        })
        .await
        .map_err(join_error)??;
        self.add_rollup_file(manifest, Table::RollupMonth, month, vec![month_rows])
            .await
    }

    /// Writes rollup rows as a new file of (table, day) in `manifest` (newest generation, so
    /// its rows replace older ones of the same key).
    async fn add_rollup_file(
        &self,
        manifest: &mut Manifest,
        table: Table,
        day: CivilDate,
        batches: Vec<RecordBatch>,
    ) -> Result<(), Error> {
        let generation = manifest.next_generation.max(1);
        let path = file_path(table, day, &format!("{generation:020}"));
        if let Some(entry) = self
            .write_file(table, day, generation, path, batches)
            .await?
        {
            manifest.files.push(entry);
            manifest.next_generation = generation + 1;
        }
        Ok(())
    }
}

/// The rows of day rollups that start on `date`.
fn rows_of_local_date(rows: &RecordBatch, date: CivilDate) -> Result<RecordBatch, Error> {
    let dates = typed_column::<Date32Array>(rows, Table::RollupDay, LOCAL_DATE)?;
    let keep: BooleanArray = dates
        .values()
        .iter()
        .map(|&d| Some(d == date.days_since_epoch()))
        .collect();
    filter_record_batch(rows, &keep).map_err(|source| Error::Arrow {
        context: format!("rollup_day rows of {date}"),
        source,
    })
}

/// The readings stamped in `(start, end]`.
fn rows_stamped_in(readings: &RecordBatch, start: i64, end: i64) -> Result<RecordBatch, Error> {
    let times = typed_column::<TimestampMicrosecondArray>(readings, Table::Readings, TIME)?;
    let keep: BooleanArray = times
        .values()
        .iter()
        .map(|&t| Some(t > start && t <= end))
        .collect();
    filter_record_batch(readings, &keep).map_err(|source| Error::Arrow {
        context: "selecting a day's readings".to_owned(),
        source,
    })
}
