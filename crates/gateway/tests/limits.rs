//! The limits engine (`switchyard::limits`) on both backends: in process, and Redis at
//! `SWITCHYARD_TEST_REDIS_URL` (default 127.0.0.1:6379) under a fresh key prefix per test
//! (`SWITCHYARD_TEST_REDIS_PREFIX` + a random suffix), deleted at the end. Failure tests start
//! their own `redis-server` on a free port and stop only that one.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use switchyard::limits::{
    Budget, Denied, FailureMode, Kind, Limiter, Limits, Period, RedisConfig, Request, Reservation,
    Scope, ScopeKind,
};

#[derive(Clone, Copy, Debug)]
enum Backend {
    Memory,
    Redis,
}

/// A limiter under test, and the Redis prefix to clean up after it.
struct Under {
    limiter: Limiter,
    prefix: Option<String>,
}

fn redis_url() -> String {
    std::env::var("SWITCHYARD_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn fresh_prefix() -> String {
    let base = std::env::var("SWITCHYARD_TEST_REDIS_PREFIX").unwrap_or_else(|_| "sy-test".into());
    format!("{base}:limits:{:016x}", fastrand::u64(..))
}

fn redis_config(url: String, prefix: &str) -> RedisConfig {
    RedisConfig {
        prefix: prefix.to_owned(),
        timeout: Duration::from_millis(500),
        ..RedisConfig::new(url)
    }
}

async fn under(backend: Backend) -> Under {
    match backend {
        Backend::Memory => Under {
            limiter: Limiter::in_process(),
            prefix: None,
        },
        Backend::Redis => {
            let prefix = fresh_prefix();
            let limiter = Limiter::redis(redis_config(redis_url(), &prefix))
                .await
                .unwrap();
            Under {
                limiter,
                prefix: Some(prefix),
            }
        }
    }
}

impl Under {
    async fn cleanup(self) {
        if let Some(prefix) = self.prefix {
            delete_prefix(&prefix).await;
        }
    }
}

/// Deletes every key under `prefix` from the shared Redis.
async fn delete_prefix(prefix: &str) {
    let client = redis::Client::open(redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}:*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await
            .unwrap();
        if !keys.is_empty() {
            let _: () = redis::cmd("DEL")
                .arg(&keys)
                .query_async(&mut conn)
                .await
                .unwrap();
        }
        if next == 0 {
            break;
        }
        cursor = next;
    }
}

/// How many keys exist under `prefix`, and whether each has a TTL.
async fn keys_without_ttl(prefix: &str) -> (usize, Vec<String>) {
    let client = redis::Client::open(redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    let mut without = Vec::new();
    for key in &keys {
        let ttl: i64 = redis::cmd("PTTL")
            .arg(key)
            .query_async(&mut conn)
            .await
            .unwrap();
        if ttl < 0 {
            without.push(key.clone());
        }
    }
    (keys.len(), without)
}

fn key(id: &str) -> Scope {
    Scope::key(id)
}

fn limits() -> Limits {
    Limits::default()
}

fn request<'a>(
    scopes: &'a [(Scope, Limits)],
    tokens: u64,
    cost_usd: f64,
    now_ms: u64,
) -> Request<'a> {
    Request {
        scopes,
        tokens,
        cost_usd,
        now_ms,
    }
}

/// Admits `n` requests at once, on as many tasks, against the given limiters in turn.
async fn admit_concurrently(
    limiters: &[Limiter],
    scopes: &[(Scope, Limits)],
    n: usize,
    tokens: u64,
    cost_usd: f64,
) -> (Vec<Reservation>, Vec<Denied>) {
    let scopes: Arc<[(Scope, Limits)]> = scopes.to_vec().into();
    let barrier = Arc::new(tokio::sync::Barrier::new(n));
    let mut tasks = Vec::new();
    for i in 0..n {
        let limiter = limiters[i % limiters.len()].clone();
        let scopes = scopes.clone();
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let now = limiter.now_ms();
            limiter
                .admit(&request(&scopes, tokens, cost_usd, now))
                .await
        }));
    }
    let (mut ok, mut denied) = (Vec::new(), Vec::new());
    for task in tasks {
        match task.await.unwrap() {
            Ok(r) => ok.push(r),
            Err(d) => denied.push(d),
        }
    }
    (ok, denied)
}

async fn settle_all(reservations: Vec<Reservation>, tokens: u64, cost_usd: f64) {
    for r in reservations {
        r.settle(tokens, cost_usd).await.unwrap();
    }
}

/// One test, on both backends, on a multi-threaded runtime (real concurrency).
macro_rules! both {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn in_process() {
                super::$name(super::Backend::Memory).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn redis() {
                super::$name(super::Backend::Redis).await
            }
        }
    };
}

both!(rpm_12_admits_exactly_12_of_50_concurrent);
async fn rpm_12_admits_exactly_12_of_50_concurrent(backend: Backend) {
    let t = under(backend).await;
    let scopes = [(
        key("k1"),
        Limits {
            rpm: Some(12),
            ..limits()
        },
    )];
    let (ok, denied) =
        admit_concurrently(std::slice::from_ref(&t.limiter), &scopes, 50, 10, 0.0).await;
    assert_eq!(ok.len(), 12);
    assert_eq!(denied.len(), 38);
    for d in &denied {
        assert_eq!(
            (d.kind, d.scope, d.limit, d.remaining),
            (Kind::Rpm, Some(ScopeKind::Key), 12, 0)
        );
        let retry = d.retry_after.unwrap();
        assert!(
            retry > Duration::from_secs(59) && retry <= Duration::from_secs(61),
            "{retry:?}"
        );
        assert_eq!(d.code(), "rate_limit_exceeded");
    }
    // Settling frees nothing in a request window.
    settle_all(ok, 10, 0.0).await;
    let now = t.limiter.now_ms();
    assert!(t
        .limiter
        .admit(&request(&scopes, 10, 0.0, now))
        .await
        .is_err());
    let usage = t
        .limiter
        .snapshot(&scopes[0].0, &scopes[0].1, now)
        .await
        .unwrap();
    let requests = usage.requests.unwrap();
    assert_eq!(
        (requests.limit, requests.used, requests.remaining),
        (12, 12, 0)
    );
    t.cleanup().await;
}

both!(tpm_counts_estimated_tokens);
async fn tpm_counts_estimated_tokens(backend: Backend) {
    let t = under(backend).await;
    let scopes = [(
        key("k1"),
        Limits {
            tpm: Some(1000),
            ..limits()
        },
    )];
    let (ok, denied) =
        admit_concurrently(std::slice::from_ref(&t.limiter), &scopes, 50, 300, 0.0).await;
    assert_eq!(ok.len(), 3);
    assert!(denied
        .iter()
        .all(|d| d.kind == Kind::Tpm && d.remaining == 100));
    let headroom = ok
        .iter()
        .map(|r| r.headroom().tokens.unwrap().remaining)
        .min()
        .unwrap();
    assert_eq!(headroom, 100);
    // A request larger than the whole limit can never pass: no retry hint.
    let now = t.limiter.now_ms();
    let d = t
        .limiter
        .admit(&request(&scopes, 1001, 0.0, now))
        .await
        .unwrap_err();
    assert_eq!((d.kind, d.retry_after), (Kind::Tpm, None));
    // 100 tokens still fit.
    let r = t
        .limiter
        .admit(&request(&scopes, 100, 0.0, now))
        .await
        .unwrap();
    settle_all(ok, 300, 0.0).await;
    r.settle(100, 0.0).await.unwrap();
    t.cleanup().await;
}

both!(max_concurrency_3_holds_for_10_holders);
async fn max_concurrency_3_holds_for_10_holders(backend: Backend) {
    let t = under(backend).await;
    let scopes = [(
        key("k1"),
        Limits {
            max_concurrency: Some(3),
            ..limits()
        },
    )];
    let (mut ok, denied) =
        admit_concurrently(std::slice::from_ref(&t.limiter), &scopes, 10, 5, 0.0).await;
    assert_eq!(ok.len(), 3);
    assert_eq!(denied.len(), 7);
    assert!(denied
        .iter()
        .all(|d| d.kind == Kind::Concurrency && d.retry_after.is_some()));
    let now = t.limiter.now_ms();
    let usage = t
        .limiter
        .snapshot(&scopes[0].0, &scopes[0].1, now)
        .await
        .unwrap();
    assert_eq!(usage.concurrency.unwrap().in_flight, 3);
    // One settles, one more gets in; then it is full again.
    ok.pop().unwrap().settle(5, 0.0).await.unwrap();
    let again = t
        .limiter
        .admit(&request(&scopes, 5, 0.0, now))
        .await
        .unwrap();
    assert_eq!(
        t.limiter
            .admit(&request(&scopes, 5, 0.0, now))
            .await
            .unwrap_err()
            .kind,
        Kind::Concurrency
    );
    ok.push(again);
    settle_all(ok, 5, 0.0).await;
    let (ok, _) = admit_concurrently(std::slice::from_ref(&t.limiter), &scopes, 10, 5, 0.0).await;
    assert_eq!(ok.len(), 3);
    settle_all(ok, 5, 0.0).await;
    t.cleanup().await;
}

both!(budget_is_never_exceeded_by_32_concurrent_clients);
async fn budget_is_never_exceeded_by_32_concurrent_clients(backend: Backend) {
    let t = under(backend).await;
    let budget = Budget {
        usd: 1.0,
        period: Period::Month,
    };
    let scopes: Arc<[(Scope, Limits)]> = vec![(
        key("k1"),
        Limits {
            budget: Some(budget),
            ..limits()
        },
    )]
    .into();
    let admitted = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut clients = Vec::new();
    for _ in 0..32 {
        let (limiter, scopes, admitted) = (t.limiter.clone(), scopes.clone(), admitted.clone());
        clients.push(tokio::spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                assert!(Instant::now() < deadline, "the budget never ran out");
                let now = limiter.now_ms();
                match limiter.admit(&request(&scopes, 100, 0.10, now)).await {
                    Ok(r) => {
                        admitted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(2)).await;
                        r.settle(100, 0.10).await.unwrap();
                    }
                    Err(d)
                        if d.kind == Kind::Budget
                            && d.retry_after.is_some_and(|r| r > Duration::from_secs(1)) =>
                    {
                        // Spent, not merely reserved: the period must end first.
                        return;
                    }
                    Err(d) => {
                        assert_eq!(d.kind, Kind::Budget);
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                }
            }
        }));
    }
    for c in clients {
        c.await.unwrap();
    }
    assert_eq!(admitted.load(std::sync::atomic::Ordering::SeqCst), 10);
    let now = t.limiter.now_ms();
    let usage = t
        .limiter
        .snapshot(&scopes[0].0, &scopes[0].1, now)
        .await
        .unwrap();
    let b = usage.budget.unwrap();
    assert!((b.spent_usd - 1.0).abs() < 1e-9, "{b:?}");
    assert_eq!((b.reserved_usd, b.remaining_usd), (0.0, 0.0));
    let d = t
        .limiter
        .admit(&request(&scopes, 1, 0.0001, now))
        .await
        .unwrap_err();
    assert_eq!(
        (d.kind, d.code(), d.remaining),
        (Kind::Budget, "budget_exceeded", 0)
    );
    let until_month_end = b.bounds.end_ms.unwrap() - now;
    assert_eq!(d.retry_after, Some(Duration::from_millis(until_month_end)));
    t.cleanup().await;
}

both!(budget_in_flight_bound_with_one_burst);
async fn budget_in_flight_bound_with_one_burst(backend: Backend) {
    let t = under(backend).await;
    let budget = Budget {
        usd: 1.0,
        period: Period::Lifetime,
    };
    let scopes = [(
        key("k1"),
        Limits {
            budget: Some(budget),
            ..limits()
        },
    )];
    let (ok, denied) =
        admit_concurrently(std::slice::from_ref(&t.limiter), &scopes, 32, 100, 0.10).await;
    assert_eq!(ok.len(), 10, "reserved cost never exceeds the budget");
    // Refused only by what is in flight: trying again soon may succeed.
    assert!(denied
        .iter()
        .all(|d| d.kind == Kind::Budget && d.retry_after == Some(Duration::from_secs(1))));
    settle_all(ok, 100, 0.10).await;
    let now = t.limiter.now_ms();
    let d = t
        .limiter
        .admit(&request(&scopes, 100, 0.10, now))
        .await
        .unwrap_err();
    // A spent lifetime budget never comes back.
    assert_eq!((d.kind, d.retry_after), (Kind::Budget, None));
    t.cleanup().await;
}

both!(settle_replaces_estimates_with_actuals);
async fn settle_replaces_estimates_with_actuals(backend: Backend) {
    let t = under(backend).await;
    let budget = Budget {
        usd: 1.0,
        period: Period::Day,
    };
    let scope = key("k1");
    let lim = Limits {
        tpm: Some(1000),
        budget: Some(budget),
        ..limits()
    };
    let scopes = [(scope.clone(), lim)];
    let now = t.limiter.now_ms();
    // Overestimate: 600 tokens / $0.50 reserved, 100 / $0.05 used.
    let r = t
        .limiter
        .admit(&request(&scopes, 600, 0.50, now))
        .await
        .unwrap();
    let u = t.limiter.snapshot(&scope, &lim, now).await.unwrap();
    assert_eq!(u.tokens.unwrap().used, 600);
    assert!((u.budget.unwrap().reserved_usd - 0.50).abs() < 1e-9);
    r.settle(100, 0.05).await.unwrap();
    let u = t.limiter.snapshot(&scope, &lim, now).await.unwrap();
    assert_eq!(u.tokens.unwrap().used, 100);
    let b = u.budget.unwrap();
    assert!(
        (b.spent_usd - 0.05).abs() < 1e-9 && b.reserved_usd == 0.0,
        "{b:?}"
    );
    // 800 more tokens and $0.90 more fit now; underestimate both.
    let r = t
        .limiter
        .admit(&request(&scopes, 800, 0.90, now))
        .await
        .unwrap();
    assert_eq!(r.headroom().tokens.unwrap().remaining, 100);
    r.settle(950, 0.99).await.unwrap();
    let u = t.limiter.snapshot(&scope, &lim, now).await.unwrap();
    assert_eq!(u.tokens.unwrap().used, 1050);
    let b = u.budget.unwrap();
    assert!(
        (b.spent_usd - 1.04).abs() < 1e-9 && b.remaining_usd == 0.0,
        "{b:?}"
    );
    // Both are now over: the next request is refused, by tokens first.
    let d = t
        .limiter
        .admit(&request(&scopes, 1, 0.000001, now))
        .await
        .unwrap_err();
    assert_eq!(d.kind, Kind::Tpm);
    let only_budget = [(
        scope.clone(),
        Limits {
            budget: Some(budget),
            ..limits()
        },
    )];
    let d = t
        .limiter
        .admit(&request(&only_budget, 1, 0.000001, now))
        .await
        .unwrap_err();
    assert_eq!(d.kind, Kind::Budget);
    // A failed request that used nothing costs nothing.
    let free = [(key("k2"), lim)];
    let r = t
        .limiter
        .admit(&request(&free, 500, 0.5, now))
        .await
        .unwrap();
    r.settle(0, 0.0).await.unwrap();
    let u = t.limiter.snapshot(&free[0].0, &lim, now).await.unwrap();
    assert_eq!(u.tokens.unwrap().used, 0);
    assert_eq!(u.budget.unwrap().spent_usd, 0.0);
    t.cleanup().await;
}

both!(team_limits_bind_its_keys_together);
async fn team_limits_bind_its_keys_together(backend: Backend) {
    let t = under(backend).await;
    let team = (
        Scope::team("t1"),
        Limits {
            rpm: Some(5),
            max_concurrency: Some(4),
            ..limits()
        },
    );
    let a = [
        (
            key("a"),
            Limits {
                rpm: Some(4),
                ..limits()
            },
        ),
        team.clone(),
    ];
    let b = [
        (
            key("b"),
            Limits {
                rpm: Some(4),
                ..limits()
            },
        ),
        team.clone(),
    ];
    let now = t.limiter.now_ms();
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(t.limiter.admit(&request(&a, 1, 0.0, now)).await.unwrap());
    }
    held.push(t.limiter.admit(&request(&b, 1, 0.0, now)).await.unwrap());
    // The team allows 4 in flight: the fifth is refused by the team, and reserves nothing.
    let d = t
        .limiter
        .admit(&request(&a, 1, 0.0, now))
        .await
        .unwrap_err();
    assert_eq!(
        (d.scope, d.kind),
        (Some(ScopeKind::Team), Kind::Concurrency)
    );
    let key_a = t.limiter.snapshot(&a[0].0, &a[0].1, now).await.unwrap();
    assert_eq!(key_a.requests.unwrap().used, 3);
    held.pop().unwrap().settle(1, 0.0).await.unwrap();
    // Key a has room for its fourth; the team has room for its fifth request.
    held.push(t.limiter.admit(&request(&a, 1, 0.0, now)).await.unwrap());
    let d = t
        .limiter
        .admit(&request(&a, 1, 0.0, now))
        .await
        .unwrap_err();
    assert_eq!((d.scope, d.kind), (Some(ScopeKind::Key), Kind::Rpm));
    held.pop().unwrap().settle(1, 0.0).await.unwrap();
    let d = t
        .limiter
        .admit(&request(&b, 1, 0.0, now))
        .await
        .unwrap_err();
    assert_eq!((d.scope, d.kind), (Some(ScopeKind::Team), Kind::Rpm));
    // The refused admissions took nothing from key b either.
    let key_b = t.limiter.snapshot(&b[0].0, &b[0].1, now).await.unwrap();
    assert_eq!(key_b.requests.unwrap().used, 1);
    let team_usage = t.limiter.snapshot(&team.0, &team.1, now).await.unwrap();
    assert_eq!(team_usage.requests.unwrap().used, 5);
    settle_all(held, 1, 0.0).await;
    t.cleanup().await;
}

both!(dropping_a_reservation_releases_it);
async fn dropping_a_reservation_releases_it(backend: Backend) {
    let t = under(backend).await;
    let lim = Limits {
        max_concurrency: Some(1),
        budget: Some(Budget {
            usd: 1.0,
            period: Period::Week,
        }),
        ..limits()
    };
    let scopes = [(key("k1"), lim)];
    let now = t.limiter.now_ms();
    let r = t
        .limiter
        .admit(&request(&scopes, 10, 0.60, now))
        .await
        .unwrap();
    assert!(t
        .limiter
        .admit(&request(&scopes, 10, 0.10, now))
        .await
        .is_err());
    drop(r);
    // With Redis the release runs on a background task: wait for it, bounded.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let u = t.limiter.snapshot(&scopes[0].0, &lim, now).await.unwrap();
        if u.concurrency.unwrap().in_flight == 0 {
            let b = u.budget.unwrap();
            assert_eq!((b.reserved_usd, b.spent_usd), (0.0, 0.0));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the dropped reservation was never released"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let r = t
        .limiter
        .admit(&request(&scopes, 10, 0.60, now))
        .await
        .unwrap();
    r.settle_in_background(10, 0.60);
    let deadline = Instant::now() + Duration::from_secs(5);
    while t
        .limiter
        .admit(&request(&scopes, 1, 0.30, now))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "settle_in_background never ran");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(t.limiter.stats().releases_dropped, 0);
    t.cleanup().await;
}

both!(windows_slide_with_explicit_time);
async fn windows_slide_with_explicit_time(backend: Backend) {
    let t = under(backend).await;
    let scopes = [(
        key("k1"),
        Limits {
            rpm: Some(2),
            tpm: Some(100),
            ..limits()
        },
    )];
    let t0 = t.limiter.now_ms() / 1000 * 1000 + 200;
    let a = t
        .limiter
        .admit(&request(&scopes, 10, 0.0, t0))
        .await
        .unwrap();
    let b = t
        .limiter
        .admit(&request(&scopes, 10, 0.0, t0 + 30_000))
        .await
        .unwrap();
    let d = t
        .limiter
        .admit(&request(&scopes, 10, 0.0, t0 + 59_000))
        .await
        .unwrap_err();
    assert_eq!(d.kind, Kind::Rpm);
    assert_eq!(
        d.retry_after,
        Some(Duration::from_millis(61_000 - 200 - 59_000))
    );
    // 61 s after the first one's bucket began, it no longer counts.
    let c = t
        .limiter
        .admit(&request(&scopes, 10, 0.0, t0 + 60_800))
        .await
        .unwrap();
    assert_eq!(c.headroom().requests.unwrap().remaining, 0);
    let d = t
        .limiter
        .admit(&request(&scopes, 10, 0.0, t0 + 61_000))
        .await
        .unwrap_err();
    assert_eq!(d.kind, Kind::Rpm);
    settle_all(vec![a, b, c], 10, 0.0).await;
    t.cleanup().await;
}

/// The in-process backend on tokio's paused clock: windows expire as time is advanced.
#[tokio::test(start_paused = true)]
async fn in_process_windows_expire_on_paused_time() {
    let limiter = Limiter::in_process();
    let scopes = [(
        key("k1"),
        Limits {
            rpm: Some(12),
            tpm: Some(1200),
            ..limits()
        },
    )];
    for _ in 0..12 {
        let now = limiter.now_ms();
        limiter
            .admit(&request(&scopes, 100, 0.0, now))
            .await
            .unwrap()
            .settle(100, 0.0)
            .await
            .unwrap();
    }
    let d = limiter
        .admit(&request(&scopes, 100, 0.0, limiter.now_ms()))
        .await
        .unwrap_err();
    assert_eq!(d.kind, Kind::Rpm);
    let retry = d.retry_after.unwrap();
    tokio::time::advance(retry - Duration::from_millis(1)).await;
    assert!(limiter
        .admit(&request(&scopes, 100, 0.0, limiter.now_ms()))
        .await
        .is_err());
    tokio::time::advance(Duration::from_millis(1)).await;
    let r = limiter
        .admit(&request(&scopes, 100, 0.0, limiter.now_ms()))
        .await
        .unwrap();
    let headroom = r.headroom();
    assert_eq!(headroom.requests.unwrap().remaining, 11);
    assert_eq!(headroom.tokens.unwrap().remaining, 1100);
    r.settle(100, 0.0).await.unwrap();
}

/// Idle scopes are forgotten: thousands of one-off keys leave nothing behind once their window
/// has passed, while a scope with spend in a running period is kept.
#[tokio::test(start_paused = true)]
async fn in_process_forgets_idle_scopes() {
    let limiter = Limiter::in_process();
    let lim = Limits {
        rpm: Some(1),
        ..limits()
    };
    for i in 0..5000 {
        let scopes = [(key(&format!("k{i}")), lim)];
        let now = limiter.now_ms();
        limiter
            .admit(&request(&scopes, 1, 0.0, now))
            .await
            .unwrap()
            .settle(1, 0.0)
            .await
            .unwrap();
    }
    let spender = [(
        key("spender"),
        Limits {
            budget: Some(Budget {
                usd: 5.0,
                period: Period::Day,
            }),
            ..limits()
        },
    )];
    let now = limiter.now_ms();
    limiter
        .admit(&request(&spender, 1, 1.0, now))
        .await
        .unwrap()
        .settle(1, 1.0)
        .await
        .unwrap();
    assert!(limiter.scopes_in_memory() > 3000);
    tokio::time::advance(Duration::from_secs(62)).await;
    let hot = [(
        key("hot"),
        Limits {
            rpm: Some(100_000),
            ..limits()
        },
    )];
    for _ in 0..1100 {
        let now = limiter.now_ms();
        limiter
            .admit(&request(&hot, 1, 0.0, now))
            .await
            .unwrap()
            .settle(1, 0.0)
            .await
            .unwrap();
    }
    assert_eq!(
        limiter.scopes_in_memory(),
        2,
        "only `hot` and `spender` remain"
    );
    let now = limiter.now_ms();
    let b = limiter
        .snapshot(&spender[0].0, &spender[0].1, now)
        .await
        .unwrap()
        .budget
        .unwrap();
    assert!((b.spent_usd - 1.0).abs() < 1e-9);
}

both!(load_spend_seeds_and_never_lowers);
async fn load_spend_seeds_and_never_lowers(backend: Backend) {
    let t = under(backend).await;
    let budget = Budget {
        usd: 1.0,
        period: Period::Month,
    };
    let scope = key("k1");
    let lim = Limits {
        budget: Some(budget),
        ..limits()
    };
    let scopes = [(scope.clone(), lim)];
    let now = t.limiter.now_ms();
    let start = Period::Month.bounds(now).start_ms;
    t.limiter
        .load_spend(&scope, Period::Month, start, 0.95)
        .await
        .unwrap();
    t.limiter
        .load_spend(&scope, Period::Month, start, 0.10)
        .await
        .unwrap();
    let d = t
        .limiter
        .admit(&request(&scopes, 1, 0.10, now))
        .await
        .unwrap_err();
    assert_eq!((d.kind, d.remaining), (Kind::Budget, 50_000));
    let r = t
        .limiter
        .admit(&request(&scopes, 1, 0.05, now))
        .await
        .unwrap();
    r.settle(1, 0.05).await.unwrap();
    let b = t
        .limiter
        .snapshot(&scope, &lim, now)
        .await
        .unwrap()
        .budget
        .unwrap();
    assert!((b.spent_usd - 1.0).abs() < 1e-9);
    assert_eq!(b.bounds.start_ms, start);
    // Last month's spend does not count this month.
    let last_month = Period::Month.bounds(start - 1).start_ms;
    t.limiter
        .load_spend(&key("k2"), Period::Month, last_month, 5.0)
        .await
        .unwrap();
    let other = [(key("k2"), lim)];
    t.limiter
        .admit(&request(&other, 1, 0.5, now))
        .await
        .unwrap()
        .settle(1, 0.5)
        .await
        .unwrap();
    t.cleanup().await;
}

both!(unlimited_scopes_cost_nothing);
async fn unlimited_scopes_cost_nothing(backend: Backend) {
    let t = under(backend).await;
    let scopes = [(key("k1"), limits()), (Scope::team("t1"), limits())];
    let now = t.limiter.now_ms();
    let r = t
        .limiter
        .admit(&request(&scopes, 10, 1.0, now))
        .await
        .unwrap();
    assert_eq!(r.headroom(), Default::default());
    r.settle(10, 1.0).await.unwrap();
    let r = t.limiter.admit(&request(&[], 10, 1.0, now)).await.unwrap();
    drop(r);
    t.cleanup().await;
}

// ---- Redis only ----

/// Three limiters sharing one Redis and prefix behave like one: rpm 12 admits exactly 12.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_share_every_limit() {
    let prefix = fresh_prefix();
    let mut replicas = Vec::new();
    for _ in 0..3 {
        replicas.push(
            Limiter::redis(redis_config(redis_url(), &prefix))
                .await
                .unwrap(),
        );
    }
    let rpm = [(
        key("k1"),
        Limits {
            rpm: Some(12),
            ..limits()
        },
    )];
    let (ok, denied) = admit_concurrently(&replicas, &rpm, 60, 1, 0.0).await;
    assert_eq!((ok.len(), denied.len()), (12, 48));
    settle_all(ok, 1, 0.0).await;

    let conc = [(
        key("k2"),
        Limits {
            max_concurrency: Some(5),
            ..limits()
        },
    )];
    let (ok, _) = admit_concurrently(&replicas, &conc, 30, 1, 0.0).await;
    assert_eq!(ok.len(), 5);
    settle_all(ok, 1, 0.0).await;

    let budget = Budget {
        usd: 1.0,
        period: Period::Day,
    };
    let money = [(
        key("k3"),
        Limits {
            budget: Some(budget),
            ..limits()
        },
    )];
    let (ok, _) = admit_concurrently(&replicas, &money, 32, 1, 0.10).await;
    assert_eq!(ok.len(), 10);
    settle_all(ok, 1, 0.10).await;

    // Every key the limiters wrote expires on its own.
    let (count, without_ttl) = keys_without_ttl(&prefix).await;
    assert!(count > 0);
    assert!(
        without_ttl.is_empty(),
        "keys without a TTL: {without_ttl:?}"
    );
    delete_prefix(&prefix).await;
}

/// A replica that dies holding a reservation does not hold it forever: its lease expires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_of_a_dead_replica_expire() {
    let prefix = fresh_prefix();
    let config = RedisConfig {
        lease: Duration::from_secs(30),
        ..redis_config(redis_url(), &prefix)
    };
    let limiter = Limiter::redis(config).await.unwrap();
    let lim = Limits {
        max_concurrency: Some(1),
        budget: Some(Budget {
            usd: 1.0,
            period: Period::Lifetime,
        }),
        ..limits()
    };
    let scopes = [(key("k1"), lim)];
    let now = limiter.now_ms();
    let r = limiter
        .admit(&request(&scopes, 1, 0.70, now))
        .await
        .unwrap();
    std::mem::forget(r); // the replica "dies": no settle, no drop
    assert!(limiter
        .admit(&request(&scopes, 1, 0.10, now + 29_000))
        .await
        .is_err());
    let later = now + 31_000;
    let r = limiter
        .admit(&request(&scopes, 1, 0.90, later))
        .await
        .unwrap();
    let b = limiter
        .snapshot(&scopes[0].0, &lim, later)
        .await
        .unwrap()
        .budget
        .unwrap();
    assert!((b.reserved_usd - 0.90).abs() < 1e-9, "{b:?}");
    r.settle(1, 0.90).await.unwrap();
    delete_prefix(&prefix).await;
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A private redis-server on a free port, killed on drop (never the machine's shared one).
struct PrivateRedis {
    child: Child,
    port: u16,
}

impl PrivateRedis {
    async fn start(port: u16) -> PrivateRedis {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed");
        let server = PrivateRedis { child, port };
        let client = redis::Client::open(server.url()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(mut c) = client.get_multiplexed_async_connection().await {
                if redis::cmd("PING")
                    .query_async::<String>(&mut c)
                    .await
                    .is_ok()
                {
                    return server;
                }
            }
            assert!(
                Instant::now() < deadline,
                "private redis-server did not start"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_redis_closed_refuses_open_admits() {
    let scopes = [(
        key("k1"),
        Limits {
            rpm: Some(1),
            tpm: Some(10),
            ..limits()
        },
    )];
    // Nothing listens on port 1.
    let closed = Limiter::redis(redis_config("redis://127.0.0.1:1".into(), "x"))
        .await
        .unwrap();
    let started = Instant::now();
    for _ in 0..3 {
        let d = closed
            .admit(&request(&scopes, 1, 0.0, closed.now_ms()))
            .await
            .unwrap_err();
        assert_eq!(
            (d.kind, d.scope, d.code()),
            (Kind::Unavailable, None, "limits_unavailable")
        );
    }
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(closed.stats().unavailable_denials, 3);

    let config = RedisConfig {
        failure: FailureMode::Open,
        ..redis_config("redis://127.0.0.1:1".into(), "x")
    };
    let open = Limiter::redis(config).await.unwrap();
    for _ in 0..3 {
        let r = open
            .admit(&request(&scopes, 1, 0.0, open.now_ms()))
            .await
            .unwrap();
        assert!(
            r.settle(1, 0.0).await.is_err(),
            "settling cannot reach Redis either"
        );
    }
    let stats = open.stats();
    assert_eq!((stats.fail_open_admits, stats.settle_failures), (3, 3));
    // Unlimited requests never touch Redis, so they pass either way.
    assert!(closed
        .admit(&request(&[], 1, 0.0, closed.now_ms()))
        .await
        .is_ok());
}

/// Redis goes away mid-test and comes back on the same port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stopping_mid_test_gives_the_configured_behaviour() {
    let port = free_port();
    let mut server = PrivateRedis::start(port).await;
    let closed = Limiter::redis(redis_config(server.url(), "p"))
        .await
        .unwrap();
    let open_config = RedisConfig {
        failure: FailureMode::Open,
        ..redis_config(server.url(), "p")
    };
    let open = Limiter::redis(open_config).await.unwrap();
    let scopes = [(
        key("k1"),
        Limits {
            rpm: Some(3),
            ..limits()
        },
    )];
    for limiter in [&closed, &open] {
        limiter
            .admit(&request(&scopes, 1, 0.0, limiter.now_ms()))
            .await
            .unwrap()
            .settle(1, 0.0)
            .await
            .unwrap();
    }

    server.stop();
    let started = Instant::now();
    let d = closed
        .admit(&request(&scopes, 1, 0.0, closed.now_ms()))
        .await
        .unwrap_err();
    assert_eq!(d.kind, Kind::Unavailable);
    // Open: more than the rpm of 3 pass while Redis is away, and are counted.
    for _ in 0..5 {
        let r = open
            .admit(&request(&scopes, 1, 0.0, open.now_ms()))
            .await
            .unwrap();
        drop(r);
    }
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(open.stats().fail_open_admits, 5);

    // Redis returns (empty: it saved nothing); both limit again once reconnected.
    let _server = PrivateRedis::start(port).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match closed
            .admit(&request(&scopes, 1, 0.0, closed.now_ms()))
            .await
        {
            Ok(r) => {
                r.settle(1, 0.0).await.unwrap();
                break;
            }
            Err(d) => assert_eq!(d.kind, Kind::Unavailable),
        }
        assert!(
            Instant::now() < deadline,
            "the closed limiter never reconnected"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    loop {
        let before = open.stats().fail_open_admits;
        let r = open
            .admit(&request(&scopes, 1, 0.0, open.now_ms()))
            .await
            .unwrap();
        r.settle(1, 0.0).await.ok();
        if open.stats().fail_open_admits == before {
            break; // admitted by Redis, not around it
        }
        assert!(
            Instant::now() < deadline,
            "the open limiter never reconnected"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Two of the three used since the restart: exactly one more fits.
    let mut ok = 0;
    for _ in 0..5 {
        if let Ok(r) = closed
            .admit(&request(&scopes, 1, 0.0, closed.now_ms()))
            .await
        {
            ok += 1;
            r.settle(1, 0.0).await.unwrap();
        }
    }
    assert_eq!(ok, 1);
}

/// Throughput on this machine, printed (run with --nocapture); also a sanity check that bursts
/// of admissions under generous limits all pass. Two shapes: a key and its team with all four
/// limits (the most work per admission), and a key with only `rpm` (no settlement round trip).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throughput() {
    let all = Limits {
        rpm: Some(1_000_000),
        tpm: Some(1_000_000_000),
        max_concurrency: Some(1000),
        budget: Some(Budget {
            usd: 1e6,
            period: Period::Day,
        }),
    };
    let rpm_only = Limits {
        rpm: Some(1_000_000),
        ..limits()
    };
    for backend in [Backend::Memory, Backend::Redis] {
        for (shape, lim, team) in [
            ("key+team, all limits", all, true),
            ("key, rpm only", rpm_only, false),
        ] {
            let t = under(backend).await;
            let n_tasks = 16;
            let per_task = match backend {
                Backend::Memory => 10_000,
                Backend::Redis => 400,
            };
            let started = Instant::now();
            let mut tasks = Vec::new();
            for task in 0..n_tasks {
                let limiter = t.limiter.clone();
                tasks.push(tokio::spawn(async move {
                    let mut scopes = vec![(key(&format!("k{}", task % 4)), lim)];
                    if team {
                        scopes.push((Scope::team("t1"), lim));
                    }
                    for _ in 0..per_task {
                        let now = limiter.now_ms();
                        let r = limiter
                            .admit(&request(&scopes, 100, 0.001, now))
                            .await
                            .unwrap();
                        r.settle(90, 0.0009).await.unwrap();
                    }
                }));
            }
            for task in tasks {
                task.await.unwrap();
            }
            let n = n_tasks * per_task;
            let secs = started.elapsed().as_secs_f64();
            println!(
                "{backend:?} ({shape}): {n} admit+settle in {secs:.3}s = {:.0}/s",
                n as f64 / secs
            );
            t.cleanup().await;
        }
    }
}
