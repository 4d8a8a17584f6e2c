//! The engine's telemetry tables: their Arrow schemas, the key that identifies a row, and
//! how a gateway batch becomes rows.
//!
//! Every table starts with `system_id, device_id, serial, time`; files are sorted by those
//! (then by the table's extra key columns), and a row is identified by `serial`, `time` and
//! the extra key columns: a later ingest of the same key replaces the earlier one.

use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, LazyLock};

use arrow::array::{
    ArrayBuilder, ArrayRef, BooleanBuilder, Int8Builder, Int16Builder, Int32Builder,
    TimestampMicrosecondBuilder, UInt8Builder, UInt16Builder, UInt32Builder, UInt64Builder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;

use crate::Error;
use crate::directory::DeviceRef;
use crate::ids::Serial;
use crate::telemetry::{
    BatteryReading, ConsumptionMeterMode, DeviceEvent, EventState, MeterKind, MeterReading,
    MicroReading,
};

/// A telemetry table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    /// Microinverter readings.
    Readings,
    MeterReadings,
    BatteryReadings,
    DeviceEvents,
    /// Microinverter production per device and per system (`device_id` 0) in 15-minute
    /// UTC buckets.
    Rollup15m,
    /// The same per UTC hour.
    RollupHour,
    /// The same per site-local day.
    RollupDay,
    /// The same per site-local month.
    RollupMonth,
}

impl Table {
    /// What gateways send.
    pub const TELEMETRY: [Table; 4] = [
        Table::Readings,
        Table::MeterReadings,
        Table::BatteryReadings,
        Table::DeviceEvents,
    ];

    /// What the engine derives from microinverter readings.
    pub const ROLLUPS: [Table; 4] = [
        Table::Rollup15m,
        Table::RollupHour,
        Table::RollupDay,
        Table::RollupMonth,
    ];

    pub const ALL: [Table; 8] = [
        Table::Readings,
        Table::MeterReadings,
        Table::BatteryReadings,
        Table::DeviceEvents,
        Table::Rollup15m,
        Table::RollupHour,
        Table::RollupDay,
        Table::RollupMonth,
    ];

    pub fn is_rollup(self) -> bool {
        Table::ROLLUPS.contains(&self)
    }

    /// The name in SQL and in storage paths.
    pub fn name(self) -> &'static str {
        match self {
            Table::Readings => "readings",
            Table::MeterReadings => "meter_readings",
            Table::BatteryReadings => "battery_readings",
            Table::DeviceEvents => "device_events",
            Table::Rollup15m => "rollup_15m",
            Table::RollupHour => "rollup_hour",
            Table::RollupDay => "rollup_day",
            Table::RollupMonth => "rollup_month",
        }
    }

    pub fn schema(self) -> SchemaRef {
        static SCHEMAS: LazyLock<[SchemaRef; 8]> = LazyLock::new(|| {
            [
                readings_schema(),
                meter_schema(),
                battery_schema(),
                events_schema(),
                rollup_schema(false),
                rollup_schema(false),
                rollup_schema(true),
                rollup_schema(true),
            ]
        });
        Arc::clone(&SCHEMAS[self as usize])
    }

    /// Columns that identify a row (besides `serial` and `time`), in sort order.
    pub fn extra_key_columns(self) -> &'static [&'static str] {
        match self {
            Table::DeviceEvents => &["event_number"],
            _ => &[],
        }
    }

    /// Sort order of stored files, which is also the key of a row: `system_id, device_id,
    /// serial, time` (rollups have no serial), then the extra keys.
    pub fn sort_columns(self) -> Vec<&'static str> {
        if self.is_rollup() {
            return vec![SYSTEM_ID, DEVICE_ID, TIME];
        }
        let mut columns = vec![SYSTEM_ID, DEVICE_ID, SERIAL, TIME];
        columns.extend_from_slice(self.extra_key_columns());
        columns
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Table {
    type Err = Error;

    fn from_str(name: &str) -> Result<Self, Error> {
        Table::ALL
            .into_iter()
            .find(|t| t.name() == name)
            .ok_or_else(|| Error::UnknownTable {
                name: name.to_owned(),
            })
    }
}

pub const SYSTEM_ID: &str = "system_id";
pub const DEVICE_ID: &str = "device_id";
pub const SERIAL: &str = "serial";
pub const TIME: &str = "time";
pub const LOCAL_DATE: &str = "local_date";

fn time_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

fn with_identity(rest: Vec<Field>) -> SchemaRef {
    let mut fields = vec![
        Field::new(SYSTEM_ID, DataType::UInt32, false),
        Field::new(DEVICE_ID, DataType::UInt32, false),
        Field::new(SERIAL, DataType::UInt64, false),
        Field::new(TIME, time_type(), false),
    ];
    fields.extend(rest);
    Arc::new(Schema::new(fields))
}

fn readings_schema() -> SchemaRef {
    with_identity(vec![
        Field::new("interval_s", DataType::UInt16, false),
        Field::new("energy_j", DataType::UInt32, false),
        Field::new("ac_power_w", DataType::UInt16, false),
        Field::new("dc_voltage_mv", DataType::UInt16, false),
        Field::new("dc_current_ma", DataType::UInt16, false),
        Field::new("ac_voltage_mv", DataType::UInt32, false),
        Field::new("ac_frequency_mhz", DataType::UInt16, false),
        Field::new("temperature_c", DataType::Int8, false),
        Field::new("status", DataType::UInt16, false),
    ])
}

fn meter_schema() -> SchemaRef {
    with_identity(vec![
        Field::new("meter_kind", DataType::UInt8, false),
        Field::new("interval_s", DataType::UInt16, false),
        Field::new("active_power_w", DataType::Int32, false),
        Field::new("reactive_power_var", DataType::Int32, false),
        Field::new("apparent_power_va", DataType::UInt32, false),
        Field::new("energy_delivered_wh", DataType::UInt64, false),
        Field::new("energy_received_wh", DataType::UInt64, false),
        Field::new("voltage_mv", DataType::UInt32, false),
        Field::new("current_ma", DataType::Int32, false),
        Field::new("frequency_mhz", DataType::UInt16, false),
        Field::new("power_factor_milli", DataType::Int16, false),
    ])
}

fn battery_schema() -> SchemaRef {
    with_identity(vec![
        Field::new("interval_s", DataType::UInt16, false),
        Field::new("power_w", DataType::Int32, false),
        Field::new("soc_permille", DataType::UInt16, false),
        Field::new("temperature_c", DataType::Int8, false),
    ])
}

/// Rollup rows: `time` is the bucket's start (for days and months, local midnight as a UTC
/// instant) and `local_date` the site-local date it starts on.
fn rollup_schema(local: bool) -> SchemaRef {
    let mut fields = vec![
        Field::new(SYSTEM_ID, DataType::UInt32, false),
        Field::new(DEVICE_ID, DataType::UInt32, false),
        Field::new(TIME, time_type(), false),
    ];
    if local {
        fields.push(Field::new(LOCAL_DATE, DataType::Date32, false));
    }
    fields.extend([
        Field::new("energy_j", DataType::UInt64, false),
        Field::new("ac_power_avg_w", DataType::Float64, false),
        Field::new("ac_power_max_w", DataType::UInt32, false),
        Field::new("readings", DataType::UInt32, false),
        Field::new("devices_reporting", DataType::UInt32, false),
    ]);
    Arc::new(Schema::new(fields))
}

fn events_schema() -> SchemaRef {
    with_identity(vec![
        Field::new("event_number", DataType::UInt16, false),
        Field::new("raised", DataType::Boolean, false),
    ])
}

/// `meter_kind` values: stable forever.
pub fn meter_kind_number(kind: MeterKind) -> u8 {
    match kind {
        MeterKind::Production => 0,
        MeterKind::Consumption(ConsumptionMeterMode::Net) => 1,
        MeterKind::Consumption(ConsumptionMeterMode::Total) => 2,
    }
}

/// The identity columns every table starts with.
#[derive(Debug)]
struct Identity {
    system_id: UInt32Builder,
    device_id: UInt32Builder,
    serial: UInt64Builder,
    time: TimestampMicrosecondBuilder,
}

impl Identity {
    fn new() -> Self {
        Self {
            system_id: UInt32Builder::new(),
            device_id: UInt32Builder::new(),
            serial: UInt64Builder::new(),
            time: TimestampMicrosecondBuilder::new().with_timezone("UTC"),
        }
    }

    fn push(&mut self, device: DeviceRef, serial: Serial, time_us: i64) {
        self.system_id.append_value(device.system.0);
        self.device_id.append_value(device.device.0);
        self.serial.append_value(serial.value());
        self.time.append_value(time_us);
    }

    fn arrays(&mut self) -> Vec<ArrayRef> {
        vec![
            finish(&mut self.system_id),
            finish(&mut self.device_id),
            finish(&mut self.serial),
            finish(&mut self.time),
        ]
    }
}

fn finish<B: ArrayBuilder>(builder: &mut B) -> ArrayRef {
    builder.finish()
}

/// Rows of one table being gathered (the write buffer's open chunk).
pub trait RowBuilder: Send {
    fn new() -> Self;
    fn table() -> Table;
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The rows so far as a batch; the builder is left empty.
    fn finish(&mut self) -> RecordBatch;
}

fn batch_of(table: Table, columns: Vec<ArrayRef>) -> RecordBatch {
    // Every builder gets one value per row, of its schema's type and nullability.
    RecordBatch::try_new(table.schema(), columns)
        .unwrap_or_else(|e| unreachable!("row builder of {table} out of step with its schema: {e}"))
}

#[derive(Debug)]
pub struct ReadingsBuilder {
    id: Identity,
    interval_s: UInt16Builder,
    energy_j: UInt32Builder,
    ac_power_w: UInt16Builder,
    dc_voltage_mv: UInt16Builder,
    dc_current_ma: UInt16Builder,
    ac_voltage_mv: UInt32Builder,
    ac_frequency_mhz: UInt16Builder,
    temperature_c: Int8Builder,
    status: UInt16Builder,
}

impl ReadingsBuilder {
    pub fn push(&mut self, device: DeviceRef, r: &MicroReading) {
        self.id.push(device, r.serial, r.time_us);
        self.interval_s.append_value(r.interval_s);
        self.energy_j.append_value(r.energy_j);
        self.ac_power_w.append_value(r.ac_power_w);
        self.dc_voltage_mv.append_value(r.dc_voltage_mv);
        self.dc_current_ma.append_value(r.dc_current_ma);
        self.ac_voltage_mv.append_value(r.ac_voltage_mv);
        self.ac_frequency_mhz.append_value(r.ac_frequency_mhz);
        self.temperature_c.append_value(r.temperature_c);
        self.status.append_value(r.status);
    }
}

impl RowBuilder for ReadingsBuilder {
    fn new() -> Self {
        Self {
            id: Identity::new(),
            interval_s: UInt16Builder::new(),
            energy_j: UInt32Builder::new(),
            ac_power_w: UInt16Builder::new(),
            dc_voltage_mv: UInt16Builder::new(),
            dc_current_ma: UInt16Builder::new(),
            ac_voltage_mv: UInt32Builder::new(),
            ac_frequency_mhz: UInt16Builder::new(),
            temperature_c: Int8Builder::new(),
            status: UInt16Builder::new(),
        }
    }

    fn table() -> Table {
        Table::Readings
    }

    fn len(&self) -> usize {
        self.id.time.len()
    }

    fn finish(&mut self) -> RecordBatch {
        let mut columns = self.id.arrays();
        columns.extend([
            finish(&mut self.interval_s),
            finish(&mut self.energy_j),
            finish(&mut self.ac_power_w),
            finish(&mut self.dc_voltage_mv),
            finish(&mut self.dc_current_ma),
            finish(&mut self.ac_voltage_mv),
            finish(&mut self.ac_frequency_mhz),
            finish(&mut self.temperature_c),
            finish(&mut self.status),
        ]);
        batch_of(Self::table(), columns)
    }
}

#[derive(Debug)]
pub struct MetersBuilder {
    id: Identity,
    meter_kind: UInt8Builder,
    interval_s: UInt16Builder,
    active_power_w: Int32Builder,
    reactive_power_var: Int32Builder,
    apparent_power_va: UInt32Builder,
    energy_delivered_wh: UInt64Builder,
    energy_received_wh: UInt64Builder,
    voltage_mv: UInt32Builder,
    current_ma: Int32Builder,
    frequency_mhz: UInt16Builder,
    power_factor_milli: Int16Builder,
}

impl MetersBuilder {
    pub fn push(&mut self, device: DeviceRef, r: &MeterReading) {
        self.id.push(device, r.serial, r.time_us);
        self.meter_kind.append_value(meter_kind_number(r.kind));
        self.interval_s.append_value(r.interval_s);
        self.active_power_w.append_value(r.active_power_w);
        self.reactive_power_var.append_value(r.reactive_power_var);
        self.apparent_power_va.append_value(r.apparent_power_va);
        self.energy_delivered_wh.append_value(r.energy_delivered_wh);
        self.energy_received_wh.append_value(r.energy_received_wh);
        self.voltage_mv.append_value(r.voltage_mv);
        self.current_ma.append_value(r.current_ma);
        self.frequency_mhz.append_value(r.frequency_mhz);
        self.power_factor_milli.append_value(r.power_factor_milli);
    }
}

impl RowBuilder for MetersBuilder {
    fn new() -> Self {
        Self {
            id: Identity::new(),
            meter_kind: UInt8Builder::new(),
            interval_s: UInt16Builder::new(),
            active_power_w: Int32Builder::new(),
            reactive_power_var: Int32Builder::new(),
            apparent_power_va: UInt32Builder::new(),
            energy_delivered_wh: UInt64Builder::new(),
            energy_received_wh: UInt64Builder::new(),
            voltage_mv: UInt32Builder::new(),
            current_ma: Int32Builder::new(),
            frequency_mhz: UInt16Builder::new(),
            power_factor_milli: Int16Builder::new(),
        }
    }

    fn table() -> Table {
        Table::MeterReadings
    }

    fn len(&self) -> usize {
        self.id.time.len()
    }

    fn finish(&mut self) -> RecordBatch {
        let mut columns = self.id.arrays();
        columns.extend([
            finish(&mut self.meter_kind),
            finish(&mut self.interval_s),
            finish(&mut self.active_power_w),
            finish(&mut self.reactive_power_var),
            finish(&mut self.apparent_power_va),
            finish(&mut self.energy_delivered_wh),
            finish(&mut self.energy_received_wh),
            finish(&mut self.voltage_mv),
            finish(&mut self.current_ma),
            finish(&mut self.frequency_mhz),
            finish(&mut self.power_factor_milli),
        ]);
        batch_of(Self::table(), columns)
    }
}

#[derive(Debug)]
pub struct BatteriesBuilder {
    id: Identity,
    interval_s: UInt16Builder,
    power_w: Int32Builder,
    soc_permille: UInt16Builder,
    temperature_c: Int8Builder,
}

impl BatteriesBuilder {
    pub fn push(&mut self, device: DeviceRef, r: &BatteryReading) {
        self.id.push(device, r.serial, r.time_us);
        self.interval_s.append_value(r.interval_s);
        self.power_w.append_value(r.power_w);
        self.soc_permille.append_value(r.soc_permille);
        self.temperature_c.append_value(r.temperature_c);
    }
}

impl RowBuilder for BatteriesBuilder {
    fn new() -> Self {
        Self {
            id: Identity::new(),
            interval_s: UInt16Builder::new(),
            power_w: Int32Builder::new(),
            soc_permille: UInt16Builder::new(),
            temperature_c: Int8Builder::new(),
        }
    }

    fn table() -> Table {
        Table::BatteryReadings
    }

    fn len(&self) -> usize {
        self.id.time.len()
    }

    fn finish(&mut self) -> RecordBatch {
        let mut columns = self.id.arrays();
        columns.extend([
            finish(&mut self.interval_s),
            finish(&mut self.power_w),
            finish(&mut self.soc_permille),
            finish(&mut self.temperature_c),
        ]);
        batch_of(Self::table(), columns)
    }
}

#[derive(Debug)]
pub struct EventsBuilder {
    id: Identity,
    event_number: UInt16Builder,
    raised: BooleanBuilder,
}

impl EventsBuilder {
    pub fn push(&mut self, device: DeviceRef, e: &DeviceEvent) {
        self.id.push(device, e.serial, e.time_us);
        self.event_number.append_value(e.kind.number());
        self.raised.append_value(e.state == EventState::Raised);
    }
}

impl RowBuilder for EventsBuilder {
    fn new() -> Self {
        Self {
            id: Identity::new(),
            event_number: UInt16Builder::new(),
            raised: BooleanBuilder::new(),
        }
    }

    fn table() -> Table {
        Table::DeviceEvents
    }

    fn len(&self) -> usize {
        self.id.time.len()
    }

    fn finish(&mut self) -> RecordBatch {
        let mut columns = self.id.arrays();
        columns.extend([finish(&mut self.event_number), finish(&mut self.raised)]);
        batch_of(Self::table(), columns)
    }
}
