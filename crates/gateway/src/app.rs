//! Shared state and the HTTP surface: the routes, and the ONE place generic tower layers are
//! ordered. The server sends the four model routes (`POST` on `/v1/chat/completions`,
//! `/v1/completions`, `/v1/embeddings`, `/v1/messages`) to the same pipeline functions without
//! this router (`server::Hot`); they are kept here too, for the router's other methods (405)
//! and for tests that drive the router alone.
//!
//! The configuration is swapped whole on reload (`ArcSwap`): a request sees one configuration
//! from start to end; an invalid file is refused and the running one kept.

use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;
use axum::routing::{get, post};
use axum::Router;

use crate::auth::Directory;
use crate::config::{self, Config};
use crate::handlers;
use crate::limits::Limiter;
use crate::telemetry;
use crate::upstream::client::{self, Client};
use crate::upstream::RetryBudget;

pub struct App {
    config: ArcSwap<Config>,
    pub client: Client,
    pub retry_budget: RetryBudget,
    /// Active virtual keys (store and configuration file).
    pub directory: Arc<Directory>,
    /// Rate limits, concurrency and budgets: in process, or shared through Redis.
    pub limiter: Limiter,
    /// Keys, teams, usage. `None` only for in-process tests.
    pub store: Option<store::Store>,
    /// Exports traces when `telemetry.otlp_endpoint` is set (read at start; a reload does not
    /// change it).
    pub tracer: Option<telemetry::Exporter>,
    /// Serialises reloads (SIGHUP and the admin API may race).
    reload_lock: tokio::sync::Mutex<()>,
}

impl App {
    /// An app with the configuration file's keys and in-process limits, without a store.
    pub fn new(config: Config) -> Arc<App> {
        let directory = Arc::new(Directory::from_config(&config.keys));
        App::with(config, directory, Limiter::in_process(), None)
    }

    pub fn with(
        config: Config,
        directory: Arc<Directory>,
        limiter: Limiter,
        store: Option<store::Store>,
    ) -> Arc<App> {
        let tracer = config
            .telemetry
            .otlp
            .as_ref()
            .and_then(telemetry::Exporter::start);
        Arc::new(App {
            tracer,
            config: ArcSwap::from_pointee(config),
            client: client::new(),
            retry_budget: RetryBudget::default(),
            directory,
            limiter,
            store,
            reload_lock: tokio::sync::Mutex::new(()),
        })
    }

    /// The configuration in force now.
    pub fn config(&self) -> Arc<Config> {
        self.config.load_full()
    }

    /// Re-reads the configuration file and swaps it in if valid. Returns the new configuration's
    /// summary, or every problem found (the running configuration is kept).
    pub async fn reload(&self) -> Result<Arc<Config>, config::Error> {
        let _guard = self.reload_lock.lock().await;
        let current = self.config();
        let path: Option<PathBuf> = current.path.clone();
        let prior = current.clone();
        let loaded = tokio::task::spawn_blocking(move || match path {
            Some(p) => config::load_with(&p, Some(&prior)),
            None => Ok(config::zero_config()),
        })
        .await
        .unwrap_or_else(|e| {
            Err(config::Error {
                origin: "reload".into(),
                problems: vec![config::Problem {
                    path: String::new(),
                    line: None,
                    message: format!("the reload task failed: {e}"),
                }],
            })
        })?;
        if loaded.listen != current.listen {
            tracing::warn!(old = %current.listen, new = %loaded.listen, "listen address changed; it takes effect on restart");
        }
        let otlp = |c: &Config| c.telemetry.otlp.as_ref().map(|o| o.traces_url.clone());
        if otlp(&loaded) != otlp(&current) {
            tracing::warn!("telemetry.otlp_* changed; it takes effect on restart");
        }
        let loaded = Arc::new(loaded);
        self.config.store(loaded.clone());
        tracing::info!(
            models = loaded.models.len(),
            providers = loaded.providers.len(),
            "configuration reloaded"
        );
        Ok(loaded)
    }
}

/// Every route of the gateway, with the generic layers around them.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(handlers::openai::chat))
        .route("/v1/completions", post(handlers::openai::completions))
        .route("/v1/embeddings", post(handlers::openai::embeddings))
        .route("/v1/models", get(handlers::openai::models))
        .route("/v1/messages", post(handlers::anthropic::messages))
        .route(
            "/v1/messages/count_tokens",
            post(handlers::anthropic::count_tokens),
        )
        .route("/health/live", get(handlers::health::live))
        .route("/health/ready", get(handlers::health::ready))
        .route("/metrics", get(handlers::health::metrics))
        .route("/admin/v1/reload", post(handlers::admin::reload))
        .route("/admin/v1/models", get(handlers::admin::models))
        .route("/admin/v1/usage", get(handlers::usage::usage))
        .route("/admin/v1/requests", get(handlers::usage::requests))
        .route("/v1/generation", get(handlers::usage::generation))
        .route(
            "/admin/v1/keys",
            post(handlers::admin_keys::create_key).get(handlers::admin_keys::list_keys),
        )
        .route(
            "/admin/v1/keys/{id}",
            get(handlers::admin_keys::get_key)
                .patch(handlers::admin_keys::patch_key)
                .delete(handlers::admin_keys::revoke_key),
        )
        .route(
            "/admin/v1/teams",
            post(handlers::admin_keys::create_team).get(handlers::admin_keys::list_teams),
        )
        .route(
            "/admin/v1/teams/{id}",
            get(handlers::admin_keys::get_team)
                .patch(handlers::admin_keys::patch_team)
                .delete(handlers::admin_keys::delete_team),
        )
        .fallback(handlers::not_found)
        .method_not_allowed_fallback(handlers::method_not_allowed)
        // Outermost last: a panic anywhere below becomes a 500 in OpenAI's error format.
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            handlers::panic,
        ))
        .with_state(app)
}
