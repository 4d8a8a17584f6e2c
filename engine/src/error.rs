//! The engine's error type. Variants carry the context needed to act on them.

/// Everything that can go wrong inside the engine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid serial number {text:?}: expected 1 to 12 decimal digits")]
    InvalidSerial { text: String },
    #[error("invalid date {text:?}: expected YYYY-MM-DD")]
    InvalidDate { text: String },
    #[error("WAL I/O on {path}: {source}")]
    WalIo {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("WAL corrupt in {path} at byte {offset}: {reason}")]
    WalCorrupt {
        path: std::path::PathBuf,
        offset: u64,
        reason: String,
    },
    #[error(
        "WAL write failed; this group was not acknowledged and may or may not be on disk: {message}"
    )]
    WalWriteFailed { message: String },
    #[error("WAL directory is in use by another process (lock held on {path})")]
    WalLocked { path: std::path::PathBuf },
    #[error("WAL refuses appends after an earlier write failure; restart to recover")]
    WalPoisoned,
    #[error("WAL is closed")]
    WalClosed,
    #[error("record body: {reason}")]
    Codec { reason: String },
    #[error("I/O on {path}: {source}")]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("object store: {context}: {source}")]
    Storage {
        context: String,
        source: Box<object_store::Error>,
    },
    #[error("Parquet: {context}: {source}")]
    Parquet {
        context: String,
        source: parquet::errors::ParquetError,
    },
    #[error("Arrow: {context}: {source}")]
    Arrow {
        context: String,
        source: arrow::error::ArrowError,
    },
    #[error("manifest version {version} is unusable: {reason}")]
    Manifest { version: u64, reason: String },
    #[error("table {table}: {reason}")]
    Schema { table: &'static str, reason: String },
    #[error("unknown time zone {name:?}: {reason}")]
    UnknownTimeZone { name: String, reason: String },
    #[error(
        "the write buffer holds {rows} rows, the most allowed is {limit}: persistence is behind; retry shortly"
    )]
    BufferFull { rows: usize, limit: usize },
    #[error(
        "batch {seq} of gateway {gateway} holds a time of {time_us} µs since 1970, outside the \
         stored span 2000-01-01 to 9999-12-31 (UTC): is the gateway's clock set?"
    )]
    TimeOutOfRange {
        gateway: crate::ids::Serial,
        seq: u64,
        time_us: i64,
    },
    #[error("registry: {context}: {source}")]
    Registry {
        context: String,
        source: rusqlite::Error,
    },
    #[error(
        "registry {path} has schema version {version}, newer than the {known} this build knows: use a newer sunfleet"
    )]
    RegistryTooNew {
        path: std::path::PathBuf,
        version: usize,
        known: usize,
    },
    #[error("registry {path}: migration {migration} failed: {reason}")]
    RegistryMigration {
        path: std::path::PathBuf,
        migration: &'static str,
        reason: String,
    },
    #[error("serial {serial} is already registered (device {device_id})")]
    SerialTaken {
        serial: crate::ids::Serial,
        device_id: i64,
    },
    #[error("{serial} is not a registered gateway in service (unknown, or already retired)")]
    NoActiveGateway { serial: crate::ids::Serial },
    #[error("no system {system_id}")]
    UnknownSystem { system_id: i64 },
    #[error("{what} is not part of system {system_id}")]
    NotOfSystem { what: String, system_id: i64 },
    #[error(
        "device {device_id} cannot go to row {row}, column {column} of array {array:?}: the cell is outside its grid"
    )]
    OutsideGrid {
        device_id: i64,
        array: String,
        row: u16,
        column: u16,
    },
    #[error(
        "system {system_id} has no owner who can be given a sign-in (none entered, or the e-mail belongs to another account)"
    )]
    NoOwnerSignIn { system_id: i64 },
    #[error("{email} already has an account")]
    EmailTaken { email: String },
    #[error("system {system_id} has no owner yet: enter one in the activation form")]
    NoOwner { system_id: i64 },
    #[error(
        "{email} is already the e-mail of another owner: to make that owner this system's owner, enter the address in the activation form"
    )]
    OwnerEmailTaken { email: String },
    #[error("composing the e-mail: {reason}")]
    MailComposition { reason: String },
    #[error("this invitation link is unknown, used or expired: ask for a new one")]
    InvitationInvalid,
    #[error("company {company_id} is not a subcontractor of company {installer_id}")]
    NotASubcontractor { company_id: i64, installer_id: i64 },
    #[error("passwords need at least {min_chars} characters")]
    WeakPassword { min_chars: usize },
    #[error("no user has the e-mail {email:?}")]
    UnknownUser { email: String },
    #[error("user {user_id} is not a member of company {company_id}")]
    NotInCompany { user_id: i64, company_id: i64 },
    #[error(
        "{email} is the company's last active administrator: make another user an administrator first"
    )]
    LastAdmin { email: String },
    #[error("password hash: {reason}")]
    PasswordHash { reason: String },
    #[error("unknown table {name:?}")]
    UnknownTable { name: String },
    #[error("table {table:?} has no integer column {column:?}")]
    UnknownColumn { table: String, column: String },
    #[error(
        "the WAL would number new records from {wal_next_seq}, but the manifest already covers records up to {persisted_wal_seq}: the WAL folder was replaced or removed; restore it or move the data folder aside"
    )]
    WalBehindManifest {
        wal_next_seq: u64,
        persisted_wal_seq: u64,
    },
}
