//! What a gateway uploads: a [`TelemetryBatch`] of readings from the devices behind it.
//!
//! Values are integers in the units devices report (joules, millivolts, milliamps,
//! millihertz), so that nothing is lost between the device and the Parquet file. Every
//! timestamp is the **end** of the reading's interval, in microseconds since the Unix epoch, UTC.

use crate::ids::{BatchSeq, Serial};
use crate::time::STORABLE_TIMES_US;

/// Status flags of one microinverter reading.
pub mod micro_status {
    /// Converting power to the grid during the interval.
    pub const PRODUCING: u16 = 1 << 0;
    /// Output limited by the inverter's rated AC power.
    pub const CLIPPING: u16 = 1 << 1;
    /// Stopped: AC voltage outside the grid profile's limits.
    pub const AC_VOLTAGE_OUT_OF_RANGE: u16 = 1 << 2;
    /// Stopped: AC frequency outside the grid profile's limits.
    pub const AC_FREQUENCY_OUT_OF_RANGE: u16 = 1 << 3;
    /// Stopped: production switched off by a gateway task.
    pub const POWER_OFF_BY_COMMAND: u16 = 1 << 4;
    /// Stopped: DC insulation resistance below threshold, until reset.
    pub const DC_RESISTANCE_LOW: u16 = 1 << 5;
    /// Stopped: ground-fault interrupt tripped, until cleared.
    pub const GFI_TRIPPED: u16 = 1 << 6;
}

/// One microinverter reading (a row of [`MicroReadings`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MicroReading {
    pub serial: Serial,
    pub time_us: i64,
    pub interval_s: u16,
    /// AC energy produced in the interval.
    pub energy_j: u32,
    /// Average AC power over the interval: `energy_j / interval_s`, rounded.
    pub ac_power_w: u16,
    pub dc_voltage_mv: u16,
    pub dc_current_ma: u16,
    pub ac_voltage_mv: u32,
    pub ac_frequency_mhz: u16,
    pub temperature_c: i8,
    /// [`micro_status`] flags.
    pub status: u16,
}

/// Microinverter readings, one vector per field (structure of arrays, as they travel and
/// are stored).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MicroReadings {
    pub serial: Vec<Serial>,
    pub time_us: Vec<i64>,
    pub interval_s: Vec<u16>,
    pub energy_j: Vec<u32>,
    pub ac_power_w: Vec<u16>,
    pub dc_voltage_mv: Vec<u16>,
    pub dc_current_ma: Vec<u16>,
    pub ac_voltage_mv: Vec<u32>,
    pub ac_frequency_mhz: Vec<u16>,
    pub temperature_c: Vec<i8>,
    pub status: Vec<u16>,
}

impl MicroReadings {
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            serial: Vec::with_capacity(capacity),
            time_us: Vec::with_capacity(capacity),
            interval_s: Vec::with_capacity(capacity),
            energy_j: Vec::with_capacity(capacity),
            ac_power_w: Vec::with_capacity(capacity),
            dc_voltage_mv: Vec::with_capacity(capacity),
            dc_current_ma: Vec::with_capacity(capacity),
            ac_voltage_mv: Vec::with_capacity(capacity),
            ac_frequency_mhz: Vec::with_capacity(capacity),
            temperature_c: Vec::with_capacity(capacity),
            status: Vec::with_capacity(capacity),
        }
    }

    pub fn len(&self) -> usize {
        self.serial.len()
    }

    pub fn is_empty(&self) -> bool {
        self.serial.is_empty()
    }

    pub fn push(&mut self, r: MicroReading) {
        self.serial.push(r.serial);
        self.time_us.push(r.time_us);
        self.interval_s.push(r.interval_s);
        self.energy_j.push(r.energy_j);
        self.ac_power_w.push(r.ac_power_w);
        self.dc_voltage_mv.push(r.dc_voltage_mv);
        self.dc_current_ma.push(r.dc_current_ma);
        self.ac_voltage_mv.push(r.ac_voltage_mv);
        self.ac_frequency_mhz.push(r.ac_frequency_mhz);
        self.temperature_c.push(r.temperature_c);
        self.status.push(r.status);
    }

    /// Row `i`; panics if `i >= len()`, like slice indexing.
    pub fn row(&self, i: usize) -> MicroReading {
        MicroReading {
            serial: self.serial[i],
            time_us: self.time_us[i],
            interval_s: self.interval_s[i],
            energy_j: self.energy_j[i],
            ac_power_w: self.ac_power_w[i],
            dc_voltage_mv: self.dc_voltage_mv[i],
            dc_current_ma: self.dc_current_ma[i],
            ac_voltage_mv: self.ac_voltage_mv[i],
            ac_frequency_mhz: self.ac_frequency_mhz[i],
            temperature_c: self.temperature_c[i],
            status: self.status[i],
        }
    }

    pub fn rows(&self) -> impl ExactSizeIterator<Item = MicroReading> + '_ {
        (0..self.len()).map(|i| self.row(i))
    }

    /// Appends all rows of `other`.
    pub fn extend_from(&mut self, other: &MicroReadings) {
        self.serial.extend_from_slice(&other.serial);
        self.time_us.extend_from_slice(&other.time_us);
        self.interval_s.extend_from_slice(&other.interval_s);
        self.energy_j.extend_from_slice(&other.energy_j);
        self.ac_power_w.extend_from_slice(&other.ac_power_w);
        self.dc_voltage_mv.extend_from_slice(&other.dc_voltage_mv);
        self.dc_current_ma.extend_from_slice(&other.dc_current_ma);
        self.ac_voltage_mv.extend_from_slice(&other.ac_voltage_mv);
        self.ac_frequency_mhz
            .extend_from_slice(&other.ac_frequency_mhz);
        self.temperature_c.extend_from_slice(&other.temperature_c);
        self.status.extend_from_slice(&other.status);
    }
}

/// What a meter measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MeterKind {
    /// On the PV output: energy delivered is production.
    Production,
    /// On the mains. In [`ConsumptionMeterMode::Net`] it sees import minus export; in
    /// [`ConsumptionMeterMode::Total`] it sees the household load alone.
    Consumption(ConsumptionMeterMode),
}

/// How a consumption meter's current clamps are installed (a gateway setting).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConsumptionMeterMode {
    /// Load with solar: the clamps are on the mains between the grid and the solar feed-in.
    Net,
    /// Load only: the clamps are on the load side.
    Total,
}

/// One meter reading at the end of an interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MeterReading {
    pub serial: Serial,
    pub kind: MeterKind,
    pub time_us: i64,
    pub interval_s: u16,
    /// Average active power over the interval; positive in the delivered direction.
    pub active_power_w: i32,
    pub reactive_power_var: i32,
    pub apparent_power_va: u32,
    /// Lifetime energy delivered (production for a production meter; import or load for a
    /// consumption meter).
    pub energy_delivered_wh: u64,
    /// Lifetime energy received (export for a net consumption meter).
    pub energy_received_wh: u64,
    pub voltage_mv: u32,
    pub current_ma: i32,
    pub frequency_mhz: u16,
    /// Power factor × 1000, signed.
    pub power_factor_milli: i16,
}

/// One battery reading at the end of an interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatteryReading {
    pub serial: Serial,
    pub time_us: i64,
    pub interval_s: u16,
    /// Average power over the interval: positive when discharging, negative when charging.
    pub power_w: i32,
    /// State of charge in tenths of a percent (0–1000).
    pub soc_permille: u16,
    pub temperature_c: i8,
}

/// The conditions a device reports as events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventKind {
    AcVoltageOutOfRange,
    AcFrequencyOutOfRange,
    GfiTripped,
    DcResistanceLow,
    GridGone,
    GridInstability,
    AcFrequencyChangingTooFast,
    OverTemperature,
    CriticalTemperature,
    DcVoltageTooHigh,
    DcVoltageTooLow,
    NoGridProfile,
    PowerOnReset,
    FailedToReport,
    PowerGenerationOffByCommand,
}

impl EventKind {
    pub const ALL: [EventKind; 15] = [
        EventKind::AcVoltageOutOfRange,
        EventKind::AcFrequencyOutOfRange,
        EventKind::GfiTripped,
        EventKind::DcResistanceLow,
        EventKind::GridGone,
        EventKind::GridInstability,
        EventKind::AcFrequencyChangingTooFast,
        EventKind::OverTemperature,
        EventKind::CriticalTemperature,
        EventKind::DcVoltageTooHigh,
        EventKind::DcVoltageTooLow,
        EventKind::NoGridProfile,
        EventKind::PowerOnReset,
        EventKind::FailedToReport,
        EventKind::PowerGenerationOffByCommand,
    ];

    /// Stable short code, as stored and shown ("ACVOOR").
    pub fn code(self) -> &'static str {
        match self {
            EventKind::AcVoltageOutOfRange => "ACVOOR",
            EventKind::AcFrequencyOutOfRange => "ACFOOR",
            EventKind::GfiTripped => "GFITRIP",
            EventKind::DcResistanceLow => "DCRLOW",
            EventKind::GridGone => "GRIDGONE",
            EventKind::GridInstability => "GRIDINSTAB",
            EventKind::AcFrequencyChangingTooFast => "ACFROCOF",
            EventKind::OverTemperature => "OVERTEMP",
            EventKind::CriticalTemperature => "CRITTEMP",
            EventKind::DcVoltageTooHigh => "DCVHIGH",
            EventKind::DcVoltageTooLow => "DCVLOW",
            EventKind::NoGridProfile => "NOGRIDPROF",
            EventKind::PowerOnReset => "POR",
            EventKind::FailedToReport => "NOREPORT",
            EventKind::PowerGenerationOffByCommand => "PWROFFCMD",
        }
    }

    /// The name installers see.
    pub fn label(self) -> &'static str {
        match self {
            EventKind::AcVoltageOutOfRange => "AC Voltage Out Of Range",
            EventKind::AcFrequencyOutOfRange => "AC Frequency Out Of Range",
            EventKind::GfiTripped => "GFI Tripped",
            EventKind::DcResistanceLow => "DC Resistance Low - Power Off",
            EventKind::GridGone => "Grid Gone",
            EventKind::GridInstability => "Grid Instability",
            EventKind::AcFrequencyChangingTooFast => "AC Frequency Changing Too Fast",
            EventKind::OverTemperature => "Over Temperature",
            EventKind::CriticalTemperature => "Critical Temperature",
            EventKind::DcVoltageTooHigh => "DC Voltage Too High",
            EventKind::DcVoltageTooLow => "DC Voltage Too Low",
            EventKind::NoGridProfile => "No Grid Profile",
            EventKind::PowerOnReset => "Power On Reset",
            EventKind::FailedToReport => "Failed To Report",
            EventKind::PowerGenerationOffByCommand => "Power Generation Off By Command",
        }
    }

    /// Wire and storage number; stable forever.
    pub fn number(self) -> u16 {
        self as u16 + 1
    }

    pub fn from_number(number: u16) -> Option<Self> {
        Self::ALL.get(usize::from(number).checked_sub(1)?).copied()
    }
}

/// Whether an event starts or ends a condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventState {
    Raised,
    Cleared,
}

/// A condition reported by a device, at the time it was raised or cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceEvent {
    pub serial: Serial,
    pub time_us: i64,
    pub kind: EventKind,
    pub state: EventState,
}

/// Everything one gateway uploads in one go, numbered by the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelemetryBatch {
    pub gateway: Serial,
    pub seq: BatchSeq,
    /// When the gateway closed the batch.
    pub created_us: i64,
    pub micro: MicroReadings,
    pub meters: Vec<MeterReading>,
    pub batteries: Vec<BatteryReading>,
    pub events: Vec<DeviceEvent>,
}

impl TelemetryBatch {
    pub fn new(gateway: Serial, seq: BatchSeq, created_us: i64) -> Self {
        Self {
            gateway,
            seq,
            created_us,
            micro: MicroReadings::default(),
            meters: Vec::new(),
            batteries: Vec::new(),
            events: Vec::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.micro.is_empty()
            && self.meters.is_empty()
            && self.batteries.is_empty()
            && self.events.is_empty()
    }

    /// Readings of every kind (events excluded).
    pub fn reading_count(&self) -> usize {
        self.micro.len() + self.meters.len() + self.batteries.len()
    }

    /// The first reading or event time outside [`STORABLE_TIMES_US`], if any.
    pub fn time_out_of_range(&self) -> Option<i64> {
        self.micro
            .time_us
            .iter()
            .copied()
            .chain(self.meters.iter().map(|r| r.time_us))
            .chain(self.batteries.iter().map(|r| r.time_us))
            .chain(self.events.iter().map(|e| e.time_us))
            .find(|time_us| !STORABLE_TIMES_US.contains(time_us))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_numbers_are_stable_and_round_trip() {
        for kind in EventKind::ALL {
            assert_eq!(EventKind::from_number(kind.number()), Some(kind));
        }
        assert_eq!(EventKind::AcVoltageOutOfRange.number(), 1);
        assert_eq!(EventKind::from_number(0), None);
        assert_eq!(EventKind::from_number(16), None);
    }
}
