//! Byte-level damage for the decoders' property tests: what a flaky disk, a torn write or a
//! hostile hand does to stored bytes.

use proptest::prelude::*;

/// One change to a byte string; positions wrap around its length.
#[derive(Debug, Clone)]
pub enum Damage {
    Flip {
        at: usize,
        mask: u8,
    },
    Insert {
        at: usize,
        bytes: Vec<u8>,
    },
    Remove {
        at: usize,
        len: usize,
    },
    /// Zeros over `len` bytes (to the end when `len` is large): a write that never landed.
    Zero {
        at: usize,
        len: usize,
    },
    Truncate {
        at: usize,
    },
}

impl Damage {
    pub fn apply(&self, bytes: &mut Vec<u8>) {
        match self {
            Damage::Flip { at, mask } => {
                if !bytes.is_empty() {
                    let at = at % bytes.len();
                    bytes[at] ^= mask;
                }
            }
            Damage::Insert { at, bytes: new } => {
                let tail = bytes.split_off(at % (bytes.len() + 1));
                bytes.extend_from_slice(new);
                bytes.extend_from_slice(&tail);
            }
            Damage::Remove { at, len } => {
                let at = at % (bytes.len() + 1);
                let tail = bytes.split_off(at.saturating_add(*len).min(bytes.len()));
                bytes.truncate(at);
                bytes.extend_from_slice(&tail);
            }
            Damage::Zero { at, len } => {
                let at = at % (bytes.len() + 1);
                let end = at.saturating_add(*len).min(bytes.len());
                bytes[at..end].fill(0);
            }
            Damage::Truncate { at } => {
                let at = at % (bytes.len() + 1);
                bytes.truncate(at);
            }
        }
    }
}

pub fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        (any::<usize>(), 1u8..=255).prop_map(|(at, mask)| Damage::Flip { at, mask }),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(at, bytes)| Damage::Insert { at, bytes }),
        (any::<usize>(), 1usize..16).prop_map(|(at, len)| Damage::Remove { at, len }),
        (any::<usize>(), prop_oneof![1usize..16, Just(usize::MAX)])
            .prop_map(|(at, len)| Damage::Zero { at, len }),
        any::<usize>().prop_map(|at| Damage::Truncate { at }),
    ]
}
