//! The write buffer: durable batches as Arrow rows per table and UTC day, readable at once.
//!
//! The WAL's writer thread applies each commit group here before it acknowledges it, in WAL
//! order, so everything acknowledged is readable and the buffer always holds a prefix of the
//! log: `last_seq` says how far. Rows are gathered in an open chunk per (table, day) and
//! sealed into an immutable `RecordBatch` every [`CHUNK_ROWS`] rows or when a reader asks;
//! a reader then only clones `Arc`s.

use std::collections::{BTreeMap, HashMap};

use arrow::record_batch::RecordBatch;

use crate::directory::{DeviceRef, UNKNOWN_DEVICE};
use crate::ids::Serial;
use crate::tables::{
    BatteriesBuilder, EventsBuilder, MetersBuilder, ReadingsBuilder, RowBuilder, Table,
};
use crate::telemetry::TelemetryBatch;
use crate::time::CivilDate;
use crate::wal::WalSeq;

/// An open chunk is sealed into a batch when it reaches this many rows.
pub const CHUNK_ROWS: usize = 64 * 1024;

#[derive(Debug)]
struct Chunks<B> {
    sealed: Vec<RecordBatch>,
    open: B,
}

impl<B: RowBuilder> Chunks<B> {
    fn new() -> Self {
        Self {
            sealed: Vec::new(),
            open: B::new(),
        }
    }

    fn seal_if_full(&mut self) {
        if self.open.len() >= CHUNK_ROWS {
            self.seal();
        }
    }

    fn seal(&mut self) {
        if !self.open.is_empty() {
            self.sealed.push(self.open.finish());
        }
    }
}

#[derive(Debug)]
struct TableRows<B> {
    days: BTreeMap<CivilDate, Chunks<B>>,
}

impl<B: RowBuilder> TableRows<B> {
    fn new() -> Self {
        Self {
            days: BTreeMap::new(),
        }
    }

    fn day(&mut self, day: CivilDate) -> &mut Chunks<B> {
        self.days.entry(day).or_insert_with(Chunks::new)
    }

    fn seal_all(&mut self) {
        self.days.values_mut().for_each(Chunks::seal);
    }

    fn days(&self) -> impl Iterator<Item = CivilDate> + '_ {
        self.days.keys().copied()
    }

    /// Sealed batches of the days in `[first, last]`, oldest first within each day.
    fn batches(&self, first: CivilDate, last: CivilDate, out: &mut Vec<(CivilDate, RecordBatch)>) {
        for (day, chunks) in self.days.range(first..=last) {
            out.extend(chunks.sealed.iter().map(|b| (*day, b.clone())));
        }
    }
}

/// Rows that are durable in the WAL and not yet in a persisted file.
#[derive(Debug)]
pub struct WriteBuffer {
    readings: TableRows<ReadingsBuilder>,
    meters: TableRows<MetersBuilder>,
    batteries: TableRows<BatteriesBuilder>,
    events: TableRows<EventsBuilder>,
    rows: usize,
    /// The last WAL record applied; the buffer holds every record after the previous
    /// buffer's last one up to here.
    last_seq: Option<WalSeq>,
}

impl Default for WriteBuffer {
    fn default() -> Self {
        Self::new()
    }
}

impl WriteBuffer {
    pub fn new() -> Self {
        Self {
            readings: TableRows::new(),
            meters: TableRows::new(),
            batteries: TableRows::new(),
            events: TableRows::new(),
            rows: 0,
            last_seq: None,
        }
    }

    /// Adds one durable WAL record and returns how many rows it added. `devices` resolves
    /// serials; unknown ones are kept under [`UNKNOWN_DEVICE`] with their serial.
    pub fn apply(
        &mut self,
        seq: WalSeq,
        batch: &TelemetryBatch,
        devices: &HashMap<Serial, DeviceRef>,
    ) -> usize {
        let resolve = |serial: Serial| devices.get(&serial).copied().unwrap_or(UNKNOWN_DEVICE);
        for reading in batch.micro.rows() {
            let chunks = self.readings.day(CivilDate::of_timestamp(reading.time_us));
            chunks.open.push(resolve(reading.serial), &reading);
            chunks.seal_if_full();
        }
        for reading in &batch.meters {
            let chunks = self.meters.day(CivilDate::of_timestamp(reading.time_us));
            chunks.open.push(resolve(reading.serial), reading);
            chunks.seal_if_full();
        }
        for reading in &batch.batteries {
            let chunks = self.batteries.day(CivilDate::of_timestamp(reading.time_us));
            chunks.open.push(resolve(reading.serial), reading);
            chunks.seal_if_full();
        }
        for event in &batch.events {
            let chunks = self.events.day(CivilDate::of_timestamp(event.time_us));
            chunks.open.push(resolve(event.serial), event);
            chunks.seal_if_full();
        }
        let added = batch.reading_count() + batch.events.len();
        self.rows += added;
        self.last_seq = Some(seq);
        added
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    pub fn last_seq(&self) -> Option<WalSeq> {
        self.last_seq
    }

    /// Seals every open chunk, so that [`WriteBuffer::batches`] sees every row.
    pub fn seal_all(&mut self) {
        self.readings.seal_all();
        self.meters.seal_all();
        self.batteries.seal_all();
        self.events.seal_all();
    }

    /// Sealed batches of `table` for the UTC days `[first, last]`, each with its day, in
    /// arrival order within a day. Call [`WriteBuffer::seal_all`] first to include every row.
    pub fn batches(
        &self,
        table: Table,
        first: CivilDate,
        last: CivilDate,
    ) -> Vec<(CivilDate, RecordBatch)> {
        let mut out = Vec::new();
        match table {
            Table::Readings => self.readings.batches(first, last, &mut out),
            Table::MeterReadings => self.meters.batches(first, last, &mut out),
            Table::BatteryReadings => self.batteries.batches(first, last, &mut out),
            Table::DeviceEvents => self.events.batches(first, last, &mut out),
            // Derived by the engine, never buffered.
            Table::Rollup15m | Table::RollupHour | Table::RollupDay | Table::RollupMonth => {}
        }
        out
    }

    /// UTC days with microinverter readings in the buffer.
    pub fn reading_days(&self) -> impl Iterator<Item = CivilDate> + '_ {
        self.readings.days()
    }

    /// Every (table, day) with rows, with its sealed batches (call `seal_all` first).
    pub fn all_batches(&self) -> Vec<(Table, CivilDate, Vec<RecordBatch>)> {
        let mut out = Vec::new();
        let everything = (
            CivilDate::from_days_since_epoch(i32::MIN),
            CivilDate::from_days_since_epoch(i32::MAX),
        );
        for table in Table::TELEMETRY {
            let mut by_day: BTreeMap<CivilDate, Vec<RecordBatch>> = BTreeMap::new();
            for (day, batch) in self.batches(table, everything.0, everything.1) {
                by_day.entry(day).or_default().push(batch);
            }
            out.extend(
                by_day
                    .into_iter()
                    .map(|(day, batches)| (table, day, batches)),
            );
        }
        out
    }
}
