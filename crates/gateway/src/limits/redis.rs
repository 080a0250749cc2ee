//! The Redis backend: limits shared by every replica. One Lua script per admission (all scopes'
//! keys in one call, so the check and the reservation are atomic) and one per settlement. Each
//! call is bounded by `RedisConfig::timeout`; past it Redis counts as unavailable and
//! `redis_failure` decides. Must not retry a settlement on its own (a retry after a lost reply
//! would charge twice); leases give back what a lost settlement held.
//!
//! Key layout, for a scope `<s>` = `k:<key id>` or `t:<team id>` (every key has a TTL):
//! - `<prefix>:<s>:rpm` hash, one-second bucket → requests (TTL: 2 minutes, renewed with each
//!   new bucket); buckets out of the window are deleted by the next admission
//! - `<prefix>:<s>:tpm` hash, one-second bucket → tokens (same)
//! - `<prefix>:<s>:leases` zset, `<reservation id>|<reserved micro-USD>` → lease expiry (ms);
//!   its size is the concurrency in use; admission drops expired leases and gives back their cost
//!   (TTL: lease + 2 minutes, renewed by each admission)
//! - `<prefix>:<s>:reserved` string, micro-USD reserved by unsettled requests (same TTL)
//! - `<prefix>:<s>:spent:<period>:<period start ms>` string, micro-USD spent in that period
//!   (TTL: period end + 1 day; lifetime: 400 days after the last charge, reseeded by `load_spend`)

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{Client, Script, ScriptInvocation};
use tokio::sync::{mpsc, OnceCell};
use tokio::time::Instant;

use super::period::Bounds;
use super::window::{self, BUCKETS, BUCKET_MS};
use super::{
    usd, BudgetUsage, ConcurrencyUsage, Counters, Denied, Error, Estimate, FailureMode, Headroom,
    Held, Kind, Limits, Period, RedisConfig, Scope, ScopeKind, Settlement, Ticket, Usage,
    WindowUsage, SOON,
};

/// Window hashes live this long after their last write: the window plus a margin.
const WINDOW_TTL_MS: u64 = 2 * 60 * 1000;
/// Spent keys outlive their period by this much, for settlements that arrive late.
const PERIOD_GRACE_MS: u64 = 24 * 60 * 60 * 1000;
/// A lifetime spend stays this long after its last charge (the gateway reseeds it at start).
const LIFETIME_TTL_MS: u64 = 400 * 24 * 60 * 60 * 1000;
/// Releases of dropped reservations waiting for the background task.
const RELEASE_QUEUE: usize = 4096;
/// After a failed connection attempt, calls fail at once for this long.
const RECONNECT_PAUSE: Duration = Duration::from_secs(1);

pub(super) struct Remote {
    core: Arc<Core>,
    releases: mpsc::Sender<(Ticket, Settlement)>,
}

struct Core {
    client: Client,
    connection: OnceCell<ConnectionManager>,
    next_connect: Mutex<Option<Instant>>,
    prefix: String,
    failure: FailureMode,
    timeout: Duration,
    lease_ms: u64,
    instance: u64,
    sequence: AtomicU64,
    admit: Script,
    settle: Script,
    snapshot: Script,
    load_spend: Script,
    counters: Arc<Counters>,
}

impl Remote {
    pub(super) async fn start(
        config: RedisConfig,
        counters: Arc<Counters>,
    ) -> Result<Remote, Error> {
        let client = Client::open(config.url.as_str())
            .map_err(|e| Error::InvalidUrl(format!("{:?}", e.kind())))?;
        let core = Arc::new(Core {
            client,
            connection: OnceCell::new(),
            next_connect: Mutex::new(None),
            prefix: config.prefix,
            failure: config.failure,
            timeout: config.timeout,
            lease_ms: u64::try_from(config.lease.as_millis()).unwrap_or(u64::MAX / 4),
            instance: fastrand::u64(..),
            sequence: AtomicU64::new(0),
            admit: Script::new(include_str!("admit.lua")),
            settle: Script::new(include_str!("settle.lua")),
            snapshot: Script::new(include_str!("snapshot.lua")),
            load_spend: Script::new(include_str!("load_spend.lua")),
            counters,
        });
        let reason = match tokio::time::timeout(core.timeout, core.connection()).await {
            Ok(Ok(_)) => None,
            Ok(Err(reason)) => Some(reason),
            Err(_) => Some("no answer in time".to_owned()),
        };
        if let Some(reason) = reason {
            tracing::warn!(%reason, "limits: Redis not reachable at start; will keep trying");
        }
        // The release task ends when the last sender (this Remote and the reservations that
        // hold the limiter) is gone, after draining what was queued.
        let (releases, mut queue) = mpsc::channel::<(Ticket, Settlement)>(RELEASE_QUEUE);
        let worker = core.clone();
        tokio::spawn(async move {
            while let Some((ticket, settlement)) = queue.recv().await {
                // A failure is counted and logged inside; the lease covers what it held.
                let _ = worker.settle(&ticket, &settlement).await;
            }
        });
        Ok(Remote { core, releases })
    }

    pub(super) async fn admit(
        &self,
        scopes: &[&(Scope, Limits)],
        estimate: &Estimate,
    ) -> Result<(Ticket, Headroom), Denied> {
        let core = &self.core;
        let now = estimate.now_ms;
        let sequence = core.sequence.fetch_add(1, Ordering::Relaxed);
        let member = format!("{:016x}{sequence:x}|{}", core.instance, estimate.cost);
        let mut call = core.admit.prepare_invoke();
        for (scope, limits) in scopes {
            call.key(core.key(scope, "rpm"))
                .key(core.key(scope, "tpm"))
                .key(core.key(scope, "leases"))
                .key(core.key(scope, "reserved"))
                .key(core.spent_key(scope, limits.budget.map(|b| b.period), now));
        }
        call.arg(now)
            .arg(&member)
            .arg(core.lease_ms)
            .arg(estimate.tokens)
            .arg(estimate.cost)
            .arg(BUCKET_MS)
            .arg(BUCKETS)
            .arg(WINDOW_TTL_MS);
        for (_, limits) in scopes {
            let (budget, left) = match limits.budget {
                Some(b) => {
                    let end = b.period.bounds(now).end_ms;
                    (
                        signed(super::micros(b.usd)),
                        end.map_or(-1, |end| signed(end.saturating_sub(now))),
                    )
                }
                None => (-1, -1),
            };
            call.arg(limits.rpm.map_or(-1, signed))
                .arg(limits.tpm.map_or(-1, signed))
                .arg(limits.max_concurrency.map_or(-1, signed))
                .arg(budget)
                .arg(left)
                .arg(0);
        }
        let reply: Vec<i64> = match core.run(&call).await {
            Ok(reply) => reply,
            Err(reason) => return self.unavailable(scopes, estimate, &reason),
        };
        if reply.first() != Some(&1) {
            return Err(refusal(scopes, &reply));
        }
        let mut headroom = Headroom::default();
        for (i, (_, limits)) in scopes.iter().enumerate() {
            let at = |j: usize| reply.get(1 + 4 * i + j).copied().unwrap_or(0);
            if let Some(rpm) = limits.rpm {
                Headroom::tighten(&mut headroom.requests, window_usage(rpm, at(0), at(1)));
            }
            if let Some(tpm) = limits.tpm {
                Headroom::tighten(&mut headroom.tokens, window_usage(tpm, at(2), at(3)));
            }
        }
        let ticket = Ticket {
            member,
            now_ms: now,
            tokens: estimate.tokens,
            cost: estimate.cost,
            held: scopes
                .iter()
                .map(|(scope, limits)| Held::new(scope, limits, now))
                .collect(),
        };
        Ok((ticket, headroom))
    }

    pub(super) async fn settle(
        &self,
        ticket: &Ticket,
        settlement: &Settlement,
    ) -> Result<(), Error> {
        self.core.settle(ticket, settlement).await
    }

    /// Queues a settlement for the background task; never waits.
    pub(super) fn queue(&self, ticket: Ticket, settlement: Settlement) {
        if self.releases.try_send((ticket, settlement)).is_err() {
            self.core
                .counters
                .releases_dropped
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(super) async fn snapshot(
        &self,
        scope: &Scope,
        limits: &Limits,
        now: u64,
    ) -> Result<Usage, Error> {
        let core = &self.core;
        let period = limits.budget.map(|b| b.period);
        let mut call = core.snapshot.prepare_invoke();
        call.key(core.key(scope, "rpm"))
            .key(core.key(scope, "tpm"))
            .key(core.key(scope, "leases"))
            .key(core.key(scope, "reserved"))
            .key(core.spent_key(scope, period, now))
            .arg(now)
            .arg(BUCKET_MS)
            .arg(BUCKETS);
        let reply: Vec<i64> = core.run(&call).await.map_err(Error::Unavailable)?;
        let at = |j: usize| reply.get(j).copied().unwrap_or(0);
        let budget = limits.budget.map(|budget| {
            let spent = usd(unsigned(at(6)));
            let reserved = usd(unsigned(at(5)));
            BudgetUsage {
                limit_usd: budget.usd,
                spent_usd: spent,
                reserved_usd: reserved,
                remaining_usd: (budget.usd - spent - reserved).max(0.0),
                period: budget.period,
                bounds: budget.period.bounds(now),
            }
        });
        Ok(Usage {
            requests: limits.rpm.map(|rpm| window_usage(rpm, at(0), at(1))),
            tokens: limits.tpm.map(|tpm| window_usage(tpm, at(2), at(3))),
            concurrency: limits.max_concurrency.map(|limit| ConcurrencyUsage {
                limit,
                in_flight: unsigned(at(4)),
            }),
            budget,
        })
    }

    pub(super) async fn load_spend(
        &self,
        scope: &Scope,
        period: Period,
        bounds: Bounds,
        micros: u64,
        now: u64,
    ) -> Result<(), Error> {
        let core = &self.core;
        let mut call = core.load_spend.prepare_invoke();
        call.key(core.spent_key_at(scope, period, bounds))
            .arg(micros)
            .arg(spent_ttl(bounds, now));
        core.run::<i64>(&call)
            .await
            .map(|_| ())
            .map_err(Error::Unavailable)
    }

    /// Redis is away: refuse (`closed`) or admit without limits (`open`).
    fn unavailable(
        &self,
        scopes: &[&(Scope, Limits)],
        estimate: &Estimate,
        reason: &str,
    ) -> Result<(Ticket, Headroom), Denied> {
        let counters = &self.core.counters;
        match self.core.failure {
            FailureMode::Closed => {
                counters.unavailable_denials.fetch_add(1, Ordering::Relaxed);
                if counters.may_warn(estimate.now_ms) {
                    tracing::warn!(%reason, "limits: Redis unavailable; refusing requests (redis_failure: closed)");
                }
                Err(Denied::unavailable())
            }
            FailureMode::Open => {
                let admitted = counters.fail_open_admits.fetch_add(1, Ordering::Relaxed) + 1;
                if counters.may_warn(estimate.now_ms) {
                    tracing::warn!(%reason, admitted, "limits: Redis unavailable; admitting without limits (redis_failure: open)");
                }
                // Nothing was reserved; settling still records the real tokens and cost if Redis
                // is back by then.
                let held = scopes
                    .iter()
                    .map(|(scope, limits)| Held {
                        lease: false,
                        ..Held::new(scope, limits, estimate.now_ms)
                    })
                    .collect();
                let ticket = Ticket {
                    member: String::new(),
                    now_ms: estimate.now_ms,
                    tokens: 0,
                    cost: 0,
                    held,
                };
                Ok((ticket, Headroom::default()))
            }
        }
    }
}

impl Core {
    /// The connection, made on first use; while Redis is away, tried at most once a second.
    async fn connection(&self) -> Result<ConnectionManager, String> {
        if let Some(connection) = self.connection.get() {
            return Ok(connection.clone());
        }
        let wait = *self
            .next_connect
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if wait.is_some_and(|at| Instant::now() < at) {
            return Err("not connected (retrying shortly)".to_owned());
        }
        let made = self
            .connection
            .get_or_try_init(|| async {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(self.timeout)
                    .set_response_timeout(self.timeout)
                    .set_number_of_retries(1)
                    .set_max_delay(100);
                ConnectionManager::new_with_config(self.client.clone(), config)
                    .await
                    .map_err(|e| describe(&e))
            })
            .await;
        if made.is_err() {
            *self
                .next_connect
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(Instant::now() + RECONNECT_PAUSE);
        }
        made.cloned()
    }

    /// Runs one script, connection included, within the timeout.
    async fn run<T: ::redis::FromRedisValue>(
        &self,
        call: &ScriptInvocation<'_>,
    ) -> Result<T, String> {
        let attempt = async {
            let mut connection = self.connection().await?;
            call.invoke_async(&mut connection)
                .await
                .map_err(|e| describe(&e))
        };
        match tokio::time::timeout(self.timeout, attempt).await {
            Ok(result) => result,
            Err(_) => Err(format!("no answer within {:?}", self.timeout)),
        }
    }

    async fn settle(&self, ticket: &Ticket, settlement: &Settlement) -> Result<(), Error> {
        if !ticket.held.iter().any(Held::needs_settling) {
            return Ok(());
        }
        let now = settlement.now_ms;
        let mut call = self.settle.prepare_invoke();
        for held in &ticket.held {
            let spent = match held.budget {
                Some((period, bounds)) => self.spent_key_at(&held.scope, period, bounds),
                None => self.spent_key(&held.scope, None, now),
            };
            call.key(self.key(&held.scope, "tpm"))
                .key(self.key(&held.scope, "leases"))
                .key(self.key(&held.scope, "reserved"))
                .key(spent);
        }
        call.arg(now)
            .arg(&ticket.member)
            .arg(window::bucket(ticket.now_ms))
            .arg(ticket.tokens)
            .arg(settlement.tokens)
            .arg(ticket.cost)
            .arg(settlement.cost)
            .arg(BUCKET_MS)
            .arg(BUCKETS)
            .arg(WINDOW_TTL_MS);
        for held in &ticket.held {
            call.arg(u8::from(held.tokens))
                .arg(u8::from(held.lease))
                .arg(
                    held.budget
                        .map_or(-1, |(_, bounds)| signed(spent_ttl(bounds, now))),
                );
        }
        match self.run::<i64>(&call).await {
            Ok(_) => Ok(()),
            Err(reason) => {
                self.counters
                    .settle_failures
                    .fetch_add(1, Ordering::Relaxed);
                if self.counters.may_warn(now) {
                    tracing::warn!(%reason, "limits: could not settle a reservation in Redis; its lease will release it");
                }
                Err(Error::Unavailable(reason))
            }
        }
    }

    fn key(&self, scope: &Scope, what: &str) -> String {
        format!("{}:{}:{}:{what}", self.prefix, kind(scope.kind), scope.id)
    }

    /// The spent key of the period containing `now` (a placeholder when there is no budget).
    fn spent_key(&self, scope: &Scope, period: Option<Period>, now: u64) -> String {
        match period {
            Some(period) => self.spent_key_at(scope, period, period.bounds(now)),
            None => self.key(scope, "spent:none"),
        }
    }

    fn spent_key_at(&self, scope: &Scope, period: Period, bounds: Bounds) -> String {
        self.key(scope, &format!("spent:{period}:{}", bounds.start_ms))
    }
}

fn refusal(scopes: &[&(Scope, Limits)], reply: &[i64]) -> Denied {
    let at = |j: usize| reply.get(j).copied().unwrap_or(0);
    let scope = usize::try_from(at(1))
        .ok()
        .and_then(|i| scopes.get(i))
        .map(|(scope, _)| scope.kind);
    let kind = match at(2) {
        1 => Kind::Rpm,
        2 => Kind::Tpm,
        3 => Kind::Concurrency,
        4 => Kind::Budget,
        _ => Kind::Unavailable,
    };
    let retry_after = match at(3) {
        -1 => None,
        ms if ms < 0 => Some(SOON),
        ms => Some(Duration::from_millis(unsigned(ms))),
    };
    Denied {
        scope,
        kind,
        retry_after,
        limit: unsigned(at(4)),
        remaining: unsigned(at(5)),
    }
}

fn window_usage(limit: u64, used: i64, reset_ms: i64) -> WindowUsage {
    let used = unsigned(used);
    WindowUsage {
        limit,
        used,
        remaining: limit.saturating_sub(used),
        reset: Duration::from_millis(unsigned(reset_ms)),
    }
}

fn spent_ttl(bounds: Bounds, now: u64) -> u64 {
    match bounds.end_ms {
        Some(end) => end.saturating_sub(now) + PERIOD_GRACE_MS,
        None => LIFETIME_TTL_MS,
    }
}

fn kind(kind: ScopeKind) -> &'static str {
    match kind {
        ScopeKind::Key => "k",
        ScopeKind::Team => "t",
    }
}

fn signed(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn unsigned(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// A Redis error as text without anything from the URL (no password can appear).
fn describe(e: &::redis::RedisError) -> String {
    if e.is_timeout() {
        "timed out".to_owned()
    } else if e.is_connection_refusal() {
        "connection refused".to_owned()
    } else if e.is_io_error() || e.is_connection_dropped() {
        "connection lost".to_owned()
    } else {
        format!("{:?}: {}", e.kind(), e.detail().unwrap_or(""))
    }
}
