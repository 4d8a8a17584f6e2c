//! Reports (S3) as CSV: site production, site consumption, energy meter data and monthly
//! production, over a chosen range and granularity. Every column names its unit; times are
//! the site's local times with their UTC offset (and the zone in its own column), so a
//! spreadsheet shows what the installer saw on the graphs.

use std::io::Write;

use crate::series::{Granularity, SeriesRequest, local_time_label, zone_named};
use crate::{QueryEngine, QueryError, Scope};

/// Which report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportKind {
    /// Energy produced per period.
    Production,
    /// Energy consumed per period (from the consumption meter), with production and the
    /// net import beside it.
    Consumption,
    /// Every meter reading of the range.
    MeterData,
    /// Energy produced per site-local month.
    MonthlyProduction,
}

impl ReportKind {
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "production" => Some(ReportKind::Production),
            "consumption" => Some(ReportKind::Consumption),
            "meter-data" => Some(ReportKind::MeterData),
            "monthly-production" => Some(ReportKind::MonthlyProduction),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ReportRequest {
    pub kind: ReportKind,
    pub system_id: u32,
    pub start_us: i64,
    pub end_us: i64,
    /// Ignored by the meter data (one row per reading) and monthly reports.
    pub granularity: Granularity,
}

fn io_error(error: std::io::Error) -> QueryError {
    QueryError::Runtime {
        message: format!("writing the report: {error}"),
    }
}

fn csv_error(error: csv::Error) -> QueryError {
    QueryError::Runtime {
        message: format!("writing the report: {error}"),
    }
}

impl QueryEngine {
    /// Writes the report as CSV to `out`; returns how many data rows it has.
    pub async fn write_report(
        &self,
        scope: &Scope,
        request: &ReportRequest,
        out: impl Write,
    ) -> Result<u64, QueryError> {
        let mut csv = csv::Writer::from_writer(out);
        let rows = match request.kind {
            ReportKind::Production | ReportKind::MonthlyProduction => {
                let granularity = match request.kind {
                    ReportKind::MonthlyProduction => Granularity::Month,
                    _ => request.granularity,
                };
                let series = self
                    .production_series(
                        scope,
                        &SeriesRequest {
                            system_id: request.system_id,
                            device_id: None,
                            start_us: request.start_us,
                            end_us: request.end_us,
                            granularity,
                            max_points: usize::MAX,
                        },
                    )
                    .await?;
                csv.write_record([
                    "period_start_local",
                    "period_end_local",
                    "time_zone",
                    "energy_produced_wh",
                    "average_power_w",
                ])
                .map_err(csv_error)?;
                let zone = zone_named(&series.time_zone)?;
                for point in &series.points {
                    csv.write_record([
                        local_time_label(&zone, point.start_us),
                        local_time_label(&zone, point.end_us),
                        series.time_zone.clone(),
                        format!("{:.3}", point.energy_wh),
                        format!("{:.3}", point.power_avg_w),
                    ])
                    .map_err(csv_error)?;
                }
                series.points.len() as u64
            }
            ReportKind::Consumption => self.consumption_report(scope, request, &mut csv).await?,
            ReportKind::MeterData => self.meter_report(scope, request, &mut csv).await?,
        };
        csv.flush().map_err(io_error)?;
        Ok(rows)
    }

    async fn consumption_report<W: Write>(
        &self,
        scope: &Scope,
        request: &ReportRequest,
        csv: &mut csv::Writer<W>,
    ) -> Result<u64, QueryError> {
        let site = self
            .site_series(
                scope,
                &SeriesRequest {
                    system_id: request.system_id,
                    device_id: None,
                    start_us: request.start_us,
                    end_us: request.end_us,
                    granularity: request.granularity,
                    max_points: usize::MAX,
                },
            )
            .await?;
        let zone = zone_named(&site.time_zone)?;
        csv.write_record([
            "period_start_local",
            "period_end_local",
            "time_zone",
            "energy_consumed_wh",
            "energy_produced_wh",
            "net_import_wh",
        ])
        .map_err(csv_error)?;
        let wh = |value: Option<f64>| value.map(|v| format!("{v:.3}")).unwrap_or_default();
        for point in &site.points {
            csv.write_record([
                local_time_label(&zone, point.start_us),
                local_time_label(&zone, point.end_us),
                site.time_zone.clone(),
                wh(point.consumed_wh),
                wh(Some(point.produced_wh)),
                wh(point.net_import_wh),
            ])
            .map_err(csv_error)?;
        }
        Ok(site.points.len() as u64)
    }

    async fn meter_report<W: Write>(
        &self,
        scope: &Scope,
        request: &ReportRequest,
        csv: &mut csv::Writer<W>,
    ) -> Result<u64, QueryError> {
        let (zone_name, zone) = self.visible_system_zone(scope, request.system_id).await?;
        let (system, start, end) = (request.system_id, request.start_us, request.end_us);
        let answer = self
            .internal_sql(
                scope,
                &format!(
                    "SELECT CAST(time AS BIGINT) AS t, lpad(CAST(serial AS VARCHAR), 12, '0') AS s,
                            CASE meter_kind WHEN 0 THEN 'production' WHEN 1 THEN 'consumption_net'
                                            ELSE 'consumption_total' END,
                            CAST(interval_s AS BIGINT), CAST(active_power_w AS BIGINT),
                            CAST(reactive_power_var AS BIGINT), CAST(apparent_power_va AS BIGINT),
                            CAST(voltage_mv AS DOUBLE) / 1000.0, CAST(current_ma AS DOUBLE) / 1000.0,
                            CAST(frequency_mhz AS DOUBLE) / 1000.0, CAST(power_factor_milli AS DOUBLE) / 1000.0,
                            CAST(energy_delivered_wh AS BIGINT), CAST(energy_received_wh AS BIGINT)
                     FROM meter_readings
                     WHERE system_id = {system}
                       AND time > to_timestamp_micros({start}) AND time <= to_timestamp_micros({end})
                     ORDER BY t, s"
                ),
            )
            .await?;
        csv.write_record([
            "time_local",
            "time_zone",
            "meter_serial",
            "meter_kind",
            "interval_s",
            "active_power_w",
            "reactive_power_var",
            "apparent_power_va",
            "voltage_v",
            "current_a",
            "frequency_hz",
            "power_factor",
            "energy_delivered_lifetime_wh",
            "energy_received_lifetime_wh",
        ])
        .map_err(csv_error)?;
        let text = |v: Option<String>| v.unwrap_or_default();
        let int = |v: Option<i64>| v.map(|v| v.to_string()).unwrap_or_default();
        let real = |v: Option<f64>| v.map(|v| format!("{v:.3}")).unwrap_or_default();
        let (times, serials, kinds) = (answer.i64s(0), answer.strings(1), answer.strings(2));
        let (intervals, active, reactive, apparent) = (
            answer.i64s(3),
            answer.i64s(4),
            answer.i64s(5),
            answer.i64s(6),
        );
        let (volts, amps, hertz, factor) = (
            answer.f64s(7),
            answer.f64s(8),
            answer.f64s(9),
            answer.f64s(10),
        );
        let (delivered, received) = (answer.i64s(11), answer.i64s(12));
        for i in 0..times.len() {
            csv.write_record([
                times[i]
                    .map(|t| local_time_label(&zone, t))
                    .unwrap_or_default(),
                zone_name.clone(),
                text(serials[i].clone()),
                text(kinds[i].clone()),
                int(intervals[i]),
                int(active[i]),
                int(reactive[i]),
                int(apparent[i]),
                real(volts[i]),
                real(amps[i]),
                real(hertz[i]),
                real(factor[i]),
                int(delivered[i]),
                int(received[i]),
            ])
            .map_err(csv_error)?;
        }
        Ok(times.len() as u64)
    }
}
