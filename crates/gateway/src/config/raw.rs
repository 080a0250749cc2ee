//! The configuration file as written: serde types that mirror the YAML, unknown keys refused.
//!
//! Nothing here is checked beyond its shape; `validate` turns these into a `Config` whose
//! invariants hold. Durations, sizes and references stay strings until then, so every problem can
//! be reported with its YAML path and line.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    pub listen: Option<String>,
    pub admin_key: Option<String>,
    pub store: Option<String>,
    pub redis: Option<String>,
    pub redis_failure: Option<String>,
    /// Every Redis key starts with `<redis_prefix>:` (several gateways may share one Redis).
    pub redis_prefix: Option<String>,
    pub auth: Option<String>,
    /// Also register every provider whose API key is in the environment (the zero-config
    /// behaviour), exposing its models as `provider/model`.
    pub providers_from_env: Option<bool>,
    pub server: Option<Server>,
    pub telemetry: Option<Telemetry>,
    #[serde(default)]
    pub providers: BTreeMap<String, Provider>,
    #[serde(default)]
    pub models: BTreeMap<String, Model>,
    #[serde(default)]
    pub keys: Vec<Key>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Server {
    pub max_body_bytes: Option<String>,
    pub request_timeout: Option<String>,
    pub usage_log_bodies: Option<bool>,
    pub usage_records: Option<bool>,
    pub header_read_timeout: Option<String>,
    pub idle_timeout: Option<String>,
    pub shutdown_grace: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Telemetry {
    /// OTLP/HTTP base URL; spans are POSTed to `{otlp_endpoint}/v1/traces`.
    pub otlp_endpoint: Option<String>,
    /// Headers sent with every export (a collector's token, a tenant).
    pub otlp_headers: Option<BTreeMap<String, String>>,
    /// The resource's `service.name` (default `switchyard`).
    pub service_name: Option<String>,
    pub log_format: Option<String>,
    pub log_level: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Provider {
    #[serde(rename = "type")]
    pub kind: String,
    pub base_url: Option<String>,
    pub api_key: Option<String>,
    pub api_version: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub session_token: Option<String>,
    /// Extra headers sent with every upstream request.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    // The built-in `mock` provider's behaviour.
    pub latency: Option<String>,
    pub failure_rate: Option<f64>,
    pub chunk_delay: Option<String>,
    pub chunk_words: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Model {
    pub targets: Option<Vec<Target>>,
    pub versions: Option<BTreeMap<String, Version>>,
    pub rollout: Option<Rollout>,
    pub routing: Option<String>,
    pub retries: Option<u32>,
    pub timeout: Option<String>,
    pub fallbacks: Option<Vec<String>>,
    pub price: Option<Price>,
    pub context_window: Option<u64>,
    pub hedge_after: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Version {
    pub targets: Vec<Target>,
    pub routing: Option<String>,
    pub retries: Option<u32>,
    pub timeout: Option<String>,
    pub fallbacks: Option<Vec<String>>,
    pub price: Option<Price>,
    pub context_window: Option<u64>,
    pub hedge_after: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    pub provider: String,
    pub model: String,
    pub weight: Option<u32>,
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
    pub max_concurrency: Option<u64>,
    /// The upstream model version (Open Inference Protocol targets).
    pub version: Option<String>,
    pub price: Option<Price>,
    pub context_window: Option<u64>,
    pub capabilities: Option<Vec<String>>,
}

#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    pub input: Option<f64>,
    pub output: Option<f64>,
    pub cache_read: Option<f64>,
    pub cache_write: Option<f64>,
    pub reasoning: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rollout {
    pub stable: Option<String>,
    pub canary: Option<String>,
    pub canary_percent: Option<f64>,
    pub sticky: Option<String>,
    pub shadow: Option<String>,
    pub shadow_percent: Option<f64>,
    pub analysis: Option<Analysis>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(
    dead_code,
    reason = "parsed so the file's shape is checked; acted on by the rollout analysis"
)]
pub struct Analysis {
    pub window: Option<String>,
    pub min_requests: Option<u64>,
    pub max_error_rate: Option<f64>,
    pub max_latency_p95: Option<String>,
    pub max_cost_ratio: Option<f64>,
    pub on_pass: Option<String>,
    pub on_fail: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Key {
    pub name: String,
    pub secret: String,
    pub team: Option<String>,
    pub models: Option<Vec<String>>,
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
    pub max_concurrency: Option<u64>,
    pub budget: Option<f64>,
    pub budget_period: Option<String>,
    pub expires_at: Option<String>,
    #[serde(default)]
    pub metadata: BTreeMap<String, serde_yaml::Value>,
}
