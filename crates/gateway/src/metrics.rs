//! Prometheus metrics: every name the gateway exports lives in this file, with its labels.
//!
//! Labels are bounded: configured names only (models, versions, providers, outcomes), never key
//! ids, user ids or prompts; a family that would exceed `MAX_SERIES` series folds the excess
//! into one series labelled `other`.
//!
//! Updates are on the request path, so they take no lock and touch no shared reference count:
//! each thread keeps its own handles to the series it has updated (found by a cheap hash of the
//! label values), and an update is that lookup plus an atomic add on the shared series. The
//! shared map (behind a lock) is only read the first time a thread meets a series, and by
//! `render`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, RwLock};
use std::thread::LocalKey;
use std::time::Duration;

const MAX_SERIES: usize = 2000;

/// Upper bounds (seconds) of the latency histograms' buckets.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0,
];

type Labels = Box<[Box<str>]>;

/// Maps keyed by a hash this file already computed: the map does not hash it again.
type Prehashed = BuildHasherDefault<FxHasher>;

/// Series by the hash of their label values (a bucket holds the rare collisions), each with
/// one shard per thread that updates it (never empty); rendering adds the shards up.
type SeriesMap<T> = HashMap<u64, Vec<(Labels, Vec<Arc<T>>)>, Prehashed>;

/// A thread's handles: by (family id, hash of the label values).
type LocalMap<T> = HashMap<(u64, u64), Vec<(Labels, Arc<T>)>, Prehashed>;

/// A small, fast, non-cryptographic hasher (the Fx hash of rustc): label values are configured
/// names, not attacker-chosen keys, and a collision only costs a comparison.
#[derive(Default, Clone, Copy)]
struct FxHasher(u64);

const FX_K: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FxHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(FX_K);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            // Byte by byte: a `copy_from_slice` of a variable length is a call to `memcpy`
            // (a dozen per request, for a few bytes each).
            let w = rest
                .iter()
                .rev()
                .fold(0u64, |w, &b| (w << 8) | u64::from(b));
            self.add(w);
        }
    }
    #[inline]
    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

/// Gives every family its own id, the key of the per-thread handles (an address could be
/// reused by another `Metrics` after this one is dropped, as in tests).
static NEXT_FAMILY: AtomicU64 = AtomicU64::new(1);

/// Series of one metric by label values: a hash of the values finds the series without
/// allocating; a new series is created once, under the write lock.
///
/// Every thread updates a shard of its own: with one cell per series, each request's dozen
/// atomic adds (request count, three histograms, tokens, cost) took the cell's cache line from
/// the other serving thread's core (in perf at c=64 on two cores, the metrics' share of a
/// request fell from ~0.51 to ~0.37 µs with shards).
struct Family<T> {
    id: u64,
    series: RwLock<SeriesMap<T>>,
}

impl<T> Default for Family<T> {
    fn default() -> Self {
        Family {
            id: NEXT_FAMILY.fetch_add(1, Relaxed),
            series: RwLock::new(HashMap::default()),
        }
    }
}

/// A series type that has per-thread handles.
trait Series: Default + Send + Sync + 'static {
    fn local() -> &'static LocalKey<RefCell<LocalMap<Self>>>;
}

thread_local! {
    static LOCAL_COUNTERS: RefCell<LocalMap<AtomicU64>> = RefCell::new(HashMap::default());
    static LOCAL_HISTOGRAMS: RefCell<LocalMap<Buckets>> = RefCell::new(HashMap::default());
}

impl Series for AtomicU64 {
    fn local() -> &'static LocalKey<RefCell<LocalMap<Self>>> {
        &LOCAL_COUNTERS
    }
}

impl Series for Buckets {
    fn local() -> &'static LocalKey<RefCell<LocalMap<Self>>> {
        &LOCAL_HISTOGRAMS
    }
}

impl<T: Series> Family<T> {
    /// Runs `f` on the series of `labels`, created if new.
    fn with(&self, labels: &[&str], f: impl FnOnce(&T)) {
        f(&self.handle(labels));
    }

    /// The thread's handle to the series of `labels` (its own shard), created if new.
    fn handle(&self, labels: &[&str]) -> Arc<T> {
        let h = hash(labels);
        // The thread's own handle: no lock; its reference count is this thread's alone.
        let looked = T::local().try_with(|local| {
            local
                .borrow()
                .get(&(self.id, h))
                .and_then(|b| b.iter().find(|(k, _)| same(k, labels)))
                .map(|(_, c)| c.clone())
        });
        if let Ok(Some(c)) = looked {
            return c;
        }
        // A shard of this thread's own only if the thread can remember it (its thread-locals
        // may be gone while it exits): otherwise every call would add one.
        let own = looked.is_ok();
        let (cell, folded) = self.cell(h, labels, own);
        // Label sets folded into `other` are not remembered: they would grow the cache
        // without bound.
        if own && !folded {
            let _ = T::local().try_with(|local| {
                local.borrow_mut().entry((self.id, h)).or_default().push((
                    labels.iter().map(|l| Box::<str>::from(*l)).collect(),
                    cell.clone(),
                ));
            });
        }
        cell
    }

    /// A cell of the series of `labels` (hash `h`), the series created if new: a new shard
    /// when `own` (for the calling thread to keep), else its first one; `true` when the
    /// series was folded into `other` because the family is full (its first shard, shared).
    fn cell(&self, h: u64, labels: &[&str], own: bool) -> (Arc<T>, bool) {
        if !own {
            let map = self.series.read().unwrap_or_else(|e| e.into_inner());
            if let Some((_, shards)) = map
                .get(&h)
                .and_then(|b| b.iter().find(|(k, _)| same(k, labels)))
            {
                return (shards[0].clone(), false);
            }
        }
        let mut map = self.series.write().unwrap_or_else(|e| e.into_inner());
        if let Some((_, shards)) = map
            .get_mut(&h)
            .and_then(|b| b.iter_mut().find(|(k, _)| same(k, labels)))
        {
            if own {
                let c = Arc::<T>::default();
                shards.push(c.clone());
                return (c, false);
            }
            return (shards[0].clone(), false);
        }
        let total: usize = map.values().map(Vec::len).sum();
        let folded = total >= MAX_SERIES;
        let (h, key): (u64, Labels) = if folded {
            let other: Vec<&str> = labels.iter().map(|_| "other").collect();
            (
                hash(&other),
                other.iter().map(|l| Box::<str>::from(*l)).collect(),
            )
        } else {
            (h, labels.iter().map(|l| Box::<str>::from(*l)).collect())
        };
        let bucket = map.entry(h).or_default();
        if let Some((_, shards)) = bucket.iter().find(|(k, _)| *k == key) {
            return (shards[0].clone(), folded);
        }
        let c = Arc::<T>::default();
        bucket.push((key, vec![c.clone()]));
        (c, folded)
    }

    /// Every series with its shards.
    fn each(&self, mut f: impl FnMut(&Labels, &[Arc<T>])) {
        let map = self.series.read().unwrap_or_else(|e| e.into_inner());
        for (k, v) in map.values().flatten() {
            f(k, v);
        }
    }
}

fn hash(labels: &[&str]) -> u64 {
    let mut h = FxHasher::default();
    h.add(labels.len() as u64);
    for l in labels {
        h.write(l.as_bytes());
        // The length separates ["ab", "c"] from ["a", "bc"].
        h.add(l.len() as u64);
    }
    h.finish()
}

/// A family of counters (or float sums stored as f64 bits) by label values.
#[derive(Default)]
pub struct Counter {
    family: Family<AtomicU64>,
}

impl Counter {
    pub fn inc(&self, labels: &[&str]) {
        self.add(labels, 1);
    }

    pub fn add(&self, labels: &[&str], n: u64) {
        if n > 0 {
            self.family.with(labels, |c| {
                c.fetch_add(n, Relaxed);
            });
        }
    }

    /// Adds to a float total (kept as f64 bits). Requests' costs go through
    /// [`Metrics::finished`]; this per-family update is what its test compares with.
    #[cfg(test)]
    pub fn add_f64(&self, labels: &[&str], v: f64) {
        if v > 0.0 && v.is_finite() {
            self.family.with(labels, |c| add_f64(c, v));
        }
    }

    fn render(
        &self,
        out: &mut String,
        name: &str,
        help: &str,
        kind: &str,
        names: &[&str],
        float: bool,
    ) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        self.family.each(|labels, shards| {
            let _ = write!(out, "{name}");
            write_labels(out, names, labels, None);
            if float {
                let v: f64 = shards.iter().map(|c| f64::from_bits(c.load(Relaxed))).sum();
                let _ = writeln!(out, " {v}");
            } else {
                let v = shards
                    .iter()
                    .fold(0u64, |v, c| v.wrapping_add(c.load(Relaxed)));
                let _ = writeln!(out, " {v}");
            }
        });
    }
}

/// A family of histograms by label values.
#[derive(Default)]
pub struct Histogram {
    family: Family<Buckets>,
}

#[derive(Default)]
struct Buckets {
    counts: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_us: AtomicU64,
}

fn add_f64(c: &AtomicU64, v: f64) {
    let _ = c.fetch_update(Relaxed, Relaxed, |b| {
        Some((f64::from_bits(b) + v).to_bits())
    });
}

impl Buckets {
    fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.counts[i].fetch_add(1, Relaxed);
        }
        self.count.fetch_add(1, Relaxed);
        self.sum_us
            .fetch_add(d.as_micros().min(u128::from(u64::MAX)) as u64, Relaxed);
    }
}

impl Histogram {
    /// Requests' durations go through [`Metrics::finished`]; this per-family update is what
    /// its test compares with.
    #[cfg(test)]
    pub fn observe(&self, labels: &[&str], d: Duration) {
        self.family.with(labels, |cell| cell.observe(d));
    }

    fn render(&self, out: &mut String, name: &str, help: &str, names: &[&str]) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        self.family.each(|labels, shards| {
            let load = |f: &dyn Fn(&Buckets) -> &AtomicU64| {
                shards.iter().map(|b| f(b).load(Relaxed)).sum::<u64>()
            };
            let mut cumulative = 0;
            for (i, le) in BUCKETS.iter().enumerate() {
                cumulative += load(&|b| &b.counts[i]);
                let _ = write!(out, "{name}_bucket");
                write_labels(out, names, labels, Some(&le.to_string()));
                let _ = writeln!(out, " {cumulative}");
            }
            let count = load(&|b| &b.count);
            let _ = write!(out, "{name}_bucket");
            write_labels(out, names, labels, Some("+Inf"));
            let _ = writeln!(out, " {count}");
            let _ = write!(out, "{name}_sum");
            write_labels(out, names, labels, None);
            let _ = writeln!(out, " {}", load(&|b| &b.sum_us) as f64 / 1e6);
            let _ = write!(out, "{name}_count");
            write_labels(out, names, labels, None);
            let _ = writeln!(out, " {count}");
        });
    }
}

fn same(k: &[Box<str>], labels: &[&str]) -> bool {
    k.len() == labels.len() && k.iter().zip(labels).all(|(a, b)| &**a == *b)
}

fn write_labels(out: &mut String, names: &[&str], values: &[Box<str>], le: Option<&str>) {
    if names.is_empty() && le.is_none() {
        return;
    }
    out.push('{');
    let mut first = true;
    for (n, v) in names.iter().zip(values.iter()) {
        if !first {
            out.push(',');
        }
        first = false;
        let _ = write!(out, "{n}=\"");
        escape(out, v);
        out.push('"');
    }
    if let Some(le) = le {
        if !first {
            out.push(',');
        }
        let _ = write!(out, "le=\"{le}\"");
    }
    out.push('}');
}

fn escape(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Every metric of SPEC §6 that is measured on the request path.
#[derive(Default)]
pub struct Metrics {
    pub requests: Counter,
    pub request_duration: Histogram,
    pub time_to_first_token: Histogram,
    pub overhead: Histogram,
    pub upstream_attempts: Counter,
    pub fallbacks: Counter,
    pub tokens: Counter,
    pub cost_usd: Counter,
    pub rate_limited: Counter,
    pub usage_records_dropped: AtomicU64,
    /// Set on the flusher's tick, for a writer that is not the installed one (tests); the
    /// installed writer's depth is read live when the metrics are rendered, so `send` does not
    /// write this line, shared by every serving thread, per request.
    pub usage_queue_depth: AtomicU64,
    /// Spans lost: the export queue was full or the collector did not take them.
    pub trace_spans_dropped: AtomicU64,
    pub trace_spans_exported: AtomicU64,
    /// Bytes of usage records waiting in the on-disk spool for the store (0 while it keeps up).
    pub usage_spool_bytes: AtomicU64,
}

/// A gauge computed when scraped (target health, rollout split).
pub struct Gauge<'a> {
    pub labels: Vec<(&'static str, &'a str)>,
    pub value: f64,
}

/// What a finished request adds to the metrics ([`Metrics::finished`]).
pub struct Finished<'a> {
    pub model: &'a str,
    pub version: &'a str,
    pub provider: &'a str,
    pub status: &'static str,
    pub latency: Duration,
    pub first_token: Option<Duration>,
    pub overhead: Duration,
    /// By kind, in the order of [`TOKEN_KINDS`].
    pub tokens: [u64; 5],
    pub cost: Option<f64>,
}

/// The `kind` label of `switchyard_tokens_total`.
pub const TOKEN_KINDS: [&str; 5] = ["input", "output", "cache_read", "cache_write", "reasoning"];

/// A thread's handles to every series a request of one (model, version, provider) updates:
/// one lookup per finished request instead of one per metric (six, each hashing and comparing
/// its label values). Each handle is taken on first use, so a series appears when it is first
/// updated, as with the families' own lookups.
#[derive(Default)]
struct RequestSeries {
    requests: Vec<(&'static str, Arc<AtomicU64>)>,
    duration: Option<Arc<Buckets>>,
    first_token: Option<Arc<Buckets>>,
    overhead: Option<Arc<Buckets>>,
    tokens: [Option<Arc<AtomicU64>>; 5],
    cost: Option<Arc<AtomicU64>>,
}

/// How many (model, version, provider) a thread keeps handles for; requests of others (names
/// that come with requests, as direct routes' models do, can be many) take the families' own
/// lookups.
const MAX_LOCAL_REQUEST_SERIES: usize = 256;

thread_local! {
    /// By (the metrics' id, hash of model, version and provider), with those names.
    static LOCAL_REQUESTS: RefCell<LocalRequests> = RefCell::new(HashMap::default());
}

type LocalRequests = HashMap<(u64, u64), Vec<([Box<str>; 3], RequestSeries)>, Prehashed>;

impl RequestSeries {
    fn update(&mut self, m: &Metrics, f: &Finished<'_>) {
        let [model, version, provider] = [f.model, f.version, f.provider];
        let requests = match self.requests.iter().position(|(s, _)| *s == f.status) {
            Some(i) => &self.requests[i].1,
            None => {
                let c = m
                    .requests
                    .family
                    .handle(&[model, version, provider, f.status]);
                self.requests.push((f.status, c));
                &self.requests[self.requests.len() - 1].1
            }
        };
        requests.fetch_add(1, Relaxed);
        self.duration
            .get_or_insert_with(|| {
                m.request_duration
                    .family
                    .handle(&[model, version, provider])
            })
            .observe(f.latency);
        if let Some(t) = f.first_token {
            self.first_token
                .get_or_insert_with(|| m.time_to_first_token.family.handle(&[model, provider]))
                .observe(t);
        }
        self.overhead
            .get_or_insert_with(|| m.overhead.family.handle(&[]))
            .observe(f.overhead);
        for ((slot, kind), n) in self.tokens.iter_mut().zip(TOKEN_KINDS).zip(f.tokens) {
            if n > 0 {
                slot.get_or_insert_with(|| m.tokens.family.handle(&[model, provider, kind]))
                    .fetch_add(n, Relaxed);
            }
        }
        if let Some(c) = f.cost.filter(|c| *c > 0.0 && c.is_finite()) {
            add_f64(
                self.cost
                    .get_or_insert_with(|| m.cost_usd.family.handle(&[model, provider])),
                c,
            );
        }
    }
}

impl Metrics {
    /// Counts a finished request: `switchyard_requests_total`, its duration, time to first
    /// token and overhead, its tokens and cost.
    pub fn finished(&self, f: &Finished<'_>) {
        let labels = [f.model, f.version, f.provider];
        let key = (self.requests.family.id, hash(&labels));
        let kept = LOCAL_REQUESTS.try_with(|local| {
            let mut local = local.borrow_mut();
            let room = local.len() < MAX_LOCAL_REQUEST_SERIES;
            if !room && !local.contains_key(&key) {
                return false;
            }
            let kept = local.entry(key).or_default();
            let i = match kept.iter().position(|(k, _)| same(k, &labels)) {
                Some(i) => i,
                None if room => {
                    kept.push((labels.map(Box::from), RequestSeries::default()));
                    kept.len() - 1
                }
                None => return false,
            };
            kept[i].1.update(self, f);
            true
        });
        if kept != Ok(true) {
            RequestSeries::default().update(self, f);
        }
    }

    /// The Prometheus text exposition; `healthy` are the `switchyard_target_healthy` series.
    pub fn render(&self, healthy: &[Gauge<'_>]) -> String {
        let mut out = String::with_capacity(4096);
        self.requests.render(
            &mut out,
            "switchyard_requests_total",
            "Requests answered, by served model, version, provider and status.",
            "counter",
            &["model", "version", "provider", "status"],
            false,
        );
        self.request_duration.render(
            &mut out,
            "switchyard_request_duration_seconds",
            "Time from request to the end of the answer.",
            &["model", "version", "provider"],
        );
        self.time_to_first_token.render(
            &mut out,
            "switchyard_time_to_first_token_seconds",
            "Time from request to the first token (streams) or the answer.",
            &["model", "provider"],
        );
        self.overhead.render(
            &mut out,
            "switchyard_overhead_seconds",
            "The gateway's own time: latency minus time spent waiting on upstreams.",
            &[],
        );
        self.upstream_attempts.render(
            &mut out,
            "switchyard_upstream_attempts_total",
            "Attempts sent to providers, by outcome.",
            "counter",
            &["provider", "outcome"],
            false,
        );
        self.fallbacks.render(
            &mut out,
            "switchyard_fallbacks_total",
            "Requests served by a fallback model, by the model that failed.",
            "counter",
            &["model"],
            false,
        );
        self.tokens.render(
            &mut out,
            "switchyard_tokens_total",
            "Tokens, by kind.",
            "counter",
            &["model", "provider", "kind"],
            false,
        );
        self.cost_usd.render(
            &mut out,
            "switchyard_cost_usd_total",
            "Cost in USD.",
            "counter",
            &["model", "provider"],
            true,
        );
        self.rate_limited.render(
            &mut out,
            "switchyard_rate_limited_total",
            "Requests refused by a rate limit or budget, by scope.",
            "counter",
            &["scope"],
            false,
        );
        let _ = writeln!(out, "# HELP switchyard_target_healthy 1 when the target's circuit breaker is closed.\n# TYPE switchyard_target_healthy gauge");
        for g in healthy {
            let _ = write!(out, "switchyard_target_healthy{{");
            for (i, (k, v)) in g.labels.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let _ = write!(out, "{k}=\"");
                escape(&mut out, v);
                out.push('"');
            }
            let _ = writeln!(out, "}} {}", g.value);
        }
        let _ = writeln!(out, "# HELP switchyard_usage_queue_depth Usage records waiting to be written.\n# TYPE switchyard_usage_queue_depth gauge\nswitchyard_usage_queue_depth {}", crate::usage::installed().map_or_else(|| self.usage_queue_depth.load(Relaxed), |w| w.queue_depth() as u64));
        let _ = writeln!(out, "# HELP switchyard_usage_records_dropped_total Usage records lost (must stay 0).\n# TYPE switchyard_usage_records_dropped_total counter\nswitchyard_usage_records_dropped_total {}", self.usage_records_dropped.load(Relaxed));
        let _ = writeln!(out, "# HELP switchyard_trace_spans_exported_total Spans the OTLP collector accepted.\n# TYPE switchyard_trace_spans_exported_total counter\nswitchyard_trace_spans_exported_total {}", self.trace_spans_exported.load(Relaxed));
        let _ = writeln!(out, "# HELP switchyard_trace_spans_dropped_total Spans lost: the export queue was full or the collector did not take them.\n# TYPE switchyard_trace_spans_dropped_total counter\nswitchyard_trace_spans_dropped_total {}", self.trace_spans_dropped.load(Relaxed));
        let _ = writeln!(out, "# HELP switchyard_usage_spool_bytes Usage records waiting on disk for the store to come back, in bytes.\n# TYPE switchyard_usage_spool_bytes gauge\nswitchyard_usage_spool_bytes {}", self.usage_spool_bytes.load(Relaxed));
        out
    }
}

/// The process-wide metrics.
pub fn global() -> &'static Metrics {
    static M: std::sync::OnceLock<Metrics> = std::sync::OnceLock::new();
    M.get_or_init(Metrics::default)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        m.requests.inc(&["chat", "default", "up", "200"]);
        m.requests.inc(&["chat", "default", "up", "200"]);
        m.cost_usd.add_f64(&["chat", "up"], 0.25);
        m.cost_usd.add_f64(&["chat", "up"], 0.5);
        m.request_duration
            .observe(&["chat", "default", "up"], Duration::from_millis(3));
        let text = m.render(&[Gauge {
            labels: vec![("provider", "up"), ("target", "gpt\"x")],
            value: 1.0,
        }]);
        assert!(text.contains("switchyard_requests_total{model=\"chat\",version=\"default\",provider=\"up\",status=\"200\"} 2"), "{text}");
        assert!(
            text.contains("switchyard_cost_usd_total{model=\"chat\",provider=\"up\"} 0.75"),
            "{text}"
        );
        assert!(text.contains("switchyard_request_duration_seconds_bucket{model=\"chat\",version=\"default\",provider=\"up\",le=\"0.005\"} 1"), "{text}");
        assert!(text.contains("switchyard_request_duration_seconds_bucket{model=\"chat\",version=\"default\",provider=\"up\",le=\"0.0025\"} 0"), "{text}");
        assert!(
            text.contains("switchyard_target_healthy{provider=\"up\",target=\"gpt\\\"x\"} 1"),
            "{text}"
        );
        assert!(text.contains("switchyard_usage_records_dropped_total 0"));
    }

    #[test]
    fn each_registry_counts_its_own_updates() {
        // Per-thread handles are keyed by family, not by address: a registry made after another
        // one was dropped (at the same address, likely) starts from zero.
        for _ in 0..3 {
            let m = Metrics::default();
            m.requests.inc(&["chat", "v", "p", "200"]);
            m.requests.add(&["chat", "v", "p", "200"], 2);
            m.request_duration
                .observe(&["chat", "v", "p"], Duration::from_millis(1));
            let text = m.render(&[]);
            assert!(
                text.contains("switchyard_requests_total{model=\"chat\",version=\"v\",provider=\"p\",status=\"200\"} 3"),
                "{text}"
            );
            assert!(text.contains("switchyard_request_duration_seconds_count{model=\"chat\",version=\"v\",provider=\"p\"} 1"), "{text}");
        }
        // Other threads update the same series, each its own shard: rendering adds them up.
        let m = std::sync::Arc::new(Metrics::default());
        m.fallbacks.inc(&["a"]);
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let m = m.clone();
                std::thread::spawn(move || {
                    for _ in 0..100 {
                        m.fallbacks.inc(&["a"]);
                        m.cost_usd.add_f64(&["a", "p"], 0.25);
                        m.request_duration
                            .observe(&["a", "v", "p"], Duration::from_millis(2));
                    }
                    m.request_duration
                        .observe(&["a", "v", "p"], Duration::from_secs(1));
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let text = m.render(&[]);
        assert!(
            text.contains("switchyard_fallbacks_total{model=\"a\"} 401"),
            "{text}"
        );
        assert!(
            text.contains("switchyard_cost_usd_total{model=\"a\",provider=\"p\"} 100"),
            "{text}"
        );
        for (le, n) in [
            ("0.001", 0),
            ("0.0025", 400),
            ("0.5", 400),
            ("1", 404),
            ("+Inf", 404),
        ] {
            assert!(
                text.contains(&format!("switchyard_request_duration_seconds_bucket{{model=\"a\",version=\"v\",provider=\"p\",le=\"{le}\"}} {n}\n")),
                "{le}: {text}"
            );
        }
        assert!(
            text.contains("switchyard_request_duration_seconds_sum{model=\"a\",version=\"v\",provider=\"p\"} 4.8\n"),
            "{text}"
        );
        // One series each, not one per thread.
        assert_eq!(text.matches("switchyard_fallbacks_total{").count(), 1);
    }

    /// A finished request, as `usage::emit` reports one.
    fn finished<'a>(model: &'a str, status: &'static str, tokens: [u64; 5]) -> Finished<'a> {
        Finished {
            model,
            version: "v",
            provider: "p",
            status,
            latency: Duration::from_millis(3),
            first_token: (status == "200").then(|| Duration::from_millis(2)),
            overhead: Duration::from_micros(300),
            tokens,
            cost: (tokens[0] > 0).then_some(0.5),
        }
    }

    /// The series of `finished` requests, through the thread's kept handles and (past
    /// `MAX_LOCAL_REQUEST_SERIES` models) through the families' own lookups, render the same as
    /// each family updated on its own; a series appears only once it is updated.
    #[test]
    fn finished_requests_update_the_same_series_as_each_family() {
        let models: Vec<String> = (0..MAX_LOCAL_REQUEST_SERIES + 20)
            .map(|i| format!("m{i}"))
            .collect();
        let bundled = Metrics::default();
        let each = Metrics::default();
        for round in 0..3 {
            for (i, model) in models.iter().enumerate() {
                let status = if (i + round) % 3 == 0 { "429" } else { "200" };
                let tokens = if status == "200" {
                    [7, 11, 0, 0, i as u64 % 2]
                } else {
                    [0; 5]
                };
                let f = finished(model, status, tokens);
                bundled.finished(&f);
                each.requests
                    .inc(&[f.model, f.version, f.provider, f.status]);
                each.request_duration
                    .observe(&[f.model, f.version, f.provider], f.latency);
                if let Some(t) = f.first_token {
                    each.time_to_first_token.observe(&[f.model, f.provider], t);
                }
                each.overhead.observe(&[], f.overhead);
                for (kind, n) in TOKEN_KINDS.iter().zip(f.tokens) {
                    each.tokens.add(&[f.model, f.provider, kind], n);
                }
                if let Some(c) = f.cost {
                    each.cost_usd.add_f64(&[f.model, f.provider], c);
                }
            }
        }
        let sorted = |text: String| {
            let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
            lines.sort();
            lines
        };
        let (got, want) = (sorted(bundled.render(&[])), sorted(each.render(&[])));
        assert_eq!(got, want);
        let text = got.join("\n");
        assert!(
            text.contains("switchyard_requests_total{model=\"m1\",version=\"v\",provider=\"p\",status=\"200\"} 2"),
            "{text}"
        );
        assert!(
            text.contains(
                "switchyard_tokens_total{model=\"m275\",provider=\"p\",kind=\"input\"} 14"
            ),
            "{text}"
        );
        assert!(
            text.contains("switchyard_overhead_seconds_count 828"),
            "{text}"
        );
        assert!(
            !text.contains("kind=\"cache_read\""),
            "never-updated series stay out: {text}"
        );
        assert!(
            text.contains("switchyard_cost_usd_total{model=\"m0\",provider=\"p\"} 1"),
            "{text}"
        );
    }

    #[test]
    fn series_are_bounded() {
        let m = Metrics::default();
        for i in 0..MAX_SERIES + 50 {
            m.fallbacks.inc(&[&format!("m{i}")]);
        }
        let text = m.render(&[]);
        assert!(
            text.contains("switchyard_fallbacks_total{model=\"other\"} 50"),
            "series beyond the cap fold into 'other'"
        );
    }
}
