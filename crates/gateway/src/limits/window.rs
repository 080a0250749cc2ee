//! The sliding window behind `rpm` and `tpm`, for the in-process backend (`admit.lua` does the
//! same arithmetic in Redis). Pure: the caller passes the time.
//!
//! The minute is cut into one-second buckets. An admission adds its amount to the bucket of its
//! admission time and counts for the 61 buckets starting there, so it counts for more than 60 and
//! at most 61 seconds: no 60-second span ever holds more than the limit, and a limit of 12 hit
//! by any number of concurrent requests admits exactly 12. Buckets later than "now" (a replica
//! whose clock runs ahead) are counted too, so clock skew never lets more through.

use std::collections::VecDeque;
use std::time::Duration;

/// Width of one bucket.
pub const BUCKET_MS: u64 = 1_000;
/// Buckets an admission counts in: 60 seconds plus the partial bucket it was admitted in.
pub const BUCKETS: u64 = 61;

/// The bucket an instant falls in.
pub fn bucket(now_ms: u64) -> u64 {
    now_ms / BUCKET_MS
}

/// The oldest bucket still counted at `now_ms`.
pub fn oldest(now_ms: u64) -> u64 {
    (bucket(now_ms) + 1).saturating_sub(BUCKETS)
}

/// When an admission made in bucket `b` stops counting, measured from `now_ms`.
pub fn expiry(b: u64, now_ms: u64) -> Duration {
    Duration::from_millis(((b + BUCKETS) * BUCKET_MS).saturating_sub(now_ms))
}

/// One scope's counts for one limit (requests or tokens), bucket by bucket, oldest first.
#[derive(Debug, Default)]
pub struct Window {
    buckets: VecDeque<(u64, u64)>,
    total: u64,
}

impl Window {
    /// Forgets buckets that no longer count at `now_ms` and returns what is left.
    pub fn used(&mut self, now_ms: u64) -> u64 {
        let oldest = oldest(now_ms);
        while let Some(&(b, n)) = self.buckets.front() {
            if b >= oldest {
                break;
            }
            self.total -= n;
            self.buckets.pop_front();
        }
        self.total
    }

    /// Whether nothing counts any more (the scope may be evicted).
    pub fn is_empty(&mut self, now_ms: u64) -> bool {
        self.used(now_ms);
        self.buckets.is_empty()
    }

    /// Adds `n` to bucket `b`.
    pub fn add(&mut self, b: u64, n: u64) {
        self.total += n;
        match self.buckets.binary_search_by_key(&b, |&(k, _)| k) {
            Ok(i) => {
                if let Some(slot) = self.buckets.get_mut(i) {
                    slot.1 += n;
                }
            }
            Err(i) => self.buckets.insert(i, (b, n)),
        }
    }

    /// Replaces `from` with `to` in bucket `b`, if that bucket still counts.
    pub fn replace(&mut self, b: u64, from: u64, to: u64) {
        if let Ok(i) = self.buckets.binary_search_by_key(&b, |&(k, _)| k) {
            if let Some(slot) = self.buckets.get_mut(i) {
                let new = slot.1.saturating_sub(from) + to;
                self.total = self.total - slot.1 + new;
                slot.1 = new;
            }
        }
    }

    /// How long until `need` more fits under `limit`; `None` when it never can (`need > limit`).
    /// Call after [`Window::used`] at the same `now_ms`.
    pub fn retry_after(&self, limit: u64, need: u64, now_ms: u64) -> Option<Duration> {
        retry_after(
            self.buckets.iter().copied(),
            self.total,
            limit,
            need,
            now_ms,
        )
    }

    /// How long until everything counted now has expired (OpenAI's `x-ratelimit-reset-*`).
    pub fn reset(&self, now_ms: u64) -> Duration {
        self.buckets
            .back()
            .map_or(Duration::ZERO, |&(b, _)| expiry(b, now_ms))
    }
}

/// Frees the oldest buckets one by one until `used - freed + need <= limit`.
pub fn retry_after(
    buckets: impl Iterator<Item = (u64, u64)>,
    used: u64,
    limit: u64,
    need: u64,
    now_ms: u64,
) -> Option<Duration> {
    if need > limit {
        return None;
    }
    if used + need <= limit {
        return Some(Duration::ZERO);
    }
    let mut left = used;
    for (b, n) in buckets {
        left = left.saturating_sub(n);
        if left + need <= limit {
            return Some(expiry(b, now_ms));
        }
    }
    Some(Duration::ZERO)
}
