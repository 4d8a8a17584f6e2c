//! The WAL's record body: a [`TelemetryBatch`] encoded column by column (deltas and
//! varints, which turn sorted serials, shared timestamps and slowly varying voltages into a
//! byte or two). The WAL compresses whole commit groups of these bodies (see `wal.rs`).
//!
//! Decoding checks every length against hard caps and the data it has, so a damaged body
//! gives an error, never a panic or an unbounded allocation.

use crate::Error;
use crate::ids::{BatchSeq, Serial};
use crate::telemetry::{
    BatteryReading, ConsumptionMeterMode, DeviceEvent, EventKind, EventState, MeterKind,
    MeterReading, MicroReadings, TelemetryBatch,
};

/// Version of the body layout, first byte of every body.
const BODY_VERSION: u8 = 1;
/// Caps that keep a damaged record from allocating without bound.
pub const MAX_ROWS_PER_BATCH: usize = 1 << 20;

/// Encodes a batch into a record body. Refuses what [`decode`] would refuse, so that an
/// acknowledged record always replays.
pub fn encode(batch: &TelemetryBatch) -> Result<Vec<u8>, Error> {
    let m = &batch.micro;
    let n = m.serial.len();
    let lengths = [
        m.time_us.len(),
        m.interval_s.len(),
        m.energy_j.len(),
        m.ac_power_w.len(),
        m.dc_voltage_mv.len(),
        m.dc_current_ma.len(),
        m.ac_voltage_mv.len(),
        m.ac_frequency_mhz.len(),
        m.temperature_c.len(),
        m.status.len(),
    ];
    if lengths.iter().any(|len| *len != n) {
        return Err(Error::Codec {
            reason: format!("microinverter columns of unequal length: {n} serials, {lengths:?}"),
        });
    }
    let rows = [
        n,
        batch.meters.len(),
        batch.batteries.len(),
        batch.events.len(),
    ];
    if rows.iter().any(|r| *r > MAX_ROWS_PER_BATCH) {
        return Err(Error::Codec {
            reason: format!("batch has {rows:?} rows; at most {MAX_ROWS_PER_BATCH} of each kind"),
        });
    }
    let mut w = Writer::with_capacity(64 + batch.micro.len() * 16);
    w.u8(BODY_VERSION);
    w.varint(batch.gateway.value());
    w.varint(batch.seq.0);
    w.signed(batch.created_us);

    let m = &batch.micro;
    w.varint(m.len() as u64);
    w.delta_column(m.serial.iter().map(|s| s.value() as i64));
    w.delta_column(m.time_us.iter().copied());
    w.column(m.interval_s.iter().map(|v| u64::from(*v)));
    w.column(m.energy_j.iter().map(|v| u64::from(*v)));
    w.column(m.ac_power_w.iter().map(|v| u64::from(*v)));
    w.delta_column(m.dc_voltage_mv.iter().map(|v| i64::from(*v)));
    w.column(m.dc_current_ma.iter().map(|v| u64::from(*v)));
    w.delta_column(m.ac_voltage_mv.iter().map(|v| i64::from(*v)));
    w.delta_column(m.ac_frequency_mhz.iter().map(|v| i64::from(*v)));
    for t in &m.temperature_c {
        w.signed(i64::from(*t));
    }
    w.column(m.status.iter().map(|v| u64::from(*v)));

    w.varint(batch.meters.len() as u64);
    for r in &batch.meters {
        w.varint(r.serial.value());
        w.u8(match r.kind {
            MeterKind::Production => 0,
            MeterKind::Consumption(ConsumptionMeterMode::Net) => 1,
            MeterKind::Consumption(ConsumptionMeterMode::Total) => 2,
        });
        w.signed(r.time_us);
        w.varint(u64::from(r.interval_s));
        w.signed(i64::from(r.active_power_w));
        w.signed(i64::from(r.reactive_power_var));
        w.varint(u64::from(r.apparent_power_va));
        w.varint(r.energy_delivered_wh);
        w.varint(r.energy_received_wh);
        w.varint(u64::from(r.voltage_mv));
        w.signed(i64::from(r.current_ma));
        w.varint(u64::from(r.frequency_mhz));
        w.signed(i64::from(r.power_factor_milli));
    }

    w.varint(batch.batteries.len() as u64);
    for r in &batch.batteries {
        w.varint(r.serial.value());
        w.signed(r.time_us);
        w.varint(u64::from(r.interval_s));
        w.signed(i64::from(r.power_w));
        w.varint(u64::from(r.soc_permille));
        w.signed(i64::from(r.temperature_c));
    }

    w.varint(batch.events.len() as u64);
    for e in &batch.events {
        w.varint(e.serial.value());
        w.signed(e.time_us);
        w.varint(u64::from(e.kind.number()));
        w.u8(match e.state {
            EventState::Raised => 1,
            EventState::Cleared => 0,
        });
    }

    Ok(w.buf)
}

/// Decodes a record body written by [`encode`].
pub fn decode(raw: &[u8]) -> Result<TelemetryBatch, Error> {
    let mut r = Reader { buf: raw, pos: 0 };
    let version = r.u8()?;
    if version != BODY_VERSION {
        return Err(Error::Codec {
            reason: format!("unknown body version {version}"),
        });
    }
    let gateway = r.serial()?;
    let seq = BatchSeq(r.varint()?);
    let created_us = r.signed()?;
    let mut batch = TelemetryBatch::new(gateway, seq, created_us);

    let n = r.count()?;
    let mut m = MicroReadings::with_capacity(n);
    m.serial = r
        .delta_column(n)?
        .into_iter()
        .map(|v| serial_from(v as u64))
        .collect::<Result<_, _>>()?;
    m.time_us = r.delta_column(n)?;
    m.interval_s = r.narrow_column(n)?;
    m.energy_j = r.narrow_column(n)?;
    m.ac_power_w = r.narrow_column(n)?;
    m.dc_voltage_mv = narrow_all(r.delta_column(n)?)?;
    m.dc_current_ma = r.narrow_column(n)?;
    m.ac_voltage_mv = narrow_all(r.delta_column(n)?)?;
    m.ac_frequency_mhz = narrow_all(r.delta_column(n)?)?;
    m.temperature_c = (0..n)
        .map(|_| r.signed().and_then(narrow))
        .collect::<Result<_, _>>()?;
    m.status = r.narrow_column(n)?;
    batch.micro = m;

    let n = r.count()?;
    batch.meters.reserve(n);
    for _ in 0..n {
        let serial = r.serial()?;
        let kind = match r.u8()? {
            0 => MeterKind::Production,
            1 => MeterKind::Consumption(ConsumptionMeterMode::Net),
            2 => MeterKind::Consumption(ConsumptionMeterMode::Total),
            other => {
                return Err(Error::Codec {
                    reason: format!("unknown meter kind {other}"),
                });
            }
        };
        batch.meters.push(MeterReading {
            serial,
            kind,
            time_us: r.signed()?,
            interval_s: narrow(r.varint()?)?,
            active_power_w: narrow(r.signed()?)?,
            reactive_power_var: narrow(r.signed()?)?,
            apparent_power_va: narrow(r.varint()?)?,
            energy_delivered_wh: r.varint()?,
            energy_received_wh: r.varint()?,
            voltage_mv: narrow(r.varint()?)?,
            current_ma: narrow(r.signed()?)?,
            frequency_mhz: narrow(r.varint()?)?,
            power_factor_milli: narrow(r.signed()?)?,
        });
    }

    let n = r.count()?;
    batch.batteries.reserve(n);
    for _ in 0..n {
        batch.batteries.push(BatteryReading {
            serial: r.serial()?,
            time_us: r.signed()?,
            interval_s: narrow(r.varint()?)?,
            power_w: narrow(r.signed()?)?,
            soc_permille: narrow(r.varint()?)?,
            temperature_c: narrow(r.signed()?)?,
        });
    }

    let n = r.count()?;
    batch.events.reserve(n);
    for _ in 0..n {
        let serial = r.serial()?;
        let time_us = r.signed()?;
        let number: u16 = narrow(r.varint()?)?;
        let kind = EventKind::from_number(number).ok_or_else(|| Error::Codec {
            reason: format!("unknown event kind {number}"),
        })?;
        let state = match r.u8()? {
            1 => EventState::Raised,
            0 => EventState::Cleared,
            other => {
                return Err(Error::Codec {
                    reason: format!("unknown event state {other}"),
                });
            }
        };
        batch.events.push(DeviceEvent {
            serial,
            time_us,
            kind,
            state,
        });
    }
    if r.pos != raw.len() {
        return Err(Error::Codec {
            reason: format!("{} trailing bytes", raw.len() - r.pos),
        });
    }
    Ok(batch)
}

fn serial_from(value: u64) -> Result<Serial, Error> {
    Serial::new(value).ok_or_else(|| Error::Codec {
        reason: format!("serial {value} has more than 12 digits"),
    })
}

fn narrow<T: TryFrom<V>, V: Copy + std::fmt::Display>(value: V) -> Result<T, Error> {
    T::try_from(value).map_err(|_| Error::Codec {
        reason: format!("value {value} out of range for its column"),
    })
}

fn narrow_all<T: TryFrom<i64>>(values: Vec<i64>) -> Result<Vec<T>, Error> {
    values.into_iter().map(narrow).collect()
}

/// Appends `v` as a LEB128 varint.
pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads a LEB128 varint at `pos`, advancing it; `None` if cut short or over 10 bytes.
pub(crate) fn get_varint(bytes: &[u8], pos: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *bytes.get(*pos)?;
        *pos += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    fn with_capacity(capacity: usize) -> Self {
        Self {
            buf: Vec::with_capacity(capacity),
        }
    }

    fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    fn varint(&mut self, v: u64) {
        put_varint(&mut self.buf, v);
    }

    fn signed(&mut self, v: i64) {
        self.varint(((v << 1) ^ (v >> 63)) as u64);
    }

    fn column(&mut self, values: impl Iterator<Item = u64>) {
        for v in values {
            self.varint(v);
        }
    }

    fn delta_column(&mut self, values: impl Iterator<Item = i64>) {
        let mut previous = 0i64;
        for v in values {
            self.signed(v.wrapping_sub(previous));
            previous = v;
        }
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn truncated(&self) -> Error {
        Error::Codec {
            reason: format!("body ends early at byte {}", self.pos),
        }
    }

    fn u8(&mut self) -> Result<u8, Error> {
        let v = *self.buf.get(self.pos).ok_or_else(|| self.truncated())?;
        self.pos += 1;
        Ok(v)
    }

    fn varint(&mut self) -> Result<u64, Error> {
        get_varint(self.buf, &mut self.pos).ok_or_else(|| Error::Codec {
            reason: format!("bad or cut-short varint at byte {}", self.pos),
        })
    }

    fn signed(&mut self) -> Result<i64, Error> {
        let v = self.varint()?;
        Ok(((v >> 1) as i64) ^ -((v & 1) as i64))
    }

    fn serial(&mut self) -> Result<Serial, Error> {
        serial_from(self.varint()?)
    }

    /// A row count, capped, and never more than the bytes left could hold.
    fn count(&mut self) -> Result<usize, Error> {
        let n = self.varint()?;
        let left = (self.buf.len() - self.pos) as u64;
        if n > MAX_ROWS_PER_BATCH as u64 || n > left {
            return Err(Error::Codec {
                reason: format!("row count {n} exceeds what the body can hold"),
            });
        }
        Ok(n as usize)
    }

    fn narrow_column<T: TryFrom<u64>>(&mut self, n: usize) -> Result<Vec<T>, Error> {
        (0..n).map(|_| self.varint().and_then(narrow)).collect()
    }

    fn delta_column(&mut self, n: usize) -> Result<Vec<i64>, Error> {
        let mut previous = 0i64;
        (0..n)
            .map(|_| {
                previous = previous.wrapping_add(self.signed()?);
                Ok(previous)
            })
            .collect()
    }
}
