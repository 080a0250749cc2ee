//! Admission limits: `rpm`, `tpm`, `max_concurrency` and budgets per key and team, reserved
//! before the upstream call and settled after it. Owns the counters, in process or in Redis; it
//! knows nothing of HTTP, configuration files or the store (the gateway maps those to it).
//!
//! - [`Limiter::admit`] checks every scope of a request and reserves in all of them or in none:
//!   one request in the requests window, the estimated tokens in the tokens window, one
//!   concurrency slot, and the estimated cost against the budget (spent + reserved + estimate
//!   must stay within it). So concurrent requests can overspend a budget by at most the
//!   difference between the estimates and the real costs of the requests already in flight.
//! - [`Reservation::settle`] replaces the estimates with what the request really used. A
//!   reservation settles once (`settle` consumes it); dropping it unsettled gives back its
//!   concurrency slot and reserved cost, keeps its estimated tokens, and charges nothing.
//! - Windows are one-minute sliding windows of one-second buckets (see `window.rs`); budget
//!   periods are UTC calendar periods (see `period.rs`).
//! - Two backends behind one type: in process (one replica) and Redis (any number of replicas,
//!   one Lua script per admission and one per settlement; see `redis.rs` for the key layout).

mod memory;
mod period;
mod redis;
mod window;

pub use period::{Bounds, Period, UnknownPeriod};

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use smallvec::SmallVec;

/// Shared handle to the limits of every scope; cheap to clone.
#[derive(Clone)]
pub struct Limiter {
    inner: Arc<Inner>,
}

/// Whether a scope is a virtual key or a team.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ScopeKind {
    Key,
    Team,
}

/// One thing limits apply to: a key or a team, by its stable id.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Scope {
    pub kind: ScopeKind,
    pub id: Arc<str>,
}

/// Lets the in-process limiter look a scope up by reference and clone it only when it first
/// inserts it (`entry_ref`): a clone is an atomic increment on a count every serving thread
/// touches.
impl From<&Scope> for Scope {
    fn from(s: &Scope) -> Scope {
        s.clone()
    }
}

/// The limits of one scope; `None` is "no limit".
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Limits {
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
    pub max_concurrency: Option<u64>,
    pub budget: Option<Budget>,
}

/// A spending limit in USD over a period.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Budget {
    pub usd: f64,
    pub period: Period,
}

/// One admission: the scopes (typically the key, then its team) and what the request may use.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    pub scopes: &'a [(Scope, Limits)],
    /// Prompt tokens plus the output estimate (`max_tokens` or a default).
    pub tokens: u64,
    /// The cost of those tokens at the model's price.
    pub cost_usd: f64,
    /// Unix milliseconds; the gateway passes [`Limiter::now_ms`].
    pub now_ms: u64,
}

/// Why a request was not admitted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Denied {
    /// The scope whose limit refused it; `None` for [`Kind::Unavailable`].
    pub scope: Option<ScopeKind>,
    pub kind: Kind,
    /// When trying again can succeed; `None` when waiting cannot help (a request larger than the
    /// `tpm` limit, a lifetime budget spent).
    pub retry_after: Option<Duration>,
    /// The limit that refused: requests, tokens, slots, or micro-USD for a budget.
    pub limit: u64,
    /// What was left of it, in the same unit.
    pub remaining: u64,
}

/// Which limit refused a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Rpm,
    Tpm,
    Concurrency,
    Budget,
    /// Redis could not be reached in time and `redis_failure` is `closed` (HTTP 503).
    Unavailable,
}

/// What happens to admissions when Redis is unreachable or slow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FailureMode {
    /// Refuse with [`Kind::Unavailable`] (the default: never a silent per-replica limit).
    #[default]
    Closed,
    /// Admit without limits, log a warning (at most every 10 s) and count it in [`Stats`].
    Open,
}

/// How to reach Redis and behave when it is away.
#[derive(Clone)]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port/db` (may hold a password: never printed).
    pub url: String,
    /// Every key starts with `<prefix>:`.
    pub prefix: String,
    pub failure: FailureMode,
    /// The longest one Redis call may take before it counts as unreachable.
    pub timeout: Duration,
    /// How long a concurrency slot and a reserved cost survive a replica that died without
    /// settling; set it above the longest request (the gateway's request timeout).
    pub lease: Duration,
}

/// What a scope has used, for the `x-ratelimit-*` headers and the admin API.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Usage {
    pub requests: Option<WindowUsage>,
    pub tokens: Option<WindowUsage>,
    pub concurrency: Option<ConcurrencyUsage>,
    pub budget: Option<BudgetUsage>,
}

/// One window limit: what is used and left now, and when everything now counted has expired.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowUsage {
    pub limit: u64,
    pub used: u64,
    pub remaining: u64,
    pub reset: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConcurrencyUsage {
    pub limit: u64,
    pub in_flight: u64,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BudgetUsage {
    pub limit_usd: f64,
    pub spent_usd: f64,
    pub reserved_usd: f64,
    pub remaining_usd: f64,
    pub period: Period,
    pub bounds: Bounds,
}

/// The tightest request and token windows after an admission, across its scopes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Headroom {
    pub requests: Option<WindowUsage>,
    pub tokens: Option<WindowUsage>,
}

/// Counters for metrics; they only grow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Admissions let through without limits because Redis was away (`redis_failure: open`).
    pub fail_open_admits: u64,
    /// Admissions refused because Redis was away (`redis_failure: closed`).
    pub unavailable_denials: u64,
    /// Settlements (and releases of dropped reservations) that did not reach Redis; their leases
    /// give back the slot and reserved cost when they expire.
    pub settle_failures: u64,
    /// Releases of dropped reservations lost because the release queue was full.
    pub releases_dropped: u64,
}

/// A failure outside admission (settle, snapshot, seeding spend, setup).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the limits store (Redis) is unavailable: {0}")]
    Unavailable(String),
    #[error("invalid redis URL ({0})")]
    InvalidUrl(String),
}

/// Admitted: holds what was reserved until it is settled or dropped.
#[must_use = "a reservation should be settled with the request's real usage"]
pub struct Reservation {
    limiter: Limiter,
    ticket: Option<Ticket>,
    headroom: Headroom,
}

impl Limiter {
    /// Limits held in this process, for a single replica.
    pub fn in_process() -> Limiter {
        Limiter::with(Backend::Memory(memory::Memory::default()))
    }

    /// Limits shared through Redis by every replica. Connects now if it can; if Redis is away,
    /// the limiter still starts and each call tries again (at most once a second), honouring
    /// `failure` meanwhile. Must be called inside a tokio runtime (it starts the release task).
    pub async fn redis(config: RedisConfig) -> Result<Limiter, Error> {
        let counters = Arc::new(Counters::default());
        let remote = redis::Remote::start(config, counters.clone()).await?;
        Ok(Limiter {
            inner: Arc::new(Inner {
                backend: Backend::Redis(remote),
                clock: Clock::new(),
                counters,
            }),
        })
    }

    fn with(backend: Backend) -> Limiter {
        Limiter {
            inner: Arc::new(Inner {
                backend,
                clock: Clock::new(),
                counters: Arc::new(Counters::default()),
            }),
        }
    }

    /// The limiter's clock in Unix milliseconds: the wall clock at start, advanced by tokio's
    /// monotonic clock (so tests can pause and advance it).
    pub fn now_ms(&self) -> u64 {
        self.inner.clock.now_ms()
    }

    /// Checks and reserves across all scopes at once, or reserves nothing and says why not.
    pub async fn admit(&self, request: &Request<'_>) -> Result<Reservation, Denied> {
        if limited(request.scopes).next().is_none() {
            return Ok(self.reservation(None, Headroom::default()));
        }
        let estimate = Estimate {
            tokens: request.tokens,
            cost: micros(request.cost_usd),
            now_ms: request.now_ms,
        };
        let (ticket, headroom) = match &self.inner.backend {
            Backend::Memory(memory) => memory.admit(request.scopes, &estimate)?,
            // Boxed: the Redis round trip is a large future that the in-memory limiter (and
            // every request's future above this one) should not carry.
            Backend::Redis(remote) => {
                let scopes: Vec<&(Scope, Limits)> = limited(request.scopes).collect();
                Box::pin(remote.admit(&scopes, &estimate)).await?
            }
        };
        Ok(self.reservation(Some(ticket), headroom))
    }

    /// Settles a reservation: see [`Reservation::settle`].
    pub async fn settle(
        &self,
        reservation: Reservation,
        tokens: u64,
        cost_usd: f64,
    ) -> Result<(), Error> {
        reservation.settle(tokens, cost_usd).await
    }

    /// What `scope` has used now under `limits`.
    pub async fn snapshot(
        &self,
        scope: &Scope,
        limits: &Limits,
        now_ms: u64,
    ) -> Result<Usage, Error> {
        match &self.inner.backend {
            Backend::Memory(memory) => Ok(memory.snapshot(scope, limits, now_ms)),
            Backend::Redis(remote) => remote.snapshot(scope, limits, now_ms).await,
        }
    }

    /// Seeds what `scope` spent in the `period` that starts at `period_start_ms` (any instant
    /// inside the period is accepted), typically from the store at start. Never lowers a spend
    /// already known, so every replica may seed at any time.
    pub async fn load_spend(
        &self,
        scope: &Scope,
        period: Period,
        period_start_ms: u64,
        usd: f64,
    ) -> Result<(), Error> {
        let bounds = period.bounds(period_start_ms);
        let spent = micros(usd);
        match &self.inner.backend {
            Backend::Memory(memory) => {
                memory.load_spend(scope, period, bounds, spent);
                Ok(())
            }
            Backend::Redis(remote) => {
                let now = self.now_ms();
                remote.load_spend(scope, period, bounds, spent, now).await
            }
        }
    }

    /// Counters for metrics.
    pub fn stats(&self) -> Stats {
        self.inner.counters.get()
    }

    /// How many scopes the in-process backend holds in memory (0 with Redis).
    pub fn scopes_in_memory(&self) -> usize {
        match &self.inner.backend {
            Backend::Memory(memory) => memory.len(),
            Backend::Redis(_) => 0,
        }
    }

    fn reservation(&self, ticket: Option<Ticket>, headroom: Headroom) -> Reservation {
        Reservation {
            limiter: self.clone(),
            ticket,
            headroom,
        }
    }
}

impl Reservation {
    /// The tightest request and token windows of this request's scopes after admitting it.
    pub fn headroom(&self) -> Headroom {
        self.headroom
    }

    /// Replaces the estimates with the real usage: the window keeps `tokens` instead of the
    /// estimate (in the bucket it was reserved in), the budget is charged `cost_usd` in the period
    /// of admission, and the concurrency slot is given back. Call it also when the upstream
    /// failed or the client went away (with what was used, possibly 0).
    pub async fn settle(mut self, tokens: u64, cost_usd: f64) -> Result<(), Error> {
        let Some(ticket) = self.ticket.take() else {
            return Ok(());
        };
        let settlement = Settlement {
            tokens,
            cost: micros(cost_usd),
            now_ms: self.limiter.now_ms().max(ticket.now_ms),
        };
        match &self.limiter.inner.backend {
            Backend::Memory(memory) => {
                memory.settle(&ticket, &settlement);
                Ok(())
            }
            Backend::Redis(remote) => remote.settle(&ticket, &settlement).await,
        }
    }

    /// Like [`Reservation::settle`], but never waits: with Redis the settlement is queued for a
    /// background task (use it from `Drop` and other places that cannot await).
    pub fn settle_in_background(mut self, tokens: u64, cost_usd: f64) {
        if let Some(ticket) = self.ticket.take() {
            let settlement = Settlement {
                tokens,
                cost: micros(cost_usd),
                now_ms: self.limiter.now_ms().max(ticket.now_ms),
            };
            self.limiter.inner.finish(ticket, settlement);
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Some(ticket) = self.ticket.take() {
            // Unsettled: give back the slot and reserved cost; the estimated tokens stay counted.
            let settlement = Settlement {
                tokens: ticket.tokens,
                cost: 0,
                now_ms: self.limiter.now_ms().max(ticket.now_ms),
            };
            self.limiter.inner.finish(ticket, settlement);
        }
    }
}

impl fmt::Debug for Reservation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reservation")
            .field("tokens", &self.ticket.as_ref().map(|t| t.tokens))
            .field("headroom", &self.headroom)
            .finish()
    }
}

impl Scope {
    pub fn key(id: impl Into<Arc<str>>) -> Scope {
        Scope {
            kind: ScopeKind::Key,
            id: id.into(),
        }
    }

    pub fn team(id: impl Into<Arc<str>>) -> Scope {
        Scope {
            kind: ScopeKind::Team,
            id: id.into(),
        }
    }
}

impl Limits {
    /// Whether any limit is set (a scope without any costs nothing at admission).
    pub fn is_limited(&self) -> bool {
        self.rpm.is_some()
            || self.tpm.is_some()
            || self.max_concurrency.is_some()
            || self.budget.is_some()
    }

    fn holds_lease(&self) -> bool {
        self.max_concurrency.is_some() || self.budget.is_some()
    }
}

impl Denied {
    /// The OpenAI-style error `code` for the response body.
    pub fn code(&self) -> &'static str {
        match self.kind {
            Kind::Rpm | Kind::Tpm | Kind::Concurrency => "rate_limit_exceeded",
            Kind::Budget => "budget_exceeded",
            Kind::Unavailable => "limits_unavailable",
        }
    }

    fn unavailable() -> Denied {
        Denied {
            scope: None,
            kind: Kind::Unavailable,
            retry_after: Some(SOON),
            limit: 0,
            remaining: 0,
        }
    }
}

impl fmt::Display for Denied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scope = match self.scope {
            Some(ScopeKind::Key) => "key",
            Some(ScopeKind::Team) => "team",
            None => "gateway",
        };
        match self.kind {
            Kind::Rpm => write!(
                f,
                "{scope} request rate limit ({} per minute) reached",
                self.limit
            ),
            Kind::Tpm => write!(
                f,
                "{scope} token rate limit ({} per minute) reached",
                self.limit
            ),
            Kind::Concurrency => write!(
                f,
                "{scope} concurrency limit ({} requests in flight) reached",
                self.limit
            ),
            Kind::Budget => write!(
                f,
                "{scope} budget (${:.2}) exhausted",
                self.limit as f64 / MICROS_PER_USD
            ),
            Kind::Unavailable => f.write_str("rate limits are unavailable; try again shortly"),
        }
    }
}

impl std::error::Error for Denied {}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &"<redacted>")
            .field("prefix", &self.prefix)
            .field("failure", &self.failure)
            .field("timeout", &self.timeout)
            .field("lease", &self.lease)
            .finish()
    }
}

impl RedisConfig {
    /// Defaults: prefix `switchyard`, `closed`, 250 ms per call, 15 minute leases.
    pub fn new(url: impl Into<String>) -> RedisConfig {
        RedisConfig {
            url: url.into(),
            prefix: "switchyard".to_owned(),
            failure: FailureMode::Closed,
            timeout: Duration::from_millis(250),
            lease: Duration::from_secs(15 * 60),
        }
    }
}

const MICROS_PER_USD: f64 = 1_000_000.0;

/// The retry hint when only requests in flight stand in the way (they may finish any moment).
const SOON: Duration = Duration::from_secs(1);

/// The scopes with any limit: the only ones an admission checks and holds.
fn limited(scopes: &[(Scope, Limits)]) -> impl Iterator<Item = &(Scope, Limits)> + Clone {
    scopes.iter().filter(|(_, limits)| limits.is_limited())
}

/// USD → micro-USD, the unit every counter uses (exact integers in Redis and in Lua).
fn micros(usd: f64) -> u64 {
    if usd.is_finite() && usd > 0.0 {
        (usd * MICROS_PER_USD).round() as u64
    } else {
        0
    }
}

fn usd(micros: u64) -> f64 {
    micros as f64 / MICROS_PER_USD
}

struct Inner {
    backend: Backend,
    clock: Clock,
    counters: Arc<Counters>,
}

impl Inner {
    /// Settles without waiting (from `Drop` or `settle_in_background`).
    fn finish(&self, ticket: Ticket, settlement: Settlement) {
        match &self.backend {
            Backend::Memory(memory) => memory.settle(&ticket, &settlement),
            Backend::Redis(remote) => remote.queue(ticket, settlement),
        }
    }
}

enum Backend {
    Memory(memory::Memory),
    Redis(redis::Remote),
}

/// What one admission asks for.
struct Estimate {
    tokens: u64,
    cost: u64,
    now_ms: u64,
}

/// What a settled request really used.
struct Settlement {
    tokens: u64,
    cost: u64,
    now_ms: u64,
}

/// What one admission reserved, scope by scope, so settlement can undo exactly that.
struct Ticket {
    /// Unique id of the lease (`id|cost` in Redis); empty when nothing holds a lease.
    member: String,
    now_ms: u64,
    tokens: u64,
    cost: u64,
    /// Inline for a key and its team: no allocation per admission.
    held: SmallVec<[Held; 2]>,
}

struct Held {
    scope: Scope,
    /// Tokens were added to the scope's tokens window.
    tokens: bool,
    /// A concurrency slot / lease is held.
    lease: bool,
    /// The reserved cost counts against this budget period.
    budget: Option<(Period, Bounds)>,
}

impl Held {
    fn new(scope: &Scope, limits: &Limits, now_ms: u64) -> Held {
        Held {
            scope: scope.clone(),
            tokens: limits.tpm.is_some(),
            lease: limits.holds_lease(),
            budget: limits.budget.map(|b| (b.period, b.period.bounds(now_ms))),
        }
    }
}

impl Held {
    /// Whether settling changes anything (a request window alone needs no settling).
    fn needs_settling(&self) -> bool {
        self.tokens || self.lease || self.budget.is_some()
    }
}

impl Headroom {
    /// Keeps the tighter of two windows (the one with less remaining).
    fn tighten(slot: &mut Option<WindowUsage>, next: WindowUsage) {
        match slot {
            Some(cur) if cur.remaining <= next.remaining => {}
            _ => *slot = Some(next),
        }
    }
}

struct Clock {
    unix_ms: u64,
    start: tokio::time::Instant,
}

impl Clock {
    fn new() -> Clock {
        let unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        Clock {
            unix_ms,
            start: tokio::time::Instant::now(),
        }
    }

    fn now_ms(&self) -> u64 {
        self.unix_ms + self.start.elapsed().as_millis() as u64
    }
}

#[derive(Default)]
struct Counters {
    fail_open_admits: AtomicU64,
    unavailable_denials: AtomicU64,
    settle_failures: AtomicU64,
    releases_dropped: AtomicU64,
    /// When the last "Redis unavailable" warning was logged (limiter clock, ms).
    last_warning_ms: AtomicU64,
}

impl Counters {
    fn get(&self) -> Stats {
        Stats {
            fail_open_admits: self.fail_open_admits.load(Ordering::Relaxed),
            unavailable_denials: self.unavailable_denials.load(Ordering::Relaxed),
            settle_failures: self.settle_failures.load(Ordering::Relaxed),
            releases_dropped: self.releases_dropped.load(Ordering::Relaxed),
        }
    }

    /// Whether a warning may be logged now: at most one every 10 seconds.
    fn may_warn(&self, now_ms: u64) -> bool {
        let last = self.last_warning_ms.load(Ordering::Relaxed);
        (last == 0 || now_ms >= last + 10_000)
            && self
                .last_warning_ms
                .compare_exchange(last, now_ms.max(1), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}

#[cfg(test)]
mod tests;
