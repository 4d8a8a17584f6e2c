//! Sign-in attempt limits: after a few failures for one e-mail address, or many from one
//! client address, sign-in is refused for a while (even with the right password), so
//! passwords cannot be guessed at speed. Kept in memory: a restart forgets, which only
//! helps the legitimate user.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The limits.
#[derive(Debug, Clone, Copy)]
pub struct ThrottleLimits {
    pub window: Duration,
    pub failures_per_email: usize,
    pub failures_per_client: usize,
}

impl Default for ThrottleLimits {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(15 * 60),
            failures_per_email: 5,
            failures_per_client: 30,
        }
    }
}

#[derive(Debug, Default)]
struct Failures {
    by_email: HashMap<String, VecDeque<Instant>>,
    by_client: HashMap<IpAddr, VecDeque<Instant>>,
}

#[derive(Debug)]
pub struct SignInThrottle {
    limits: ThrottleLimits,
    failures: Mutex<Failures>,
}

fn prune(times: &mut VecDeque<Instant>, now: Instant, window: Duration) {
    while times
        .front()
        .is_some_and(|t| now.duration_since(*t) >= window)
    {
        times.pop_front();
    }
}

impl SignInThrottle {
    pub fn new(limits: ThrottleLimits) -> Self {
        Self {
            limits,
            failures: Mutex::new(Failures::default()),
        }
    }

    /// `Err(seconds to wait)` while this e-mail or client has used up its failures.
    pub fn check(&self, email: &str, client: IpAddr, now: Instant) -> Result<(), u64> {
        let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        let window = self.limits.window;
        let email = email.trim().to_lowercase();
        let mut wait = Duration::ZERO;
        if let Some(times) = failures.by_email.get_mut(&email) {
            prune(times, now, window);
            if times.len() >= self.limits.failures_per_email
                && let Some(first) = times.front()
            {
                wait = wait.max(window - now.duration_since(*first));
            }
        }
        if let Some(times) = failures.by_client.get_mut(&client) {
            prune(times, now, window);
            if times.len() >= self.limits.failures_per_client
                && let Some(first) = times.front()
            {
                wait = wait.max(window - now.duration_since(*first));
            }
        }
        if wait.is_zero() {
            Ok(())
        } else {
            Err(wait.as_secs().max(1))
        }
    }

    pub fn failed(&self, email: &str, client: IpAddr, now: Instant) {
        let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        let window = self.limits.window;
        let email_times = failures
            .by_email
            .entry(email.trim().to_lowercase())
            .or_default();
        prune(email_times, now, window);
        email_times.push_back(now);
        let client_times = failures.by_client.entry(client).or_default();
        prune(client_times, now, window);
        client_times.push_back(now);
        // Forget addresses that stopped trying, so memory stays bounded by recent traffic.
        if failures.by_email.len() > 100_000 {
            failures.by_email.retain(|_, t| {
                prune(t, now, window);
                !t.is_empty()
            });
        }
        if failures.by_client.len() > 100_000 {
            failures.by_client.retain(|_, t| {
                prune(t, now, window);
                !t.is_empty()
            });
        }
    }

    /// A successful sign-in clears the e-mail's failures.
    pub fn succeeded(&self, email: &str) {
        self.failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .by_email
            .remove(&email.trim().to_lowercase());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_email_is_locked_after_its_failures_until_the_window_passes() {
        let throttle = SignInThrottle::new(ThrottleLimits {
            window: Duration::from_secs(60),
            failures_per_email: 3,
            failures_per_client: 100,
        });
        let client: IpAddr = [127, 0, 0, 1].into();
        let start = Instant::now();
        for i in 0..3 {
            assert!(throttle.check("A@x.test", client, start).is_ok());
            throttle.failed("a@x.test ", client, start + Duration::from_secs(i));
        }
        let wait = throttle
            .check("a@x.test", client, start + Duration::from_secs(10))
            .unwrap_err();
        assert_eq!(wait, 50);
        assert!(throttle.check("b@x.test", client, start).is_ok());
        assert!(
            throttle
                .check("a@x.test", client, start + Duration::from_secs(61))
                .is_ok()
        );
    }
}
