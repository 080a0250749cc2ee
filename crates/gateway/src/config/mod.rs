//! Configuration: read the file, resolve `${VAR}`, parse (`raw`), validate into a `Config` whose
//! invariants hold.
//!
//! Only this module reads the environment. A `Config` is immutable once built; a reload builds a
//! new one and swaps it in whole (see `app`). Every problem is reported with its YAML path and
//! line, all at once where possible, for `switchyard check`.

mod env;
mod locate;
mod raw;
pub mod units;
mod validate;
mod zero;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue};

pub(crate) use validate::header_value;
pub use validate::{Bedrock, Mock, ProviderKind};

/// A validated configuration.
#[derive(Debug)]
pub struct Config {
    /// Where it was read from (`None` for the zero-config default).
    pub path: Option<PathBuf>,
    pub listen: String,
    pub admin_key: Option<Secret>,
    pub auth: Auth,
    pub server: Server,
    pub telemetry: Telemetry,
    pub providers: BTreeMap<String, Arc<Provider>>,
    pub models: HashMap<String, Arc<Model>>,
    pub keys: Vec<Key>,
    /// `provider/model` names route straight to that provider (zero-config and
    /// `providers_from_env`).
    pub direct_routes: bool,
    pub store: Option<String>,
    pub redis: Option<Secret>,
    pub redis_prefix: String,
    /// What happens when Redis is unreachable: refuse (default) or admit without limits.
    pub redis_failure: crate::limits::FailureMode,
    /// Live state and resolved price of `provider/model` direct-route targets, created on
    /// first use (bounded).
    pub direct_state: std::sync::Mutex<HashMap<(String, String), DirectTarget>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    Keys,
    None,
}

#[derive(Debug, Clone)]
pub struct Server {
    pub max_body_bytes: usize,
    pub request_timeout: Duration,
    pub usage_log_bodies: bool,
    /// Whether a usage record is written per request (read at start).
    pub usage_records: bool,
    pub header_read_timeout: Duration,
    /// A connection with no request in flight is closed after this long.
    pub idle_timeout: Duration,
    pub shutdown_grace: Duration,
}

#[derive(Debug, Clone, Default)]
pub struct Telemetry {
    pub json_logs: bool,
    pub log_level: Option<String>,
    /// Where traces go; `None`: no spans are built at all.
    pub otlp: Option<Otlp>,
}

/// An OTLP/HTTP trace exporter's settings.
#[derive(Debug, Clone)]
pub struct Otlp {
    /// The base URL as configured, without a trailing slash.
    pub endpoint: String,
    /// Where spans are POSTed: `{endpoint}/v1/traces` (or the endpoint itself when it already
    /// ends with `/v1/traces`).
    pub traces_url: http::Uri,
    /// Sent with every export; the values are marked sensitive (never logged).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub service_name: String,
}

/// A secret string (provider credential, key, admin key): never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Arc<str>);

impl Secret {
    pub fn new(s: impl Into<Arc<str>>) -> Self {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

pub use store::usage::Name;

/// `name` as a [`Name`] kept for the rest of the process: the names of providers, models,
/// versions and upstream models, which every request's usage record and metrics repeat, are
/// kept once, so a request borrows them rather than copying each into a `String` (and the
/// usage writer frees nothing of them). Each distinct name is kept once however often the
/// configuration is reloaded; names that come with requests (`provider/model` direct routes)
/// are never interned.
pub fn intern(name: &str) -> Name {
    use std::collections::HashSet;
    use std::sync::{Mutex, OnceLock, PoisonError};
    static NAMES: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    let mut names = NAMES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if let Some(&kept) = names.get(name) {
        return Name::Borrowed(kept);
    }
    let kept: &'static str = Box::leak(name.to_owned().into_boxed_str());
    names.insert(kept);
    Name::Borrowed(kept)
}

/// One upstream endpoint.
#[derive(Debug)]
pub struct Provider {
    pub name: Name,
    pub kind: ProviderKind,
    /// Base URL without a trailing slash (for OpenAI-format providers it includes `/v1`).
    pub base_url: String,
    pub api_key: Option<Secret>,
    /// The credential header, built once (marked sensitive so it is never logged).
    pub auth_header: Option<(HeaderName, HeaderValue)>,
    pub extra_headers: Vec<(HeaderName, HeaderValue)>,
    /// This provider's name as a response header value.
    pub name_header: HeaderValue,
}

/// A public model name and its versions.
#[derive(Debug)]
pub struct Model {
    pub name: Name,
    pub name_header: HeaderValue,
    pub versions: BTreeMap<String, Arc<Version>>,
    /// The version that serves when the client pins none (the rollout's `stable`).
    pub stable: String,
}

#[derive(Debug)]
pub struct Version {
    pub name: Name,
    pub name_header: HeaderValue,
    pub targets: Vec<Target>,
    pub routing: Strategy,
    pub retries: u32,
    /// Per attempt; for streams, until the response headers arrive.
    pub timeout: Duration,
    pub fallbacks: Vec<String>,
    pub price: Option<Price>,
    pub context_window: Option<u64>,
    /// Send a second attempt to another target when the first has not answered by then.
    pub hedge_after: Option<Duration>,
    /// Round-robin position.
    pub cursor: std::sync::atomic::AtomicUsize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    Weighted,
    RoundRobin,
    LeastBusy,
    Latency,
    Cost,
}

impl Strategy {
    /// The name used in the configuration file.
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Weighted => "weighted",
            Strategy::RoundRobin => "round-robin",
            Strategy::LeastBusy => "least-busy",
            Strategy::Latency => "latency",
            Strategy::Cost => "cost",
        }
    }
}

#[derive(Debug)]
pub struct Target {
    pub provider: Arc<Provider>,
    pub model: Name,
    pub model_header: HeaderValue,
    pub weight: u32,
    /// USD per million tokens, resolved when the configuration is built: the target's own
    /// `price:`, else its version's (or model's), else the built-in catalogue's list price for
    /// this provider and upstream model, else none (the cost is then unknown, not 0).
    pub price: Option<Price>,
    pub price_source: PriceSource,
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
    pub max_concurrency: Option<u64>,
    /// The largest prompt + completion the upstream model accepts, in tokens.
    pub context_window: Option<u64>,
    /// What the target can do; `None` means undeclared (assumed capable).
    pub capabilities: Option<Capabilities>,
    /// Live state: in flight, latency, breaker, own limits. Shared across reloads.
    pub stats: Arc<TargetStats>,
}

pub use crate::routing::health::TargetStats;

/// What is remembered of a `provider/model` direct-route target.
#[derive(Debug, Clone)]
pub struct DirectTarget {
    pub stats: Arc<TargetStats>,
    pub price: Option<Price>,
    pub price_source: PriceSource,
}

/// Request features a target may or may not support.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Capabilities {
    pub tools: bool,
    pub json_schema: bool,
    pub vision: bool,
}

/// Where a target's price comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PriceSource {
    /// `price:` on the target.
    Target,
    /// `price:` on the version or the model.
    Version,
    /// The built-in catalogue (`cost::catalogue`).
    Catalogue,
    /// No price is known: costs are `null`.
    None,
}

impl PriceSource {
    pub fn name(self) -> &'static str {
        match self {
            PriceSource::Target => "target",
            PriceSource::Version => "version",
            PriceSource::Catalogue => "catalogue",
            PriceSource::None => "none",
        }
    }
}

/// A target's price as this configuration resolves it (see [`Target::price`]).
pub fn resolve_price(
    target: Option<Price>,
    version: Option<Price>,
    provider: &Provider,
    model: &str,
) -> (Option<Price>, PriceSource) {
    if let Some(p) = target {
        return (Some(p), PriceSource::Target);
    }
    if let Some(p) = version {
        return (Some(p), PriceSource::Version);
    }
    match crate::cost::catalogue::lookup(&provider.kind, model) {
        Some(p) => (Some(p), PriceSource::Catalogue),
        None => (None, PriceSource::None),
    }
}

/// USD per one million tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Price {
    pub input: f64,
    pub output: f64,
    pub cache_read: f64,
    pub cache_write: f64,
    pub reasoning: f64,
}

/// A virtual key declared in the configuration file.
#[derive(Debug, Clone)]
pub struct Key {
    pub name: String,
    /// SHA-256 of the secret; the secret itself is not kept.
    pub hash: [u8; 32],
    /// The first characters of the secret, for people to recognise the key.
    pub prefix: String,
    pub models: Vec<String>,
    pub limits: crate::limits::Limits,
    /// Unix milliseconds.
    pub expires_at: Option<i64>,
}

/// Every problem found in a configuration, each with its YAML path and line.
#[derive(Debug)]
pub struct Error {
    pub origin: String,
    pub problems: Vec<Problem>,
}

#[derive(Debug, Clone)]
pub struct Problem {
    pub path: String,
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            match p.line {
                Some(l) => write!(f, "{}:{l}: ", self.origin)?,
                None => write!(f, "{}: ", self.origin)?,
            }
            if !p.path.is_empty() {
                write!(f, "{}: ", p.path)?;
            }
            f.write_str(&p.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}

/// The process environment, the only source of `${VAR}` values in production.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// `-c FILE`, else `SWITCHYARD_CONFIG`, else `./switchyard.yaml` if it exists, else `None`
/// (the zero-config default).
pub fn locate(cli: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = cli {
        return Some(p.to_path_buf());
    }
    if let Some(p) = process_env("SWITCHYARD_CONFIG").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let default = PathBuf::from("switchyard.yaml");
    default.exists().then_some(default)
}

/// Reads and validates the file at `path`.
pub fn load(path: &Path) -> Result<Config, Error> {
    load_with(path, None)
}

/// Like `load`, keeping the live state (health, latency) of targets that `prior` also had.
pub fn load_with(path: &Path, prior: Option<&Config>) -> Result<Config, Error> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| Error {
        origin: origin.clone(),
        problems: vec![Problem {
            path: String::new(),
            line: None,
            message: format!("cannot read the file: {e}"),
        }],
    })?;
    let mut config = parse_with(&text, &origin, &process_env, prior)?;
    config.path = Some(path.to_path_buf());
    Ok(config)
}

/// Validates configuration text; `env` resolves `${VAR}`.
pub fn parse(
    text: &str,
    origin: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, Error> {
    parse_with(text, origin, env, None)
}

pub fn parse_with(
    text: &str,
    origin: &str,
    env: &dyn Fn(&str) -> Option<String>,
    prior: Option<&Config>,
) -> Result<Config, Error> {
    let fail = |problems: Vec<Problem>| Error {
        origin: origin.to_string(),
        problems,
    };
    let text = env::interpolate(text, env).map_err(|errs| {
        fail(
            errs.into_iter()
                .map(|(line, message)| Problem {
                    path: String::new(),
                    line: Some(line),
                    message,
                })
                .collect(),
        )
    })?;
    let lines = locate::Lines::index(&text);
    let file = parse_raw(&text, &lines).map_err(|p| fail(vec![p]))?;
    validate::validate(file, &lines, env, prior).map_err(fail)
}

/// The zero-config default: every provider whose key is in the environment, the built-in mock,
/// `provider/model` names.
pub fn zero_config() -> Config {
    zero::config(&process_env)
}

fn parse_raw(text: &str, lines: &locate::Lines) -> Result<raw::File, Problem> {
    if text.trim().is_empty() {
        return Ok(raw::File::default());
    }
    let de = serde_yaml::Deserializer::from_str(text);
    serde_path_to_error::deserialize::<_, raw::File>(de).map_err(|err| {
        let path = err.path().to_string();
        let path = if path == "." { String::new() } else { path };
        let inner = err.inner();
        let mut message = inner.to_string();
        // serde_yaml appends " at line L column C"; the line is reported separately.
        if let Some(cut) = message.find(" at line ") {
            message.truncate(cut);
        }
        // serde_yaml prefixes its own path ("models.chat: unknown field …"); ours is reported apart.
        if let Some((prefix, rest)) = message.split_once(": ") {
            if !prefix.contains(' ') && !rest.is_empty() {
                message = rest.to_string();
            }
        }
        let line = inner
            .location()
            .map(|l| l.line())
            .or_else(|| lines.of(&path));
        if let Some(hint) = did_you_mean(&message) {
            message.push_str(&hint);
        }
        Problem {
            path,
            line,
            message,
        }
    })
}

/// For serde's "unknown field `x`, expected one of `a`, `b`", a " (did you mean `a`?)" hint.
fn did_you_mean(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    let (unknown, expected) = rest.split_once('`')?;
    let best = expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(|cand| (strsim::damerau_levenshtein(unknown, cand), cand))
        .filter(|(d, cand)| *d <= 2.max(cand.len() / 3))
        .min_by_key(|(d, _)| *d)?;
    Some(format!(" (did you mean `{}`?)", best.1))
}

/// Closest name among `candidates` to `name`, for "did you mean" hints on references.
pub(crate) fn closest<'a>(
    name: &str,
    candidates: impl Iterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .map(|c| (strsim::damerau_levenshtein(name, c), c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

impl Config {
    /// Finds a model by its public name; `provider/model` when direct routes are on.
    pub fn model(&self, name: &str) -> Option<Arc<Model>> {
        if let Some(m) = self.models.get(name) {
            return Some(m.clone());
        }
        None
    }

    /// The live state of the target (provider, upstream model), if this configuration has it.
    pub fn target_stats(&self, provider: &str, model: &str) -> Option<Arc<TargetStats>> {
        self.models
            .values()
            .flat_map(|m| m.versions.values())
            .flat_map(|v| &v.targets)
            .find_map(|t| {
                (t.provider.name == provider && t.model == model).then(|| t.stats.clone())
            })
    }

    /// The live state and price of a direct-route target, worked out on its first request and
    /// remembered (at most 4096; beyond that each request works them out again).
    pub fn direct_target(&self, provider: &Provider, model: &str) -> DirectTarget {
        let mut map = self.direct_state.lock().unwrap_or_else(|e| e.into_inner());
        let key = (provider.name.to_string(), model.to_string());
        if let Some(t) = map.get(&key) {
            return t.clone();
        }
        let (price, price_source) = resolve_price(None, None, provider, model);
        let t = DirectTarget {
            stats: Arc::default(),
            price,
            price_source,
        };
        if map.len() < 4096 {
            map.insert(key, t.clone());
        }
        t
    }

    /// For `provider/model` names: the provider and the upstream model.
    pub fn direct<'a>(&'a self, name: &'a str) -> Option<(&'a Arc<Provider>, &'a str)> {
        if !self.direct_routes {
            return None;
        }
        let (p, m) = name.split_once('/')?;
        if m.is_empty() {
            return None;
        }
        self.providers.get(p).map(|p| (p, m))
    }
}

#[cfg(test)]
mod tests;
