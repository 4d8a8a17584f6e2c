//! The engine's error type. Variants carry the context needed to act on them.

/// Everything that can go wrong inside the engine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid serial number {text:?}: expected 1 to 12 decimal digits")]
    InvalidSerial { text: String },
    #[error("invalid date {text:?}: expected YYYY-MM-DD")]
    InvalidDate { text: String },
}
