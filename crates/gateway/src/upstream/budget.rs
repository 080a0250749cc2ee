//! The retry budget: retries (and failovers) may add at most 20% to the request load, plus a
//! floor of 10 per second, so an outage cannot multiply traffic to the providers that are left.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::Instant;

const PER_REQUEST: i64 = 200; // milli-retries deposited per request: 20%
const PER_RETRY: i64 = 1000;
const CAP: i64 = 100 * PER_RETRY;
const FLOOR_PER_SEC: i64 = 10 * PER_RETRY;

#[derive(Debug)]
pub struct RetryBudget {
    balance: AtomicI64,
    epoch: Instant,
    /// Milliseconds since `epoch` of the last floor refill.
    refilled_ms: AtomicU64,
}

impl Default for RetryBudget {
    fn default() -> Self {
        RetryBudget {
            balance: AtomicI64::new(CAP / 10),
            epoch: Instant::now(),
            refilled_ms: AtomicU64::new(0),
        }
    }
}

impl RetryBudget {
    /// Every request earns a fifth of a retry.
    pub fn deposit(&self) {
        add_capped(&self.balance, PER_REQUEST);
    }

    /// Takes one retry from the budget, if there is one.
    pub fn withdraw(&self, now: Instant) -> bool {
        let now_ms = now.saturating_duration_since(self.epoch).as_millis() as u64;
        let last = self.refilled_ms.load(Relaxed);
        if now_ms > last
            && self
                .refilled_ms
                .compare_exchange(last, now_ms, Relaxed, Relaxed)
                .is_ok()
        {
            add_capped(&self.balance, (now_ms - last) as i64 * FLOOR_PER_SEC / 1000);
        }
        self.balance
            .fetch_update(Relaxed, Relaxed, |b| {
                (b >= PER_RETRY).then_some(b - PER_RETRY)
            })
            .is_ok()
    }
}

fn add_capped(a: &AtomicI64, n: i64) {
    let _ = a.fetch_update(Relaxed, Relaxed, |b| Some((b + n).min(CAP)));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn retries_are_bounded_by_load_with_a_floor() {
        let b = RetryBudget::default();
        let t = b.epoch;
        // The initial allowance, then nothing more without traffic or time.
        let initial = (0..1000).take_while(|_| b.withdraw(t)).count();
        assert_eq!(initial, 10);
        // 100 requests earn 20 retries.
        for _ in 0..100 {
            b.deposit();
        }
        assert_eq!((0..1000).take_while(|_| b.withdraw(t)).count(), 20);
        // One second later, the floor adds 10.
        assert_eq!(
            (0..1000)
                .take_while(|_| b.withdraw(t + Duration::from_secs(1)))
                .count(),
            10
        );
    }
}
