//! The live state of each target: requests in flight, a latency average, its own limits'
//! counters, and a circuit breaker.
//!
//! Breaker: closed while the target answers; after `FAILURES_TO_OPEN` consecutive failures
//! (connection errors, timeouts, 5xx, 429) it opens for a cool-down that doubles on each failed
//! probe (1 s … 30 s); a 429's `Retry-After` sets the cool-down directly. When the cool-down
//! ends, exactly one request is let through as a probe (half-open): success closes the breaker,
//! failure opens it again. Time is passed in (`now`), so the logic is testable without sleeping.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const FAILURES_TO_OPEN: u32 = 3;
const FIRST_COOLDOWN: Duration = Duration::from_secs(1);
const MAX_COOLDOWN: Duration = Duration::from_secs(30);

/// Shared by every configuration generation that has the same (provider, upstream model), so a
/// reload does not forget an outage.
#[derive(Debug, Default)]
pub struct TargetStats {
    pub in_flight: AtomicU64,
    /// Exponentially weighted moving average of latency, µs (0 = never measured).
    pub ewma_us: AtomicU64,
    consecutive_failures: AtomicU32,
    /// A half-open probe is in flight.
    probing: AtomicBool,
    breaker: Mutex<Breaker>,
    window: Mutex<Window>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Breaker {
    /// Closed when `None`; open until this instant otherwise.
    open_until: Option<Instant>,
    cooldown: Duration,
}

/// Requests and tokens of the current minute, for a target's own `rpm`/`tpm`.
#[derive(Debug, Default)]
struct Window {
    start: Option<Instant>,
    requests: u64,
    tokens: u64,
}

/// What the breaker allows for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Closed: go ahead.
    Open,
    /// Half-open: this request is the probe; report its outcome.
    Probe,
    /// Open (or a probe is already out): skip this target.
    Skip,
}

impl TargetStats {
    /// Folds one observed latency into the average (weight 1/8 for the new sample).
    pub fn observe(&self, d: Duration) {
        let sample = d.as_micros().min(u128::from(u64::MAX)) as u64;
        let _ = self.ewma_us.fetch_update(Relaxed, Relaxed, |old| {
            Some(if old == 0 {
                sample
            } else {
                old - old / 8 + sample / 8
            })
        });
    }

    /// May a request go to this target now?
    pub fn gate(&self, now: Instant) -> Gate {
        let b = *self.breaker.lock().unwrap_or_else(|e| e.into_inner());
        match b.open_until {
            None => Gate::Open,
            Some(until) if now < until => Gate::Skip,
            Some(_) => {
                if self
                    .probing
                    .compare_exchange(false, true, Relaxed, Relaxed)
                    .is_ok()
                {
                    Gate::Probe
                } else {
                    Gate::Skip
                }
            }
        }
    }

    /// Whether the breaker is closed (for `/admin/v1/models` and `switchyard_target_healthy`).
    pub fn healthy(&self) -> bool {
        self.breaker
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .open_until
            .is_none()
    }

    /// A success closes the breaker.
    pub fn success(&self) {
        self.consecutive_failures.store(0, Relaxed);
        self.probing.store(false, Relaxed);
        let mut b = self.breaker.lock().unwrap_or_else(|e| e.into_inner());
        *b = Breaker::default();
    }

    /// A failure that says the target is unwell. `retry_after` (a 429's) sets the cool-down.
    pub fn failure(&self, now: Instant, retry_after: Option<Duration>) {
        let was_probe = self.probing.swap(false, Relaxed);
        let n = self.consecutive_failures.fetch_add(1, Relaxed) + 1;
        let mut b = self.breaker.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(ra) = retry_after {
            b.cooldown = b.cooldown.max(FIRST_COOLDOWN);
            let until = now + ra.min(Duration::from_secs(3600));
            b.open_until = Some(b.open_until.map_or(until, |u| u.max(until)));
        } else if was_probe || b.open_until.is_some() {
            b.cooldown = (b.cooldown * 2).clamp(FIRST_COOLDOWN, MAX_COOLDOWN);
            b.open_until = Some(now + b.cooldown);
        } else if n >= FAILURES_TO_OPEN {
            b.cooldown = FIRST_COOLDOWN;
            b.open_until = Some(now + b.cooldown);
        }
    }

    /// A probe that ended without saying anything about the target (the client's request was
    /// bad, or it was cancelled): let the next request probe.
    pub fn release_probe(&self) {
        self.probing.store(false, Relaxed);
    }

    /// Counts one request of `tokens` against the target's own per-minute limits; false (and
    /// nothing counted) if either would be exceeded.
    pub fn take(&self, now: Instant, rpm: Option<u64>, tpm: Option<u64>, tokens: u64) -> bool {
        if rpm.is_none() && tpm.is_none() {
            return true;
        }
        let mut w = self.window.lock().unwrap_or_else(|e| e.into_inner());
        if w.start
            .is_none_or(|s| now.duration_since(s) >= Duration::from_secs(60))
        {
            *w = Window {
                start: Some(now),
                requests: 0,
                tokens: 0,
            };
        }
        if rpm.is_some_and(|r| w.requests + 1 > r) || tpm.is_some_and(|t| w.tokens + tokens > t) {
            return false;
        }
        w.requests += 1;
        w.tokens += tokens;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_consecutive_failures_and_probes_once() {
        let s = TargetStats::default();
        let t0 = Instant::now();
        for _ in 0..FAILURES_TO_OPEN - 1 {
            s.failure(t0, None);
            assert_eq!(s.gate(t0), Gate::Open);
        }
        s.failure(t0, None);
        assert_eq!(s.gate(t0), Gate::Skip);
        assert!(!s.healthy());
        // After the cool-down, one probe and only one.
        let t1 = t0 + FIRST_COOLDOWN;
        assert_eq!(s.gate(t1), Gate::Probe);
        assert_eq!(s.gate(t1), Gate::Skip);
        // A failed probe doubles the cool-down.
        s.failure(t1, None);
        assert_eq!(s.gate(t1 + FIRST_COOLDOWN), Gate::Skip);
        let t2 = t1 + FIRST_COOLDOWN * 2;
        assert_eq!(s.gate(t2), Gate::Probe);
        s.success();
        assert_eq!(s.gate(t2), Gate::Open);
        assert!(s.healthy());
    }

    #[test]
    fn a_success_resets_the_failure_count() {
        let s = TargetStats::default();
        let t = Instant::now();
        s.failure(t, None);
        s.failure(t, None);
        s.success();
        s.failure(t, None);
        assert_eq!(s.gate(t), Gate::Open);
    }

    #[test]
    fn retry_after_sets_the_cooldown() {
        let s = TargetStats::default();
        let t = Instant::now();
        s.failure(t, Some(Duration::from_secs(5)));
        assert_eq!(s.gate(t + Duration::from_secs(4)), Gate::Skip);
        assert_eq!(s.gate(t + Duration::from_secs(5)), Gate::Probe);
    }

    #[test]
    fn per_minute_limits() {
        let s = TargetStats::default();
        let t = Instant::now();
        assert!(s.take(t, Some(2), None, 0));
        assert!(s.take(t, Some(2), None, 0));
        assert!(!s.take(t, Some(2), None, 0));
        assert!(s.take(t + Duration::from_secs(60), Some(2), None, 0));
        let s = TargetStats::default();
        assert!(s.take(t, None, Some(100), 60));
        assert!(!s.take(t, None, Some(100), 60));
        assert!(s.take(t, None, Some(100), 40));
    }
}
