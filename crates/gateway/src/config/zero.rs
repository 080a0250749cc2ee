//! The zero-config default: what `switchyard serve` runs with no configuration file.
//!
//! Every provider whose API key is in the environment is registered under its own name, local
//! Ollama too if it answers, and the built-in `mock`; models are reached as `provider/model`.

use std::fmt::Write as _;
use std::time::Duration;

use super::validate::PRESETS;

/// Builds the zero-config `Config` from the environment.
pub fn config(env: &dyn Fn(&str) -> Option<String>) -> super::Config {
    let text = yaml(env, ollama_answers());
    match super::parse(&text, "zero-config", env) {
        Ok(mut c) => {
            c.direct_routes = true;
            c
        }
        // The generated text only names presets and environment values; if a key holds characters
        // no header can carry, fall back to the mock alone rather than refuse to start.
        Err(_) => {
            let mut c = super::parse(&yaml(&|_| None, false), "zero-config", &|_| None)
                .unwrap_or_else(|_| unreachable_config());
            c.direct_routes = true;
            c
        }
    }
}

/// The YAML the zero-config default amounts to (also what `providers_from_env` adds).
pub fn yaml(env: &dyn Fn(&str) -> Option<String>, ollama: bool) -> String {
    let mut out =
        String::from("store: sqlite://switchyard.db\nproviders:\n  mock: { type: mock }\n");
    for (kind, _, var) in PRESETS {
        if var.is_empty() {
            continue;
        }
        if env(var).is_some_and(|v| !v.is_empty()) {
            let _ = writeln!(out, "  {kind}: {{ type: {kind}, api_key: \"${{{var}}}\" }}");
        }
    }
    if ollama {
        out.push_str("  ollama: { type: ollama }\n");
    }
    out
}

fn ollama_answers() -> bool {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 11434));
    std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(150)).is_ok()
}

fn unreachable_config() -> super::Config {
    super::Config {
        path: None,
        listen: "127.0.0.1:4000".into(),
        admin_key: None,
        auth: super::Auth::Keys,
        server: super::Server {
            max_body_bytes: 10 * 1024 * 1024,
            request_timeout: Duration::from_secs(600),
            usage_log_bodies: false,
            usage_records: true,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(30),
        },
        telemetry: super::Telemetry::default(),
        providers: Default::default(),
        models: Default::default(),
        keys: Vec::new(),
        direct_routes: true,
        store: None,
        redis: None,
        redis_prefix: "switchyard".into(),
        redis_failure: crate::limits::FailureMode::Closed,
        direct_state: Default::default(),
    }
}
