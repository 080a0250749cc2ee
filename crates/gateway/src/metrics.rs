//! Prometheus metrics: every name the gateway exports lives in this file, with its labels.
//!
//! Labels are bounded: configured names only (models, versions, providers, outcomes), never key
//! ids, user ids or prompts; a family that would exceed `MAX_SERIES` series folds the excess
//! into one series labelled `other`. Updates are a read-locked map lookup and an atomic add.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, RwLock};
use std::time::Duration;

const MAX_SERIES: usize = 2000;

/// Upper bounds (seconds) of the latency histograms' buckets.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0,
];

type Labels = Box<[Box<str>]>;

/// Series by the hash of their label values (a bucket holds the rare collisions).
type SeriesMap<T> = HashMap<u64, Vec<(Labels, Arc<T>)>>;

/// Series of one metric by label values: a hash of the values finds the series without
/// allocating; a new series is created once, under the write lock.
struct Family<T> {
    series: RwLock<SeriesMap<T>>,
}

impl<T> Default for Family<T> {
    fn default() -> Self {
        Family {
            series: RwLock::new(HashMap::new()),
        }
    }
}

impl<T: Default> Family<T> {
    fn cell(&self, labels: &[&str]) -> Arc<T> {
        let h = hash(labels);
        {
            let map = self.series.read().unwrap_or_else(|e| e.into_inner());
            if let Some(c) = map
                .get(&h)
                .and_then(|b| b.iter().find(|(k, _)| same(k, labels)))
            {
                return c.1.clone();
            }
        }
        let mut map = self.series.write().unwrap_or_else(|e| e.into_inner());
        let total: usize = map.values().map(Vec::len).sum();
        let (h, key): (u64, Labels) = if total >= MAX_SERIES {
            let other: Vec<&str> = labels.iter().map(|_| "other").collect();
            (
                hash(&other),
                other.iter().map(|l| Box::<str>::from(*l)).collect(),
            )
        } else {
            (h, labels.iter().map(|l| Box::<str>::from(*l)).collect())
        };
        let bucket = map.entry(h).or_default();
        if let Some(c) = bucket.iter().find(|(k, _)| *k == key) {
            return c.1.clone();
        }
        let c = Arc::<T>::default();
        bucket.push((key, c.clone()));
        c
    }

    fn each(&self, mut f: impl FnMut(&Labels, &T)) {
        let map = self.series.read().unwrap_or_else(|e| e.into_inner());
        for (k, v) in map.values().flatten() {
            f(k, v);
        }
    }
}

fn hash(labels: &[&str]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    labels.hash(&mut h);
    h.finish()
}

/// A family of counters (or float sums stored as f64 bits) by label values.
#[derive(Default)]
pub struct Counter {
    family: Family<AtomicU64>,
}

impl Counter {
    fn cell(&self, labels: &[&str]) -> Arc<AtomicU64> {
        self.family.cell(labels)
    }

    pub fn inc(&self, labels: &[&str]) {
        self.add(labels, 1);
    }

    pub fn add(&self, labels: &[&str], n: u64) {
        if n > 0 {
            self.cell(labels).fetch_add(n, Relaxed);
        }
    }

    /// Adds to a float total (kept as f64 bits).
    pub fn add_f64(&self, labels: &[&str], v: f64) {
        if v > 0.0 && v.is_finite() {
            let c = self.cell(labels);
            let _ = c.fetch_update(Relaxed, Relaxed, |b| {
                Some((f64::from_bits(b) + v).to_bits())
            });
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
        self.family.each(|labels, c| {
            let v = c.load(Relaxed);
            let _ = write!(out, "{name}");
            write_labels(out, names, labels, None);
            if float {
                let _ = writeln!(out, " {}", f64::from_bits(v));
            } else {
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

impl Histogram {
    pub fn observe(&self, labels: &[&str], d: Duration) {
        let cell = self.family.cell(labels);
        let secs = d.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            cell.counts[i].fetch_add(1, Relaxed);
        }
        cell.count.fetch_add(1, Relaxed);
        cell.sum_us
            .fetch_add(d.as_micros().min(u128::from(u64::MAX)) as u64, Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str, names: &[&str]) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        self.family.each(|labels, b| {
            let mut cumulative = 0;
            for (i, le) in BUCKETS.iter().enumerate() {
                cumulative += b.counts[i].load(Relaxed);
                let _ = write!(out, "{name}_bucket");
                write_labels(out, names, labels, Some(&le.to_string()));
                let _ = writeln!(out, " {cumulative}");
            }
            let count = b.count.load(Relaxed);
            let _ = write!(out, "{name}_bucket");
            write_labels(out, names, labels, Some("+Inf"));
            let _ = writeln!(out, " {count}");
            let _ = write!(out, "{name}_sum");
            write_labels(out, names, labels, None);
            let _ = writeln!(out, " {}", b.sum_us.load(Relaxed) as f64 / 1e6);
            let _ = write!(out, "{name}_count");
            write_labels(out, names, labels, None);
            let _ = writeln!(out, " {count}");
        });
    }
}

fn same(k: &Labels, labels: &[&str]) -> bool {
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
    pub usage_queue_depth: AtomicU64,
    /// Bytes of usage records waiting in the on-disk spool for the store (0 while it keeps up).
    pub usage_spool_bytes: AtomicU64,
}

/// A gauge computed when scraped (target health, rollout split).
pub struct Gauge<'a> {
    pub labels: Vec<(&'static str, &'a str)>,
    pub value: f64,
}

impl Metrics {
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
        let _ = writeln!(out, "# HELP switchyard_usage_queue_depth Usage records waiting to be written.\n# TYPE switchyard_usage_queue_depth gauge\nswitchyard_usage_queue_depth {}", self.usage_queue_depth.load(Relaxed));
        let _ = writeln!(out, "# HELP switchyard_usage_records_dropped_total Usage records lost (must stay 0).\n# TYPE switchyard_usage_records_dropped_total counter\nswitchyard_usage_records_dropped_total {}", self.usage_records_dropped.load(Relaxed));
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
