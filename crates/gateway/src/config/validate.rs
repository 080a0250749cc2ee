//! Turns the raw file into a `Config`: defaults applied, units parsed, references resolved, every
//! problem collected with its path and line.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue};

use super::locate::Lines;
use super::{
    raw, units, Auth, Capabilities, Config, Key, Model, Otlp, Price, Problem, Provider, Secret,
    Server, Strategy, Target, Telemetry, Version,
};

/// The wire protocol of a provider, with what is specific to it.
#[derive(Debug, Clone, PartialEq)]
pub enum ProviderKind {
    OpenAi,
    Azure {
        api_version: String,
    },
    /// Any server speaking OpenAI's format: vLLM, Ollama, Groq, Together, Mistral, … (`preset`
    /// names which one when written as `type: groq` and so on).
    OpenAiCompatible {
        preset: Option<&'static str>,
    },
    Mock(Mock),
    /// Anthropic Messages API; `version` is the `anthropic-version` header.
    Anthropic {
        version: String,
    },
    /// Google AI Gemini `generateContent`.
    Gemini,
    /// AWS Bedrock Converse, signed with SigV4.
    Bedrock(Bedrock),
}

/// AWS credentials and region of a Bedrock provider.
#[derive(Debug, Clone, PartialEq)]
pub struct Bedrock {
    pub region: String,
    pub access_key_id: Secret,
    pub secret_access_key: Secret,
    pub session_token: Option<Secret>,
}

impl ProviderKind {
    /// The `type` this provider was configured with.
    pub fn type_name(&self) -> &'static str {
        match self {
            ProviderKind::OpenAi => "openai",
            ProviderKind::Azure { .. } => "azure",
            ProviderKind::OpenAiCompatible { preset: Some(p) } => p,
            ProviderKind::OpenAiCompatible { preset: None } => "openai-compatible",
            ProviderKind::Mock(_) => "mock",
            ProviderKind::Anthropic { .. } => "anthropic",
            ProviderKind::Gemini => "gemini",
            ProviderKind::Bedrock(_) => "bedrock",
        }
    }
}

/// Behaviour of the built-in `mock` provider.
#[derive(Debug, Clone, PartialEq)]
pub struct Mock {
    pub latency: Duration,
    pub failure_rate: f64,
    pub chunk_delay: Duration,
    pub chunk_words: usize,
}

/// OpenAI-compatible hosts a user can name by `type` alone: default base URL and the
/// environment variable holding their key (for `providers_from_env`).
pub const PRESETS: &[(&str, &str, &str)] = &[
    ("openai", "https://api.openai.com/v1", "OPENAI_API_KEY"),
    ("groq", "https://api.groq.com/openai/v1", "GROQ_API_KEY"),
    ("mistral", "https://api.mistral.ai/v1", "MISTRAL_API_KEY"),
    (
        "together",
        "https://api.together.xyz/v1",
        "TOGETHER_API_KEY",
    ),
    (
        "deepseek",
        "https://api.deepseek.com/v1",
        "DEEPSEEK_API_KEY",
    ),
    (
        "fireworks",
        "https://api.fireworks.ai/inference/v1",
        "FIREWORKS_API_KEY",
    ),
    (
        "openrouter",
        "https://openrouter.ai/api/v1",
        "OPENROUTER_API_KEY",
    ),
    ("ollama", "http://127.0.0.1:11434/v1", ""),
    ("vllm", "http://127.0.0.1:8000/v1", ""),
];

const TYPES: &[&str] = &[
    "openai",
    "azure",
    "openai-compatible",
    "mock",
    "groq",
    "mistral",
    "together",
    "deepseek",
    "fireworks",
    "openrouter",
    "ollama",
    "vllm",
    "anthropic",
    "gemini",
    "bedrock",
    "open-inference",
];

struct Ctx<'a> {
    lines: &'a Lines,
    problems: Vec<Problem>,
    /// The configuration being replaced, whose targets' live state carries over.
    prior: Option<&'a Config>,
}

impl Ctx<'_> {
    fn problem(&mut self, path: impl Into<String>, message: impl Into<String>) {
        let path = path.into();
        self.problems.push(Problem {
            line: self.lines.of(&path),
            path,
            message: message.into(),
        });
    }

    /// A setting of the specification this version does not enforce yet: refusing it is safer
    /// than silently ignoring a limit the user relies on.
    fn unsupported(&mut self, path: impl Into<String>, set: bool) {
        if set {
            self.problem(
                path,
                "this setting is not supported by this version of Switchyard yet; remove it",
            );
        }
    }

    fn duration(&mut self, path: &str, value: Option<&str>, default: Duration) -> Duration {
        match value.map(units::duration) {
            None => default,
            Some(Ok(d)) => d,
            Some(Err(e)) => {
                self.problem(path, e);
                default
            }
        }
    }
}

pub fn validate(
    file: raw::File,
    lines: &Lines,
    env: &dyn Fn(&str) -> Option<String>,
    prior: Option<&Config>,
) -> Result<Config, Vec<Problem>> {
    let mut cx = Ctx {
        lines,
        prior,
        problems: Vec::new(),
    };

    let listen = file.listen.unwrap_or_else(|| "127.0.0.1:4000".into());
    if listen.parse::<std::net::SocketAddr>().is_err() && !listen.contains(':') {
        cx.problem(
            "listen",
            format!("'{listen}' is not an address like 127.0.0.1:4000"),
        );
    }
    let auth = match file.auth.as_deref() {
        None | Some("keys") => Auth::Keys,
        Some("none") => Auth::None,
        Some(other) => {
            cx.problem(
                "auth",
                format!("'{other}' is not an auth mode (keys or none)"),
            );
            Auth::Keys
        }
    };
    let admin_key = file.admin_key.filter(|k| !k.is_empty()).map(Secret::new);
    if let Some(r) = file.redis_failure.as_deref() {
        if r != "open" && r != "closed" {
            cx.problem("redis_failure", format!("'{r}' is not open or closed"));
        }
    }
    if let Some(s) = &file.store {
        if !(s.starts_with("sqlite:")
            || s.starts_with("postgres://")
            || s.starts_with("postgresql://"))
        {
            cx.problem(
                "store",
                "the store must be sqlite://FILE or postgres://USER@HOST/DB",
            );
        }
    }

    let rs = file.server.unwrap_or_default();
    let server = Server {
        max_body_bytes: match rs.max_body_bytes.as_deref().map(units::size) {
            None => 10 * 1024 * 1024,
            Some(Ok(n)) => n,
            Some(Err(e)) => {
                cx.problem("server.max_body_bytes", e);
                10 * 1024 * 1024
            }
        },
        request_timeout: cx.duration(
            "server.request_timeout",
            rs.request_timeout.as_deref(),
            Duration::from_secs(600),
        ),
        usage_log_bodies: rs.usage_log_bodies.unwrap_or(false),
        usage_records: rs.usage_records.unwrap_or(true),
        header_read_timeout: cx.duration(
            "server.header_read_timeout",
            rs.header_read_timeout.as_deref(),
            Duration::from_secs(10),
        ),
        idle_timeout: cx.duration(
            "server.idle_timeout",
            rs.idle_timeout.as_deref(),
            Duration::from_secs(60),
        ),
        shutdown_grace: cx.duration(
            "server.shutdown_grace",
            rs.shutdown_grace.as_deref(),
            Duration::from_secs(30),
        ),
    };

    let rt = file.telemetry.unwrap_or_default();
    let telemetry = Telemetry {
        json_logs: match rt.log_format.as_deref() {
            None | Some("text") => false,
            Some("json") => true,
            Some(other) => {
                cx.problem(
                    "telemetry.log_format",
                    format!("'{other}' is not a log format (text or json)"),
                );
                false
            }
        },
        log_level: rt.log_level,
        otlp: otlp(&mut cx, rt.otlp_endpoint, rt.otlp_headers, rt.service_name),
    };

    let mut providers = BTreeMap::new();
    for (name, p) in file.providers {
        let path = format!("providers.{name}");
        if let Some(p) = provider(&mut cx, &path, &name, p) {
            providers.insert(name, Arc::new(p));
        }
    }

    if file.providers_from_env == Some(true) {
        for (kind, _, var) in PRESETS {
            if var.is_empty() || providers.contains_key(*kind) {
                continue;
            }
            if let Some(key) = env(var).filter(|k| !k.is_empty()) {
                let raw = raw::Provider {
                    kind: (*kind).to_string(),
                    api_key: Some(key),
                    ..Default::default()
                };
                if let Some(p) = provider(&mut cx, &format!("providers_from_env.{kind}"), kind, raw)
                {
                    providers.insert((*kind).to_string(), Arc::new(p));
                }
            }
        }
    }

    let model_names: Vec<String> = file.models.keys().cloned().collect();
    let mut models = HashMap::new();
    for (name, m) in file.models {
        let path = format!("models.{name}");
        if name.contains('@') {
            cx.problem(
                &path,
                "a model name cannot contain '@' (it separates the version)",
            );
        }
        if let Some(m) = model(
            &mut cx,
            &path,
            &name,
            m,
            &providers,
            &model_names,
            server.request_timeout,
        ) {
            models.insert(name, Arc::new(m));
        }
    }

    let mut keys = Vec::new();
    for (i, k) in file.keys.into_iter().enumerate() {
        let path = format!("keys[{i}]");
        if k.secret.len() < 16 {
            cx.problem(
                format!("{path}.secret"),
                "a key secret must be at least 16 characters",
            );
            continue;
        }
        for (j, pattern) in k.models.iter().flatten().enumerate() {
            if !models.contains_key(pattern) && !pattern.contains(['*', '?', '/']) {
                let hint = super::closest(pattern, model_names.iter().map(String::as_str))
                    .map(|c| format!(" (did you mean '{c}'?)"))
                    .unwrap_or_default();
                cx.problem(
                    format!("{path}.models[{j}]"),
                    format!("unknown model '{pattern}'{hint}"),
                );
            }
        }
        cx.unsupported(format!("{path}.team"), k.team.is_some());
        let period = match k.budget_period.as_deref() {
            None => crate::limits::Period::Lifetime,
            Some(p) => match p.parse::<crate::limits::Period>() {
                Ok(p) => p,
                Err(_) => {
                    cx.problem(
                        format!("{path}.budget_period"),
                        format!("'{p}' is not a budget period (1d, 7d, 30d, 1mo)"),
                    );
                    crate::limits::Period::Lifetime
                }
            },
        };
        if k.budget_period.is_some() && k.budget.is_none() {
            cx.problem(
                format!("{path}.budget_period"),
                "budget_period needs a budget",
            );
        }
        let expires_at = k
            .expires_at
            .as_deref()
            .and_then(|e| match units::timestamp_ms(e) {
                Ok(t) => Some(t),
                Err(msg) => {
                    cx.problem(format!("{path}.expires_at"), msg);
                    None
                }
            });
        let limits = crate::limits::Limits {
            rpm: k.rpm,
            tpm: k.tpm,
            max_concurrency: k.max_concurrency,
            budget: k.budget.map(|usd| crate::limits::Budget { usd, period }),
        };
        let _ = &k.metadata;
        keys.push(Key {
            name: k.name,
            hash: crate::auth::hash(&k.secret),
            prefix: k.secret.chars().take(10).collect(),
            models: k.models.unwrap_or_default(),
            limits,
            expires_at,
        });
    }

    if cx.problems.is_empty() {
        Ok(Config {
            path: None,
            listen,
            admin_key,
            auth,
            server,
            telemetry,
            providers,
            models,
            keys,
            direct_routes: file.providers_from_env.unwrap_or(false),
            store: file.store,
            redis: file.redis.filter(|r| !r.is_empty()).map(Secret::new),
            redis_prefix: file.redis_prefix.unwrap_or_else(|| "switchyard".into()),
            redis_failure: if file.redis_failure.as_deref() == Some("open") {
                crate::limits::FailureMode::Open
            } else {
                crate::limits::FailureMode::Closed
            },
            direct_state: Default::default(),
        })
    } else {
        Err(cx.problems)
    }
}

/// `telemetry.otlp_*`: an http(s) base URL with a host, valid headers, a service name.
fn otlp(
    cx: &mut Ctx<'_>,
    endpoint: Option<String>,
    headers: Option<BTreeMap<String, String>>,
    service_name: Option<String>,
) -> Option<Otlp> {
    let Some(endpoint) = endpoint else {
        if headers.is_some() {
            cx.problem("telemetry.otlp_headers", "otlp_headers needs otlp_endpoint");
        }
        if service_name.is_some() {
            cx.problem("telemetry.service_name", "service_name needs otlp_endpoint");
        }
        return None;
    };
    let path = "telemetry.otlp_endpoint";
    let endpoint = endpoint.trim_end_matches('/').to_string();
    if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
        cx.problem(
            path,
            format!("'{endpoint}' must be an http:// or https:// URL, like http://127.0.0.1:4318"),
        );
        return None;
    }
    let url = if endpoint.ends_with("/v1/traces") {
        endpoint.clone()
    } else {
        format!("{endpoint}/v1/traces")
    };
    let traces_url = match url.parse::<http::Uri>() {
        Ok(u) if u.host().is_some_and(|h| !h.is_empty()) && u.query().is_none() => u,
        _ => {
            cx.problem(
                path,
                format!("'{endpoint}' is not a valid URL (expected http://HOST:PORT, like http://127.0.0.1:4318)"),
            );
            return None;
        }
    };
    let mut out = Vec::new();
    for (h, v) in headers.iter().flatten() {
        match (
            HeaderName::try_from(h.as_str()),
            HeaderValue::try_from(v.as_str()),
        ) {
            (Ok(h), Ok(mut v)) => {
                v.set_sensitive(true);
                out.push((h, v));
            }
            _ => cx.problem(
                format!("telemetry.otlp_headers.{h}"),
                "not a valid HTTP header name and value",
            ),
        }
    }
    let service_name = service_name.unwrap_or_else(|| "switchyard".into());
    if service_name.is_empty() {
        cx.problem("telemetry.service_name", "service_name cannot be empty");
    }
    Some(Otlp {
        endpoint,
        traces_url,
        headers: out,
        service_name,
    })
}

fn provider(cx: &mut Ctx<'_>, path: &str, name: &str, p: raw::Provider) -> Option<Provider> {
    if name.contains(['/', '@']) {
        cx.problem(path, "a provider name cannot contain '/' or '@'");
    }
    let preset = PRESETS.iter().find(|(t, ..)| *t == p.kind);
    let kind = match p.kind.as_str() {
        "openai" => ProviderKind::OpenAi,
        "azure" => {
            let Some(v) = p.api_version.clone() else {
                cx.problem(
                    format!("{path}.api_version"),
                    "an azure provider needs api_version (for example \"2024-10-21\")",
                );
                return None;
            };
            if p.base_url.is_none() {
                cx.problem(
                    format!("{path}.base_url"),
                    "an azure provider needs base_url (https://RESOURCE.openai.azure.com)",
                );
                return None;
            }
            ProviderKind::Azure { api_version: v }
        }
        "openai-compatible" => {
            if p.base_url.is_none() {
                cx.problem(
                    format!("{path}.base_url"),
                    "an openai-compatible provider needs base_url",
                );
                return None;
            }
            ProviderKind::OpenAiCompatible { preset: None }
        }
        "mock" => ProviderKind::Mock(super::validate::Mock {
            latency: cx.duration(
                &format!("{path}.latency"),
                p.latency.as_deref(),
                Duration::ZERO,
            ),
            failure_rate: match p.failure_rate {
                Some(r) if !(0.0..=1.0).contains(&r) => {
                    cx.problem(
                        format!("{path}.failure_rate"),
                        "failure_rate must be between 0 and 1",
                    );
                    0.0
                }
                r => r.unwrap_or(0.0),
            },
            chunk_delay: cx.duration(
                &format!("{path}.chunk_delay"),
                p.chunk_delay.as_deref(),
                Duration::ZERO,
            ),
            chunk_words: p.chunk_words.unwrap_or(1).max(1),
        }),
        "anthropic" => ProviderKind::Anthropic {
            version: p.api_version.clone().unwrap_or_else(|| "2023-06-01".into()),
        },
        "gemini" => ProviderKind::Gemini,
        "bedrock" => {
            let (Some(region), Some(id), Some(secret)) =
                (&p.region, &p.access_key_id, &p.secret_access_key)
            else {
                cx.problem(
                    path,
                    "a bedrock provider needs region, access_key_id and secret_access_key",
                );
                return None;
            };
            ProviderKind::Bedrock(Bedrock {
                region: region.clone(),
                access_key_id: Secret::new(id.as_str()),
                secret_access_key: Secret::new(secret.as_str()),
                session_token: p
                    .session_token
                    .clone()
                    .filter(|t| !t.is_empty())
                    .map(Secret::new),
            })
        }
        "open-inference" => {
            cx.problem(
                format!("{path}.type"),
                "provider type 'open-inference' is not available in this version of Switchyard yet",
            );
            return None;
        }
        other => match preset {
            Some((t, ..)) => ProviderKind::OpenAiCompatible { preset: Some(t) },
            None => {
                let hint = super::closest(other, TYPES.iter().copied())
                    .map(|c| format!(" (did you mean '{c}'?)"))
                    .unwrap_or_default();
                cx.problem(
                    format!("{path}.type"),
                    format!(
                        "unknown provider type '{other}'{hint}; one of {}",
                        TYPES.join(", ")
                    ),
                );
                return None;
            }
        },
    };
    let is_bedrock = matches!(kind, ProviderKind::Bedrock(_));
    cx.unsupported(format!("{path}.region"), p.region.is_some() && !is_bedrock);
    cx.unsupported(
        format!("{path}.access_key_id"),
        p.access_key_id.is_some() && !is_bedrock,
    );
    cx.unsupported(
        format!("{path}.secret_access_key"),
        p.secret_access_key.is_some() && !is_bedrock,
    );
    cx.unsupported(
        format!("{path}.session_token"),
        p.session_token.is_some() && !is_bedrock,
    );
    let default_url = match &kind {
        ProviderKind::Anthropic { .. } => Some("https://api.anthropic.com".to_string()),
        ProviderKind::Gemini => Some("https://generativelanguage.googleapis.com".to_string()),
        ProviderKind::Bedrock(b) => Some(format!(
            "https://bedrock-runtime.{}.amazonaws.com",
            b.region
        )),
        _ => preset.map(|(_, url, _)| url.to_string()),
    };
    let base_url = match (&p.base_url, default_url) {
        (Some(u), _) => u.trim_end_matches('/').to_string(),
        (None, Some(url)) => url,
        (None, None) => String::new(),
    };
    if !(base_url.is_empty() || base_url.starts_with("http://") || base_url.starts_with("https://"))
    {
        cx.problem(
            format!("{path}.base_url"),
            format!("'{base_url}' must start with http:// or https://"),
        );
    } else if !base_url.is_empty() && base_url.parse::<http::Uri>().is_err() {
        cx.problem(
            format!("{path}.base_url"),
            format!("'{base_url}' is not a valid URL"),
        );
    }
    let api_key = p.api_key.filter(|k| !k.is_empty()).map(Secret::new);
    let auth_header = match (&kind, &api_key) {
        (_, None) => None,
        (ProviderKind::Azure { .. }, Some(k)) => {
            sensitive(cx, path, k.expose()).map(|v| (HeaderName::from_static("api-key"), v))
        }
        (ProviderKind::Anthropic { .. }, Some(k)) => {
            sensitive(cx, path, k.expose()).map(|v| (HeaderName::from_static("x-api-key"), v))
        }
        (ProviderKind::Gemini, Some(k)) => {
            sensitive(cx, path, k.expose()).map(|v| (HeaderName::from_static("x-goog-api-key"), v))
        }
        (ProviderKind::Bedrock(_), Some(_)) => None,
        (_, Some(k)) => sensitive(cx, path, &format!("Bearer {}", k.expose()))
            .map(|v| (http::header::AUTHORIZATION, v)),
    };
    let mut extra_headers = Vec::new();
    for (h, v) in &p.headers {
        match (
            HeaderName::try_from(h.as_str()),
            HeaderValue::try_from(v.as_str()),
        ) {
            (Ok(h), Ok(mut v)) => {
                v.set_sensitive(true);
                extra_headers.push((h, v));
            }
            _ => cx.problem(
                format!("{path}.headers.{h}"),
                "not a valid HTTP header name and value",
            ),
        }
    }
    Some(Provider {
        name: super::intern(name),
        name_header: header_value(name),
        kind,
        base_url,
        api_key,
        auth_header,
        extra_headers,
    })
}

fn sensitive(cx: &mut Ctx<'_>, path: &str, value: &str) -> Option<HeaderValue> {
    match HeaderValue::try_from(value) {
        Ok(mut v) => {
            v.set_sensitive(true);
            Some(v)
        }
        Err(_) => {
            cx.problem(
                format!("{path}.api_key"),
                "the API key contains characters not allowed in an HTTP header",
            );
            None
        }
    }
}

/// A header value for a name from the config; names that are not valid header text are
/// percent-free ASCII in practice, so fall back to an empty value rather than fail.
pub(crate) fn header_value(s: &str) -> HeaderValue {
    HeaderValue::try_from(s).unwrap_or_else(|_| HeaderValue::from_static(""))
}

#[allow(clippy::too_many_arguments)]
fn model(
    cx: &mut Ctx<'_>,
    path: &str,
    name: &str,
    m: raw::Model,
    providers: &BTreeMap<String, Arc<Provider>>,
    model_names: &[String],
    default_timeout: Duration,
) -> Option<Model> {
    let mut versions = BTreeMap::new();
    match (m.targets, m.versions) {
        (Some(_), Some(_)) => {
            cx.problem(
                path,
                "a model has either targets (one implicit version) or versions, not both",
            );
            return None;
        }
        (None, None) => {
            cx.problem(path, "a model needs targets or versions");
            return None;
        }
        (Some(targets), None) => {
            let v = raw::Version {
                targets,
                routing: m.routing,
                retries: m.retries,
                timeout: m.timeout,
                fallbacks: m.fallbacks,
                price: m.price,
                context_window: m.context_window,
                hedge_after: m.hedge_after,
            };
            let v = version(
                cx,
                path,
                "default",
                v,
                providers,
                model_names,
                name,
                default_timeout,
            )?;
            versions.insert("default".to_string(), Arc::new(v));
        }
        (None, Some(vs)) => {
            for (vname, v) in vs {
                let vpath = format!("{path}.versions.{vname}");
                // Model-level settings are the defaults of every version.
                let v = raw::Version {
                    routing: v.routing.or(m.routing.clone()),
                    retries: v.retries.or(m.retries),
                    timeout: v.timeout.or(m.timeout.clone()),
                    fallbacks: v.fallbacks.or(m.fallbacks.clone()),
                    price: v.price.or(m.price),
                    ..v
                };
                if let Some(v) = version(
                    cx,
                    &vpath,
                    &vname,
                    v,
                    providers,
                    model_names,
                    name,
                    default_timeout,
                ) {
                    versions.insert(vname, Arc::new(v));
                }
            }
        }
    }
    let stable = match &m.rollout {
        Some(r) => {
            for (field, v) in [
                ("stable", &r.stable),
                ("canary", &r.canary),
                ("shadow", &r.shadow),
            ] {
                if let Some(v) = v {
                    if !versions.contains_key(v) {
                        cx.problem(
                            format!("{path}.rollout.{field}"),
                            format!("unknown version '{v}' of model '{name}'"),
                        );
                    }
                }
            }
            cx.unsupported(format!("{path}.rollout.canary"), r.canary.is_some());
            cx.unsupported(format!("{path}.rollout.shadow"), r.shadow.is_some());
            cx.unsupported(format!("{path}.rollout.sticky"), r.sticky.is_some());
            cx.unsupported(format!("{path}.rollout.analysis"), r.analysis.is_some());
            for (field, p) in [
                ("canary_percent", r.canary_percent),
                ("shadow_percent", r.shadow_percent),
            ] {
                if let Some(p) = p {
                    if !(0.0..=100.0).contains(&p) {
                        cx.problem(
                            format!("{path}.rollout.{field}"),
                            "a percent is between 0 and 100",
                        );
                    }
                }
            }
            r.stable.clone()
        }
        None => None,
    };
    let stable = match stable {
        Some(s) => s,
        None if versions.len() == 1 => versions.keys().next().cloned().unwrap_or_default(),
        None if versions.contains_key("default") => "default".into(),
        None => {
            cx.problem(
                format!("{path}.rollout.stable"),
                "a model with several versions needs rollout.stable",
            );
            return None;
        }
    };
    Some(Model {
        name: super::intern(name),
        name_header: header_value(name),
        versions,
        stable,
    })
}

#[allow(clippy::too_many_arguments)]
fn version(
    cx: &mut Ctx<'_>,
    path: &str,
    name: &str,
    v: raw::Version,
    providers: &BTreeMap<String, Arc<Provider>>,
    model_names: &[String],
    model_name: &str,
    default_timeout: Duration,
) -> Option<Version> {
    if v.targets.is_empty() {
        cx.problem(format!("{path}.targets"), "at least one target is needed");
    }
    let mut targets = Vec::new();
    for (i, t) in v.targets.into_iter().enumerate() {
        let tpath = format!("{path}.targets[{i}]");
        let Some(provider) = providers.get(&t.provider) else {
            let hint = super::closest(&t.provider, providers.keys().map(String::as_str))
                .map(|c| format!(" (did you mean '{c}'?)"))
                .unwrap_or_default();
            cx.problem(
                format!("{tpath}.provider"),
                format!("unknown provider '{}'{hint}", t.provider),
            );
            continue;
        };
        cx.unsupported(format!("{tpath}.version"), t.version.is_some());
        let capabilities = t.capabilities.as_ref().map(|caps| {
            let mut c = Capabilities::default();
            for (k, cap) in caps.iter().enumerate() {
                match cap.as_str() {
                    "tools" => c.tools = true,
                    "json_schema" => c.json_schema = true,
                    "vision" => c.vision = true,
                    other => cx.problem(
                        format!("{tpath}.capabilities[{k}]"),
                        format!("unknown capability '{other}' (tools, json_schema, vision)"),
                    ),
                }
            }
            c
        });
        let stats = cx
            .prior
            .and_then(|p| p.target_stats(&t.provider, &t.model))
            .unwrap_or_default();
        let (price, price_source) =
            super::resolve_price(t.price.map(price), v.price.map(price), provider, &t.model);
        targets.push(Target {
            provider: provider.clone(),
            model_header: header_value(&t.model),
            model: super::intern(&t.model),
            weight: t.weight.unwrap_or(1),
            price,
            price_source,
            rpm: t.rpm,
            tpm: t.tpm,
            max_concurrency: t.max_concurrency,
            context_window: t.context_window.or(v.context_window),
            capabilities,
            stats,
        });
    }
    if !targets.is_empty() && targets.iter().all(|t| t.weight == 0) {
        cx.problem(
            format!("{path}.targets"),
            "at least one target needs a weight above 0",
        );
    }
    let routing = match v.routing.as_deref() {
        None | Some("weighted") => Strategy::Weighted,
        Some("round-robin") => Strategy::RoundRobin,
        Some("least-busy") => Strategy::LeastBusy,
        Some("latency") => Strategy::Latency,
        Some("cost") => Strategy::Cost,
        Some(other) => {
            cx.problem(
                format!("{path}.routing"),
                format!(
                    "unknown routing '{other}' (weighted, round-robin, least-busy, latency, cost)"
                ),
            );
            Strategy::Weighted
        }
    };
    let fallbacks = v.fallbacks.unwrap_or_default();
    for (i, f) in fallbacks.iter().enumerate() {
        if f == model_name {
            cx.problem(
                format!("{path}.fallbacks[{i}]"),
                "a model cannot fall back to itself",
            );
        } else if !model_names.contains(f) {
            let hint = super::closest(f, model_names.iter().map(String::as_str))
                .map(|c| format!(" (did you mean '{c}'?)"))
                .unwrap_or_default();
            cx.problem(
                format!("{path}.fallbacks[{i}]"),
                format!("unknown model '{f}'{hint}"),
            );
        }
    }
    let timeout = cx.duration(
        &format!("{path}.timeout"),
        v.timeout.as_deref(),
        default_timeout,
    );
    let hedge_after = v
        .hedge_after
        .as_deref()
        .map(|h| cx.duration(&format!("{path}.hedge_after"), Some(h), Duration::ZERO))
        .filter(|d| !d.is_zero());
    Some(Version {
        name: super::intern(name),
        name_header: header_value(name),
        targets,
        routing,
        retries: v.retries.unwrap_or(1),
        timeout,
        fallbacks,
        price: v.price.map(price),
        context_window: v.context_window,
        hedge_after,
        cursor: Default::default(),
    })
}

fn price(p: raw::Price) -> Price {
    let input = p.input.unwrap_or(0.0);
    let output = p.output.unwrap_or(0.0);
    Price {
        input,
        output,
        cache_read: p.cache_read.unwrap_or(input),
        cache_write: p.cache_write.unwrap_or(input),
        reasoning: p.reasoning.unwrap_or(output),
    }
}
