//! Named crash points for the durability tests: `SUNFLEET_FAILPOINT=name:n` makes the
//! process abort (as abruptly as SIGKILL: no destructors, no flushing) the `n`-th time
//! execution reaches `hit("name")`. Unset, a hit costs one atomic load.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// The environment variable that arms a failpoint.
pub const ENV: &str = "SUNFLEET_FAILPOINT";

struct Armed {
    name: String,
    at_hit: u64,
    hits: AtomicU64,
}

fn armed() -> Option<&'static Armed> {
    static ARMED: OnceLock<Option<Armed>> = OnceLock::new();
    ARMED
        .get_or_init(|| {
            let value = std::env::var(ENV).ok()?;
            let (name, at_hit) = match value.split_once(':') {
                Some((name, n)) => (name.to_owned(), n.parse().ok()?),
                None => (value, 1),
            };
            Some(Armed {
                name,
                at_hit,
                hits: AtomicU64::new(0),
            })
        })
        .as_ref()
}

/// Aborts the process if the named failpoint is armed and this is its chosen hit.
#[inline]
pub fn hit(name: &str) {
    if let Some(armed) = armed()
        && armed.name == name
        && armed.hits.fetch_add(1, Ordering::Relaxed) + 1 == armed.at_hit
    {
        std::process::abort();
    }
}
