//! Starting what the gateway depends on, in order: the store (migrated), the keys of the
//! configuration file synced into it, the key directory and its follower, the limiter (Redis or
//! in process). Failures here stop the start with a clear message.

use std::sync::Arc;
use std::time::Duration;

use crate::app::App;
use crate::auth::Directory;
use crate::config::Config;
use crate::limits::{self, Limiter};

/// The store of the configuration (`store:`), or the embedded default `sqlite://switchyard.db`.
pub fn store_url(config: &Config) -> String {
    config
        .store
        .clone()
        .unwrap_or_else(|| "sqlite://switchyard.db".to_string())
}

pub async fn connect_store(config: &Config) -> Result<store::Store, String> {
    let url = store_url(config);
    let store = store::Store::connect(&url)
        .await
        .map_err(|e| format!("cannot open the store ({}): {e}", redact(&url)))?;
    store
        .migrate()
        .await
        .map_err(|e| format!("cannot migrate the store: {e}"))?;
    Ok(store)
}

/// The app with every service started.
pub async fn start(config: Config) -> Result<Arc<App>, String> {
    let store = connect_store(&config).await?;
    let config_keys: Vec<store::keys::New> = config
        .keys
        .iter()
        .map(|k| store::keys::New {
            name: k.name.clone(),
            hash: hex::encode(k.hash),
            prefix: k.prefix.clone(),
            team_id: None,
            limits: store::limits::Limits {
                models: (!k.models.is_empty()).then(|| k.models.clone()),
                rpm: k.limits.rpm,
                tpm: k.limits.tpm,
                max_concurrency: k.limits.max_concurrency,
                budget_usd: k.limits.budget.map(|b| b.usd),
                budget_period: k.limits.budget.and_then(|b| period(b.period)),
            },
            expires_at: k.expires_at,
            metadata: Default::default(),
            source: store::keys::Source::Config,
        })
        .collect();
    store
        .keys()
        .sync_config(&config_keys)
        .await
        .map_err(|e| format!("cannot sync the configuration's keys into the store: {e}"))?;
    let directory = Arc::new(Directory::default());
    directory
        .refresh(&store)
        .await
        .map_err(|e| format!("cannot read keys from the store: {e}"))?;
    tokio::spawn(
        directory
            .clone()
            .follow(store.clone(), Duration::from_secs(1)),
    );
    let limiter = match &config.redis {
        Some(url) => Limiter::redis(limits::RedisConfig {
            url: url.expose().to_string(),
            prefix: config.redis_prefix.clone(),
            failure: config.redis_failure,
            timeout: Duration::from_millis(250),
            lease: config.server.request_timeout + Duration::from_secs(60),
        })
        .await
        .map_err(|e| format!("cannot set up Redis: {e}"))?,
        None => Limiter::in_process(),
    };
    // Usage records: batched into the store off the request path, spooled to disk while it is away.
    if config.server.usage_records {
        start_usage_writer(&config, &store)?;
    } else {
        tracing::warn!("server.usage_records is false: no usage records are written (no request log, /v1/generation or budget history)");
    }
    seed_budgets(&store, &directory, &limiter).await;
    tokio::spawn(keep_budgets_seeded(
        store.clone(),
        directory.clone(),
        limiter.clone(),
    ));
    Ok(App::with(config, directory, limiter, Some(store)))
}

/// Starts the batching usage writer and installs it for `usage::emit`.
fn start_usage_writer(config: &Config, store: &store::Store) -> Result<(), String> {
    let options = crate::usage::writer::Options {
        spool_dir: crate::usage::spool::default_dir(&store_url(config)),
        ..Default::default()
    };
    let writer = crate::usage::writer::Writer::start(store.clone(), options)
        .map_err(|e| format!("cannot start the usage writer: {e}"))?;
    if crate::usage::install(writer).is_err() {
        tracing::warn!("a usage writer was already installed");
    }
    Ok(())
}

/// Budgets survive restarts: what every key and team with a budget has spent in its current
/// period is read from the usage records and handed to the limiter, which keeps the larger of
/// that and what it already counts (so replicas and repeats never lower a spend).
async fn seed_budgets(store: &store::Store, directory: &Directory, limiter: &Limiter) {
    let now = limiter.now_ms();
    let mut seen = std::collections::HashSet::new();
    for p in directory.principals() {
        for (scope, l) in &p.scopes {
            let Some(budget) = l.budget else { continue };
            if !seen.insert(scope.clone()) {
                continue;
            }
            let start = budget.period.bounds(now).start_ms;
            let who = match scope.kind {
                limits::ScopeKind::Key => store::usage::Scope::Key(&scope.id),
                limits::ScopeKind::Team => store::usage::Scope::Team(&scope.id),
            };
            match store.usage().spend(who, Some(start as i64)).await {
                Ok(usd) if usd > 0.0 => {
                    if let Err(e) = limiter.load_spend(scope, budget.period, start, usd).await {
                        tracing::warn!(error = %e, "could not seed a budget's spend");
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "could not read spend from the store"),
            }
        }
    }
}

async fn keep_budgets_seeded(store: store::Store, directory: Arc<Directory>, limiter: Limiter) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        seed_budgets(&store, &directory, &limiter).await;
    }
}

fn period(p: limits::Period) -> Option<store::limits::BudgetPeriod> {
    match p {
        limits::Period::Day => Some(store::limits::BudgetPeriod::Day),
        limits::Period::Week => Some(store::limits::BudgetPeriod::Week),
        limits::Period::ThirtyDays => Some(store::limits::BudgetPeriod::ThirtyDays),
        limits::Period::Month => Some(store::limits::BudgetPeriod::Month),
        limits::Period::Lifetime => None,
    }
}

/// A URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://***@{}", &url[..s], &url[at + 1..]),
        _ => url.to_string(),
    }
}

/// Flushes what is still queued for the trace collector and the store (after the graceful
/// drain, before exit).
pub async fn stop(app: &App) {
    if let Some(t) = &app.tracer {
        t.shutdown().await;
    }
    if let Some(w) = crate::usage::installed() {
        let stats = w.shutdown().await;
        tracing::info!(?stats, "usage records flushed");
    }
}
