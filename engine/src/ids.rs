//! Identity: serial numbers are what devices and people see; dense integer ids are what the
//! engine stores and indexes.

use std::fmt;
use std::str::FromStr;

use crate::Error;

/// A device serial number (gateway, microinverter, meter, battery): up to 12 decimal digits,
/// always shown zero-padded to 12.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Serial(u64);

impl Serial {
    /// The largest 12-digit serial.
    pub const MAX: u64 = 999_999_999_999;

    /// A serial from its numeric value, or `None` when it has more than 12 digits.
    pub fn new(value: u64) -> Option<Self> {
        (value <= Self::MAX).then_some(Self(value))
    }

    pub fn value(self) -> u64 {
        self.0
    }
}

impl fmt::Display for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:012}", self.0)
    }
}

impl FromStr for Serial {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self, Error> {
        let trimmed = text.trim();
        let invalid = || Error::InvalidSerial {
            text: text.to_owned(),
        };
        if trimmed.is_empty() || trimmed.len() > 12 || !trimmed.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(invalid());
        }
        trimmed.parse::<u64>().map(Self).map_err(|_| invalid())
    }
}

/// Dense id of a system (site) inside the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SystemId(pub u32);

/// Dense id of a device (any kind) inside the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DeviceId(pub u32);

/// A gateway's batch sequence number: each gateway numbers its batches 1, 2, 3, …
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BatchSeq(pub u64);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_round_trips_zero_padded() {
        let serial: Serial = "000123456789".parse().unwrap();
        assert_eq!(serial.value(), 123_456_789);
        assert_eq!(serial.to_string(), "000123456789");
    }

    #[test]
    fn serial_rejects_bad_text() {
        for bad in ["", "1234567890123", "12a", "-1", "1 2"] {
            assert!(bad.parse::<Serial>().is_err(), "{bad:?} accepted");
        }
        assert!(Serial::new(Serial::MAX + 1).is_none());
    }
}
