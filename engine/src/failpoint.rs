//! Named fault points for the durability tests: `SUNFLEET_FAILPOINT=name:n` makes the
//! process abort (as abruptly as SIGKILL: no destructors, no flushing) the `n`-th time
//! execution reaches `hit("name")`, or makes the `n`-th `fails("name")` return true (an
//! injected I/O error such as a full disk). Unset, a point costs one atomic load.
//! `SUNFLEET_SLOW_SYNC_MS=n` makes every WAL sync n ms slower, as a slow or overloaded
//! disk would (the soak run's slow-disk phase).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

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

/// Whether this is the chosen hit of the named failpoint.
#[inline]
fn chosen(name: &str) -> bool {
    armed().is_some_and(|armed| {
        armed.name == name && armed.hits.fetch_add(1, Ordering::Relaxed) + 1 == armed.at_hit
    })
}

/// Aborts the process if the named failpoint is armed and this is its chosen hit.
#[inline]
pub fn hit(name: &str) {
    if chosen(name) {
        std::process::abort();
    }
}

/// True (once) if the named failpoint is armed and this is its chosen hit: the caller
/// then fails as if the disk had.
#[inline]
pub fn fails(name: &str) -> bool {
    chosen(name)
}

/// The error an injected failure reports: "no space left on device".
pub fn injected_error() -> std::io::Error {
    std::io::Error::from_raw_os_error(28)
}

/// The environment variable that slows every WAL sync down by that many milliseconds.
pub const SLOW_SYNC_ENV: &str = "SUNFLEET_SLOW_SYNC_MS";

/// Sleeps for [`SLOW_SYNC_ENV`]'s delay, if set (on the WAL's writer thread, before a sync).
#[inline]
pub fn slow_sync() {
    static DELAY: OnceLock<Option<Duration>> = OnceLock::new();
    let delay = DELAY.get_or_init(|| {
        let ms: u64 = std::env::var(SLOW_SYNC_ENV).ok()?.parse().ok()?;
        Some(Duration::from_millis(ms))
    });
    if let Some(delay) = delay {
        std::thread::sleep(*delay);
    }
}
