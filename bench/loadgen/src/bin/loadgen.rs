//! `sy-loadgen`: a keep-alive HTTP/1.1 load generator for loopback targets.
//!
//! Modes:
//! - plain (default): `--concurrency` connections send requests back to back for `--duration`;
//!   reports throughput, latency percentiles and errors (non-2xx, I/O, timeouts).
//! - `--stream`: the same, with SSE answers: time to first event, total stream time, events per
//!   stream, and streams that did not end with `data: [DONE]` (counted as errors).
//! - `--hold D`: opens `--concurrency` streams at once (for example 10,000) and keeps reading
//!   them until they end (the upstream decides how long they last, about `D`); reports how many
//!   were open at the same time and how many completed without error.
//!
//! - `--slice D` with `--target NAME=URL` (repeatable): several targets measured in one run,
//!   taking turns in slices of `D` (round robin, each round starting one target further on), each
//!   with its own `--concurrency` keep-alive connections that stay open between its turns. Every
//!   target sees the same minutes of the machine, so a slow phase of a noisy machine lands on all
//!   of them alike instead of on whichever ran then. Prints one JSON line per target.
//!
//! `--watch NAME=PID` samples CPU time and peak RSS of that process tree over the measured window
//! (with `--slice`: over each target's own slices, credited to that target); `--target-watch
//! NAME=PID` is a target's own process, reported as `target` in its result, its CPU summed over
//! each of its turns together with the turn after it (work it defers, such as batched writes,
//! is still counted; what it does idle during the other targets' turns is not).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use bytes::Bytes;
use clap::Parser;
use hdrhistogram::Histogram;
use http::header::{CONNECTION, CONTENT_ENCODING, CONTENT_TYPE, HOST};
use http::{HeaderMap, HeaderValue, Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use sy_bench::fixtures::{REQUEST_BODY, STREAM_REQUEST_BODY};
use sy_bench::procstat::{self, Sample};
use sy_bench::sse::SseCounter;
use sy_bench::util::{self, duration_arg, Target};

#[derive(Parser, Debug)]
#[command(
    name = "sy-loadgen",
    about = "Keep-alive HTTP/1.1 load generator for loopback targets (plain, SSE stream and hold modes)"
)]
struct Args {
    /// Target URL; only http:// on a loopback host is accepted. Not with --slice (use --target).
    #[arg(long)]
    url: Option<String>,
    /// Measure every --target in turns of this length (e.g. 500ms) until each had --duration.
    #[arg(long, value_parser = duration_arg)]
    slice: Option<Duration>,
    /// With --slice: a target NAME=URL (repeatable, at least one).
    #[arg(long = "target")]
    targets: Vec<String>,
    /// With --slice: a header for one target only, NAME=Header: value (repeatable).
    #[arg(long = "target-header")]
    target_headers: Vec<String>,
    /// With --slice: a target's own process tree NAME=PID, reported as `target` in its result.
    #[arg(long = "target-watch")]
    target_watch: Vec<String>,
    /// Concurrent connections (each runs one request at a time); in --hold mode, streams held.
    #[arg(long, short = 'c', default_value_t = 1)]
    concurrency: usize,
    /// How long to measure (after --warmup), e.g. 10s, 500ms.
    #[arg(long, default_value = "10s", value_parser = duration_arg)]
    duration: Duration,
    /// Load sent before measuring; not counted in any figure.
    #[arg(long, default_value = "0s", value_parser = duration_arg)]
    warmup: Duration,
    /// Request body file (default: a small chat completion request; with --stream a streaming one).
    #[arg(long)]
    body: Option<PathBuf>,
    /// Extra request header 'name: value' (repeatable).
    #[arg(long = "header", short = 'H')]
    headers: Vec<String>,
    /// Expect SSE answers and measure time to first event, events and [DONE].
    #[arg(long)]
    stream: bool,
    /// Hold mode: open --concurrency streams at once and read them until they end (about this
    /// long; the upstream sets the pace). Implies --stream.
    #[arg(long, value_parser = duration_arg)]
    hold: Option<Duration>,
    /// In --hold mode, how long past --hold to wait before counting unfinished streams as errors
    /// (default: as long as --hold, at least 10s).
    #[arg(long, value_parser = duration_arg)]
    grace: Option<Duration>,
    /// In --hold mode, how many connections may be opening at the same time.
    #[arg(long, default_value_t = 256)]
    connect_parallelism: usize,
    /// Count streams with a different number of events as errors.
    #[arg(long)]
    expect_events: Option<u64>,
    /// Per-request timeout (for streams: the whole stream).
    #[arg(long, default_value = "30s", value_parser = duration_arg)]
    timeout: Duration,
    /// Stop after this many requests in total (warm-up included).
    #[arg(long)]
    max_requests: Option<u64>,
    /// Runtime worker threads (default: the CPUs this process may run on).
    #[arg(long)]
    threads: Option<usize>,
    /// Sample CPU time and peak RSS of this process tree: NAME=PID (repeatable).
    #[arg(long = "watch")]
    watch: Vec<String>,
    /// Print one JSON object instead of the human summary.
    #[arg(long)]
    json: bool,
}

fn main() {
    let args = Args::parse();
    let json_out = args.json;
    if let Err(e) = run(args) {
        if json_out {
            println!(
                "{}",
                json!({"tool": "sy-loadgen", "fatal": format!("{e:#}")})
            );
        }
        eprintln!("sy-loadgen: error: {e:#}");
        std::process::exit(2);
    }
}

struct Shared {
    target: Target,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
    timeout: Duration,
    stream: bool,
    expect_events: Option<u64>,
    sent: AtomicU64,
    max_requests: u64,
    proto: Histogram<u64>,
}

impl Shared {
    fn request(&self) -> Request<Full<Bytes>> {
        let mut req = Request::new(Full::new(self.body.clone()));
        *req.method_mut() = Method::POST;
        *req.uri_mut() = self.uri.clone();
        *req.headers_mut() = self.headers.clone();
        req
    }

    /// Takes a request slot; false once --max-requests is used up.
    fn take_slot(&self) -> bool {
        self.sent.fetch_add(1, Ordering::Relaxed) < self.max_requests
    }
}

/// The request every connection of one target sends: `url`, the common headers and `extra`.
fn make_shared(args: &Args, url: &str, extra: &[&str]) -> Result<Shared> {
    let target = util::loopback_target(url)?;
    let stream = args.stream || args.hold.is_some();
    let body = match &args.body {
        Some(path) => Bytes::from(
            std::fs::read(path).with_context(|| format!("reading --body {}", path.display()))?,
        ),
        None if stream => Bytes::from_static(STREAM_REQUEST_BODY.as_bytes()),
        None => Bytes::from_static(REQUEST_BODY.as_bytes()),
    };
    let mut headers = HeaderMap::new();
    headers.insert(
        HOST,
        HeaderValue::from_str(&target.authority).context("Host header")?,
    );
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    for h in args
        .headers
        .iter()
        .map(String::as_str)
        .chain(extra.iter().copied())
    {
        let (name, value) = util::parse_header(h)?;
        headers.insert(name, value);
    }
    let uri: Uri = target.path_and_query.parse().context("request path")?;
    Ok(Shared {
        target,
        uri,
        headers,
        body,
        timeout: args.timeout,
        stream,
        expect_events: args.expect_events,
        sent: AtomicU64::new(0),
        max_requests: args.max_requests.unwrap_or(u64::MAX),
        proto: histogram_proto()?,
    })
}

/// `NAME=VALUE` with a non-empty name.
fn split_named<'a>(flag: &str, s: &'a str) -> Result<(&'a str, &'a str)> {
    match s.split_once('=') {
        Some((name, value)) if !name.trim().is_empty() => Ok((name.trim(), value.trim())),
        _ => bail!("{flag} expects NAME=VALUE, got {s:?}"),
    }
}

/// The targets of a sliced run: name, URL and the request each sends.
fn sliced_targets(args: &Args) -> Result<Vec<SlicedTarget>> {
    if args.url.is_some() {
        bail!("--slice measures the --target URLs; leave out --url");
    }
    if args.targets.is_empty() {
        bail!("--slice needs at least one --target NAME=URL");
    }
    if args.hold.is_some() {
        bail!("--slice cannot be combined with --hold");
    }
    let mut out: Vec<SlicedTarget> = Vec::new();
    for t in &args.targets {
        let (name, url) = split_named("--target", t)?;
        if out.iter().any(|o| o.name == name) {
            bail!("--target {name:?} given twice");
        }
        out.push(SlicedTarget {
            name: name.to_string(),
            url: url.to_string(),
            extra: Vec::new(),
            own: None,
        });
    }
    let find = |out: &mut Vec<SlicedTarget>, flag: &str, name: &str| -> Result<usize> {
        out.iter()
            .position(|o| o.name == name)
            .with_context(|| format!("{flag} names {name:?}, which is not a --target"))
    };
    for h in &args.target_headers {
        let (name, header) = split_named("--target-header", h)?;
        let i = find(&mut out, "--target-header", name)?;
        util::parse_header(header)?;
        out[i].extra.push(header.to_string());
    }
    for w in &args.target_watch {
        let (name, pid) = split_named("--target-watch", w)?;
        let i = find(&mut out, "--target-watch", name)?;
        let pid: u32 = pid
            .parse()
            .with_context(|| format!("--target-watch {w:?}: {pid:?} is not a process id"))?;
        out[i].own = Some(pid);
    }
    Ok(out)
}

struct SlicedTarget {
    name: String,
    url: String,
    extra: Vec<String>,
    own: Option<u32>,
}

fn run(args: Args) -> Result<()> {
    if args.concurrency == 0 || args.concurrency > 100_000 {
        bail!("--concurrency must be between 1 and 100000");
    }
    if args.connect_parallelism == 0 {
        bail!("--connect-parallelism must be at least 1");
    }
    if args.warmup + args.duration > util::MAX_RUN {
        bail!(
            "--warmup plus --duration must be at most {}s",
            util::MAX_RUN.as_secs()
        );
    }
    let mut watch = Vec::new();
    for w in &args.watch {
        watch.push(util::parse_watch(w)?);
    }
    if let Some(slice) = args.slice {
        if slice.is_zero() {
            bail!("--slice must be longer than 0");
        }
        let targets = sliced_targets(&args)?;
        let mut runs = Vec::with_capacity(targets.len());
        for t in targets {
            let extra: Vec<&str> = t.extra.iter().map(String::as_str).collect();
            let shared = Arc::new(make_shared(&args, &t.url, &extra)?);
            runs.push((t, shared));
        }
        let threads = runtime_threads(&args);
        let rt = runtime(threads)?;
        let results = rt.block_on(run_sliced(&args, runs, slice, threads, &watch))?;
        for result in &results {
            if args.json {
                println!("{result}");
            } else {
                println!("{}:", result["slice_target"].as_str().unwrap_or(""));
                print_human(result);
            }
        }
        return Ok(());
    }
    let Some(url) = args.url.as_deref() else {
        bail!("--url is required (or --slice with --target)");
    };
    let shared = Arc::new(make_shared(&args, url, &[])?);

    if args.hold.is_some() || args.concurrency > 1000 {
        // Every connection needs a descriptor; raise the soft limit to the hard one.
        let limit = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(0);
        if limit < args.concurrency as u64 + 64 {
            eprintln!(
                "sy-loadgen: warning: RLIMIT_NOFILE is {limit}, too low for {} connections (raise `ulimit -n`)",
                args.concurrency
            );
        }
    }
    let threads = runtime_threads(&args);
    let rt = runtime(threads)?;
    let result = rt.block_on(async {
        match args.hold {
            Some(hold) => run_hold(&args, shared, hold, threads, &watch).await,
            None => run_load(&args, shared, threads, &watch).await,
        }
    })?;
    if args.json {
        println!("{result}");
    } else {
        print_human(&result);
    }
    Ok(())
}

fn runtime_threads(args: &Args) -> usize {
    args.threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .clamp(1, 64)
}

fn runtime(threads: usize) -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .context("building the runtime")
}

// ---------------------------------------------------------------------------------------------
// Statistics

/// 1 ns .. 1 h with 3 significant digits; recording saturates instead of failing.
fn histogram_proto() -> Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, 3_600_000_000_000, 3).context("creating a histogram")
}

#[derive(Default, Clone)]
struct Errors {
    connect: u64,
    io: u64,
    timeout: u64,
    status: u64,
    bad_stream: u64,
    statuses: BTreeMap<u16, u64>,
    first: Option<String>,
}

impl Errors {
    fn total(&self) -> u64 {
        self.connect + self.io + self.timeout + self.status + self.bad_stream
    }

    fn note(&mut self, msg: impl FnOnce() -> String) {
        if self.first.is_none() {
            self.first = Some(msg());
        }
    }

    fn merge(&mut self, o: &Errors) {
        self.connect += o.connect;
        self.io += o.io;
        self.timeout += o.timeout;
        self.status += o.status;
        self.bad_stream += o.bad_stream;
        for (k, v) in &o.statuses {
            *self.statuses.entry(*k).or_default() += v;
        }
        if self.first.is_none() {
            self.first.clone_from(&o.first);
        }
    }

    fn to_json(&self) -> Value {
        let statuses: serde_json::Map<String, Value> = self
            .statuses
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        json!({
            "connect": self.connect,
            "io": self.io,
            "timeout": self.timeout,
            "status": self.status,
            "bad_stream": self.bad_stream,
            "statuses": statuses,
        })
    }
}

struct Stats {
    ok: u64,
    errors: Errors,
    /// Whole request (plain) or whole stream (stream modes), in ns.
    latency: Histogram<u64>,
    /// Time to first SSE event, in ns.
    ttfb: Histogram<u64>,
    bytes: u64,
    encoded: u64,
    events_total: u64,
    events_min: u64,
    events_max: u64,
    done_missing: u64,
    reconnects: u64,
}

impl Stats {
    fn new(proto: &Histogram<u64>) -> Self {
        Self {
            ok: 0,
            errors: Errors::default(),
            latency: Histogram::new_from(proto),
            ttfb: Histogram::new_from(proto),
            bytes: 0,
            encoded: 0,
            events_total: 0,
            events_min: u64::MAX,
            events_max: 0,
            done_missing: 0,
            reconnects: 0,
        }
    }

    fn merge(&mut self, o: &Stats) {
        self.ok += o.ok;
        self.errors.merge(&o.errors);
        let _ = self.latency.add(&o.latency);
        let _ = self.ttfb.add(&o.ttfb);
        self.bytes += o.bytes;
        self.encoded += o.encoded;
        self.events_total += o.events_total;
        self.events_min = self.events_min.min(o.events_min);
        self.events_max = self.events_max.max(o.events_max);
        self.done_missing += o.done_missing;
        self.reconnects += o.reconnects;
    }

    fn record(&mut self, ex: &Exchange, elapsed: Duration) {
        match &ex.outcome {
            Outcome::Ok => {
                self.ok += 1;
                self.latency.saturating_record(elapsed.as_nanos() as u64);
                if let Some(t) = ex.ttfb {
                    self.ttfb.saturating_record(t.as_nanos() as u64);
                }
                self.bytes += ex.bytes;
                if ex.encoded {
                    self.encoded += 1;
                }
            }
            Outcome::Status(code) => {
                self.errors.status += 1;
                *self.errors.statuses.entry(*code).or_default() += 1;
                self.errors.note(|| format!("HTTP status {code}"));
            }
            Outcome::BadStream(why) => {
                self.errors.bad_stream += 1;
                self.errors.note(|| format!("bad stream: {why}"));
            }
            Outcome::Io(e) => {
                self.errors.io += 1;
                self.errors.note(|| format!("I/O: {e}"));
            }
            Outcome::Timeout => {
                self.errors.timeout += 1;
                self.errors.note(|| "timeout".to_string());
            }
        }
        if ex.events.is_some() || matches!(ex.outcome, Outcome::BadStream(_)) {
            let n = ex.events.unwrap_or(0);
            self.events_total += n;
            self.events_min = self.events_min.min(n);
            self.events_max = self.events_max.max(n);
            if !ex.done {
                self.done_missing += 1;
            }
        }
    }
}

/// Statistics shared by all tasks, in a few locked shards: one HDR histogram costs a few hundred
/// KiB, far too much to give each of 10,000 held streams its own.
struct Sink {
    shards: Vec<Mutex<Stats>>,
}

impl Sink {
    fn new(proto: &Histogram<u64>, tasks: usize, threads: usize) -> Self {
        let n = (threads * 4).clamp(1, tasks.max(1));
        Self {
            shards: (0..n).map(|_| Mutex::new(Stats::new(proto))).collect(),
        }
    }

    fn with<R>(&self, task: usize, f: impl FnOnce(&mut Stats) -> R) -> R {
        let shard = &self.shards[task % self.shards.len()];
        let mut guard = shard.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut guard)
    }

    fn merged(&self, proto: &Histogram<u64>) -> Stats {
        let mut out = Stats::new(proto);
        for shard in &self.shards {
            out.merge(&shard.lock().unwrap_or_else(PoisonError::into_inner));
        }
        out
    }
}

fn percentiles_us(h: &Histogram<u64>) -> Value {
    if h.is_empty() {
        return Value::Null;
    }
    let us = |ns: u64| (ns as f64 / 1000.0 * 10.0).round() / 10.0;
    json!({
        "p50": us(h.value_at_quantile(0.50)),
        "p90": us(h.value_at_quantile(0.90)),
        "p99": us(h.value_at_quantile(0.99)),
        "p999": us(h.value_at_quantile(0.999)),
        "max": us(h.max()),
        "min": us(h.min()),
        "mean": (h.mean() / 100.0).round() / 10.0,
    })
}

// ---------------------------------------------------------------------------------------------
// One request

enum Outcome {
    Ok,
    Status(u16),
    BadStream(String),
    Io(String),
    Timeout,
}

struct Exchange {
    outcome: Outcome,
    ttfb: Option<Duration>,
    bytes: u64,
    encoded: bool,
    events: Option<u64>,
    done: bool,
    /// The connection cannot be used again.
    close: bool,
}

impl Exchange {
    fn failed(outcome: Outcome) -> Self {
        Self {
            outcome,
            ttfb: None,
            bytes: 0,
            encoded: false,
            events: None,
            done: false,
            close: true,
        }
    }
}

async fn connect(shared: &Shared) -> std::io::Result<SendRequest<Full<Bytes>>> {
    let stream = TcpStream::connect(shared.target.addr).await?;
    stream.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::Builder::new()
        .handshake(TokioIo::new(stream))
        .await
        .map_err(std::io::Error::other)?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// Sends one request and reads the whole answer. `on_headers` runs once the status line arrived.
async fn exchange(
    shared: &Shared,
    sender: &mut SendRequest<Full<Bytes>>,
    t0: Instant,
    on_headers: impl FnOnce(bool),
) -> Exchange {
    let res = match sender.send_request(shared.request()).await {
        Ok(res) => res,
        Err(e) => {
            on_headers(false);
            return Exchange::failed(Outcome::Io(e.to_string()));
        }
    };
    let status = res.status();
    let close = res
        .headers()
        .get(CONNECTION)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
    let encoded = res.headers().contains_key(CONTENT_ENCODING);
    let is_sse = res
        .headers()
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    on_headers(status.is_success());
    let mut body = res.into_body();
    let mut ex = Exchange {
        outcome: Outcome::Ok,
        ttfb: None,
        bytes: 0,
        encoded,
        events: None,
        done: false,
        close,
    };
    let sse = shared.stream && status.is_success();
    let mut counter = SseCounter::new();
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => {
                if let Some(data) = frame.data_ref() {
                    ex.bytes += data.len() as u64;
                    if sse && counter.feed(data) > 0 && ex.ttfb.is_none() {
                        ex.ttfb = Some(t0.elapsed());
                    }
                }
            }
            Err(e) => {
                ex.outcome = Outcome::Io(format!("reading the body: {e}"));
                ex.close = true;
                break;
            }
        }
    }
    if !status.is_success() {
        ex.outcome = Outcome::Status(status.as_u16());
        return ex;
    }
    if sse {
        ex.events = Some(counter.events);
        ex.done = counter.last_was_done;
        if matches!(ex.outcome, Outcome::Ok) {
            if !is_sse {
                ex.outcome = Outcome::BadStream("content-type is not text/event-stream".into());
            } else if !counter.last_was_done {
                ex.outcome = Outcome::BadStream(format!(
                    "ended without data: [DONE] after {} events",
                    counter.events
                ));
            } else if counter.after_done > 0 || counter.has_partial() {
                ex.outcome = Outcome::BadStream("data after [DONE]".into());
            } else if let Some(want) = shared.expect_events {
                if counter.events != want {
                    ex.outcome =
                        Outcome::BadStream(format!("{} events, expected {want}", counter.events));
                }
            }
        }
    }
    ex
}

// ---------------------------------------------------------------------------------------------
// Plain and stream load

async fn load_worker(
    shared: Arc<Shared>,
    sink: Arc<Sink>,
    id: usize,
    measure_start: Instant,
    deadline: Instant,
    mut conn: Option<SendRequest<Full<Bytes>>>,
) -> Option<SendRequest<Full<Bytes>>> {
    while Instant::now() < deadline && shared.take_slot() {
        let mut sender = match conn.take() {
            Some(s) => s,
            None => match connect(&shared).await {
                Ok(s) => s,
                Err(e) => {
                    if Instant::now() >= measure_start {
                        sink.with(id, |stats| {
                            stats.errors.connect += 1;
                            stats.errors.note(|| format!("connect: {e}"));
                        });
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        if sender.ready().await.is_err() {
            // The server closed an idle keep-alive connection: not a failed request.
            sink.with(id, |stats| stats.reconnects += 1);
            continue;
        }
        let t0 = Instant::now();
        let ex =
            match tokio::time::timeout(shared.timeout, exchange(&shared, &mut sender, t0, |_| {}))
                .await
            {
                Ok(ex) => ex,
                Err(_) => Exchange::failed(Outcome::Timeout),
            };
        let elapsed = t0.elapsed();
        let measured = t0 >= measure_start;
        sink.with(id, |stats| {
            if measured {
                stats.record(&ex, elapsed);
            }
            if ex.close {
                stats.reconnects += 1;
            }
        });
        if !ex.close {
            conn = Some(sender);
        }
    }
    conn
}

struct Watched {
    name: String,
    pid: u32,
    before: Option<Sample>,
    after: Option<Sample>,
}

/// Samples the watched trees, this load generator itself (`loadgen`) and, under the name
/// `machine`, nothing: the machine's busy time is sampled separately.
fn sample_all(watch: &[(String, u32)]) -> Vec<Watched> {
    let me = ("loadgen".to_string(), std::process::id());
    watch
        .iter()
        .chain(std::iter::once(&me))
        .map(|(name, pid)| Watched {
            name: name.clone(),
            pid: *pid,
            before: procstat::sample(*pid),
            after: None,
        })
        .collect()
}

/// How busy the machine was over the window, and how much of that was not ours (not the load
/// generator nor any watched process): other people's builds on a shared machine show up here.
fn machine_json(
    watched: &[Watched],
    before: Option<f64>,
    after: Option<f64>,
    elapsed: Duration,
) -> Value {
    let secs = elapsed.as_secs_f64();
    let (Some(b), Some(a)) = (before, after) else {
        return Value::Null;
    };
    if secs <= 0.0 {
        return Value::Null;
    }
    let busy = (a - b).max(0.0);
    let ours: f64 = watched
        .iter()
        .filter_map(|w| Some((w.after?.cpu_ms - w.before?.cpu_ms).max(0.0)))
        .sum();
    let cores = |ms: f64| (ms / 1000.0 / secs * 1000.0).round() / 1000.0;
    json!({
        "busy_cores": cores(busy),
        "ours_cores": cores(ours),
        "other_cores": cores((busy - ours).max(0.0)),
    })
}

fn procs_json(watched: &[Watched], units: u64, elapsed: Duration) -> Value {
    let mut out = serde_json::Map::new();
    for w in watched {
        let v = match (w.before, w.after) {
            (Some(b), Some(a)) => {
                let cpu = (a.cpu_ms - b.cpu_ms).max(0.0);
                json!({
                    "pid": w.pid,
                    "processes": a.processes,
                    "cpu_ms": cpu,
                    "cpu_us_per_req": if units > 0 { Value::from((cpu * 1000.0 / units as f64 * 100.0).round() / 100.0) } else { Value::Null },
                    "cpu_util": if elapsed.as_secs_f64() > 0.0 { Value::from((cpu / 1000.0 / elapsed.as_secs_f64() * 1000.0).round() / 1000.0) } else { Value::Null },
                    "peak_rss_kib": a.peak_rss_kib,
                    "rss_kib": a.rss_kib,
                })
            }
            _ => json!({"pid": w.pid, "missing": true}),
        };
        out.insert(w.name.clone(), v);
    }
    Value::Object(out)
}

async fn run_load(
    args: &Args,
    shared: Arc<Shared>,
    threads: usize,
    watch: &[(String, u32)],
) -> Result<Value> {
    let start = Instant::now();
    let measure_start = start + args.warmup;
    let deadline = measure_start + args.duration;
    let sink = Arc::new(Sink::new(&shared.proto, args.concurrency, threads));
    let mut tasks = Vec::with_capacity(args.concurrency);
    for id in 0..args.concurrency {
        tasks.push(tokio::spawn(load_worker(
            shared.clone(),
            sink.clone(),
            id,
            measure_start,
            deadline,
            None,
        )));
    }
    tokio::time::sleep_until(measure_start).await;
    let mut watched = sample_all(watch);
    let busy_before = procstat::machine_busy_ms();
    for t in tasks {
        if let Err(e) = t.await {
            bail!("a worker failed: {e}");
        }
    }
    let stats = sink.merged(&shared.proto);
    let elapsed = Instant::now().saturating_duration_since(measure_start);
    for w in &mut watched {
        w.after = procstat::sample(w.pid);
    }
    let machine = machine_json(&watched, busy_before, procstat::machine_busy_ms(), elapsed);
    let mut v = result_json(args, args.url.as_deref(), &stats, elapsed, &watched, None);
    v["machine"] = machine;
    Ok(v)
}

fn result_json(
    args: &Args,
    url: Option<&str>,
    stats: &Stats,
    elapsed: Duration,
    watched: &[Watched],
    hold: Option<Value>,
) -> Value {
    let secs = elapsed.as_secs_f64();
    let per_sec = |n: u64| {
        if secs > 0.0 {
            (n as f64 / secs * 10.0).round() / 10.0
        } else {
            0.0
        }
    };
    let stream = args.stream || args.hold.is_some();
    let mode = if args.hold.is_some() {
        "hold"
    } else if stream {
        "stream"
    } else {
        "plain"
    };
    let mut v = json!({
        "tool": "sy-loadgen",
        "mode": mode,
        "url": url,
        "concurrency": args.concurrency,
        "duration_s": args.duration.as_secs_f64(),
        "warmup_s": args.warmup.as_secs_f64(),
        "elapsed_s": (secs * 1000.0).round() / 1000.0,
        "requests": stats.ok + stats.errors.total(),
        "ok": stats.ok,
        "errors": stats.errors.total(),
        "error_kinds": stats.errors.to_json(),
        "first_error": stats.errors.first,
        "rps": per_sec(stats.ok),
        "latency_us": percentiles_us(&stats.latency),
        "bytes_per_response": stats.bytes.checked_div(stats.ok).unwrap_or(0),
        "encoded_responses": stats.encoded,
        "reconnects": stats.reconnects,
        "procs": procs_json(watched, stats.ok, elapsed),
    });
    if stream {
        v["ttfb_us"] = percentiles_us(&stats.ttfb);
        let streams = stats.ok + stats.errors.bad_stream;
        v["events"] = json!({
            "total": stats.events_total,
            "per_sec": per_sec(stats.events_total),
            "min": if streams > 0 { stats.events_min } else { 0 },
            "max": stats.events_max,
            "mean": if streams > 0 { (stats.events_total as f64 / streams as f64 * 100.0).round() / 100.0 } else { 0.0 },
        });
        v["done_missing"] = json!(stats.done_missing);
    }
    if let Some(h) = hold {
        v["hold"] = h;
    }
    v
}

// ---------------------------------------------------------------------------------------------
// Sliced: several targets taking turns

/// One target of a sliced run and what its turns added up to.
struct Turns {
    target: SlicedTarget,
    shared: Arc<Shared>,
    sink: Arc<Sink>,
    /// The target's connections, kept open between its turns.
    conns: Vec<Option<SendRequest<Full<Bytes>>>>,
    /// Time its turns took, from the start of each to its last answer.
    active: Duration,
    /// CPU time of each `--watch` tree (and the load generator) over its turns, in ms.
    shared_cpu: Vec<f64>,
    busy_ms: f64,
    /// CPU time of the target's own process over its turns, each with the turn after it
    /// (see [`run_sliced`]), in ms.
    own_cpu: f64,
}

/// One turn: every connection of the target sends requests until `deadline`; those sent from
/// `measure_start` on count. Returns when the last answer is in.
async fn turn(t: &mut Turns, measure_start: Instant, deadline: Instant) -> Result<()> {
    let mut tasks = Vec::with_capacity(t.conns.len());
    for (id, conn) in t.conns.iter_mut().enumerate() {
        tasks.push(tokio::spawn(load_worker(
            t.shared.clone(),
            t.sink.clone(),
            id,
            measure_start,
            deadline,
            conn.take(),
        )));
    }
    for (slot, task) in t.conns.iter_mut().zip(tasks) {
        *slot = task
            .await
            .map_err(|e| anyhow::anyhow!("a worker failed: {e}"))?;
    }
    Ok(())
}

async fn run_sliced(
    args: &Args,
    runs: Vec<(SlicedTarget, Arc<Shared>)>,
    slice: Duration,
    threads: usize,
    watch: &[(String, u32)],
) -> Result<Vec<Value>> {
    let mut turns: Vec<Turns> = runs
        .into_iter()
        .map(|(target, shared)| Turns {
            sink: Arc::new(Sink::new(&shared.proto, args.concurrency, threads)),
            conns: (0..args.concurrency).map(|_| None).collect(),
            active: Duration::ZERO,
            shared_cpu: vec![0.0; watch.len() + 1],
            busy_ms: 0.0,
            own_cpu: 0.0,
            target,
            shared,
        })
        .collect();
    // Warm-up: each target in turn, connections opened, nothing counted.
    if !args.warmup.is_zero() {
        for t in &mut turns {
            let end = Instant::now() + args.warmup;
            turn(t, end, end).await?;
        }
    }
    // A target's own process is sampled before each of its turns and again only after the turn
    // that follows (another target's, ~`slice` later): work it defers past its turn (batched
    // usage writes, flushed every 100 ms) is still counted, while what it does idle during
    // the other targets' turns (timers, polls) is not. Its next turn closes the window first if
    // it comes next (a single target).
    let own = |t: &Turns| t.target.own.and_then(procstat::sample).map(|s| s.cpu_ms);
    let mut awaiting: Option<(usize, f64)> = None;
    let rounds = (args.duration.as_nanos().div_ceil(slice.as_nanos().max(1))).max(1) as u32;
    let n = turns.len();
    for round in 0..rounds {
        // The last round takes what is left of --duration.
        let len = slice.min(args.duration.saturating_sub(slice * round));
        let len = if len.is_zero() { slice } else { len };
        for k in 0..n {
            let i = (round as usize + k) % n;
            if let Some((j, before)) = awaiting.take_if(|(j, _)| *j == i) {
                turns[j].own_cpu += (own(&turns[j]).unwrap_or(before) - before).max(0.0);
            }
            let own_before = own(&turns[i]);
            let t = &mut turns[i];
            let watched = sample_all(watch);
            let busy_before = procstat::machine_busy_ms();
            let start = Instant::now();
            turn(t, start, start + len).await?;
            t.active += start.elapsed();
            for (acc, w) in t.shared_cpu.iter_mut().zip(&watched) {
                if let (Some(b), Some(a)) = (w.before, procstat::sample(w.pid)) {
                    *acc += (a.cpu_ms - b.cpu_ms).max(0.0);
                }
            }
            if let (Some(b), Some(a)) = (busy_before, procstat::machine_busy_ms()) {
                t.busy_ms += (a - b).max(0.0);
            }
            if let Some((j, before)) = awaiting.take() {
                turns[j].own_cpu += (own(&turns[j]).unwrap_or(before) - before).max(0.0);
            }
            awaiting = own_before.map(|b| (i, b));
        }
    }
    // The last turn's target: as long again as a turn for what it deferred.
    if let Some((j, before)) = awaiting.take() {
        tokio::time::sleep(slice).await;
        turns[j].own_cpu += (own(&turns[j]).unwrap_or(before) - before).max(0.0);
    }
    let mut out = Vec::with_capacity(n);
    for t in &turns {
        let stats = t.sink.merged(&t.shared.proto);
        // Each turn's CPU as the difference of two samples, the sums of those as one.
        let mut watched: Vec<Watched> = sample_all(watch)
            .into_iter()
            .zip(&t.shared_cpu)
            .map(|(mut w, cpu)| {
                w.after = w.before.map(|s| Sample { cpu_ms: *cpu, ..s });
                w.before = w.before.map(|s| Sample { cpu_ms: 0.0, ..s });
                w
            })
            .collect();
        if let Some(pid) = t.target.own {
            let last = procstat::sample(pid);
            watched.push(Watched {
                name: "target".to_string(),
                pid,
                before: last.map(|s| Sample { cpu_ms: 0.0, ..s }),
                after: last.map(|s| Sample {
                    cpu_ms: t.own_cpu,
                    ..s
                }),
            });
        }
        let machine = machine_json(&watched, Some(0.0), Some(t.busy_ms), t.active);
        let mut v = result_json(args, Some(&t.target.url), &stats, t.active, &watched, None);
        v["machine"] = machine;
        v["slice_target"] = json!(t.target.name);
        v["slice_s"] = json!(slice.as_secs_f64());
        v["slices"] = json!(rounds);
        out.push(v);
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Hold

async fn run_hold(
    args: &Args,
    shared: Arc<Shared>,
    hold: Duration,
    threads: usize,
    watch: &[(String, u32)],
) -> Result<Value> {
    let grace = args.grace.unwrap_or(hold.max(Duration::from_secs(10)));
    let start = Instant::now();
    let hard_deadline = start + hold + grace;
    let mut watched = sample_all(watch);
    let busy_before = procstat::machine_busy_ms();
    let gate = Arc::new(Semaphore::new(args.connect_parallelism));
    let open = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let opened = Arc::new(AtomicUsize::new(0));
    let all_open_at: Arc<Mutex<Option<Duration>>> = Arc::new(Mutex::new(None));
    let total = args.concurrency;
    let sink = Arc::new(Sink::new(&shared.proto, total, threads));
    let mut tasks = Vec::with_capacity(total);
    for id in 0..total {
        let shared = shared.clone();
        let sink = sink.clone();
        let gate = gate.clone();
        let open = open.clone();
        let peak = peak.clone();
        let opened = opened.clone();
        let all_open_at = all_open_at.clone();
        tasks.push(tokio::spawn(async move {
            let work = async {
                let permit = gate.acquire().await.ok();
                let mut sender = match connect(&shared).await {
                    Ok(s) => s,
                    Err(e) => {
                        sink.with(id, |stats| {
                            stats.errors.connect += 1;
                            stats.errors.note(|| format!("connect: {e}"));
                        });
                        return;
                    }
                };
                let mut permit = permit;
                let mut counted = false;
                let t0 = Instant::now();
                let ex = exchange(&shared, &mut sender, t0, |ok| {
                    drop(permit.take());
                    if ok {
                        counted = true;
                        let now_open = open.fetch_add(1, Ordering::Relaxed) + 1;
                        peak.fetch_max(now_open, Ordering::Relaxed);
                        if opened.fetch_add(1, Ordering::Relaxed) + 1 == total {
                            if let Ok(mut at) = all_open_at.lock() {
                                *at = Some(start.elapsed());
                            }
                        }
                    }
                })
                .await;
                if counted {
                    open.fetch_sub(1, Ordering::Relaxed);
                }
                let elapsed = t0.elapsed();
                sink.with(id, |stats| stats.record(&ex, elapsed));
            };
            if tokio::time::timeout_at(hard_deadline, work).await.is_err() {
                sink.with(id, |stats| {
                    stats.errors.timeout += 1;
                    stats
                        .errors
                        .note(|| "stream still open at --hold plus --grace".to_string());
                });
            }
        }));
    }
    for t in tasks {
        if let Err(e) = t.await {
            bail!("a stream task failed: {e}");
        }
    }
    let stats = sink.merged(&shared.proto);
    let elapsed = start.elapsed();
    for w in &mut watched {
        w.after = procstat::sample(w.pid);
    }
    let machine = machine_json(&watched, busy_before, procstat::machine_busy_ms(), elapsed);
    let all_open = all_open_at.lock().ok().and_then(|g| *g);
    let hold_json = json!({
        "hold_s": hold.as_secs_f64(),
        "streams": total,
        "opened": opened.load(Ordering::Relaxed),
        "peak_open": peak.load(Ordering::Relaxed),
        "all_open_s": all_open.map(|d| (d.as_secs_f64() * 1000.0).round() / 1000.0),
        "completed_ok": stats.ok,
    });
    let mut v = result_json(
        args,
        args.url.as_deref(),
        &stats,
        elapsed,
        &watched,
        Some(hold_json),
    );
    v["machine"] = machine;
    Ok(v)
}

// ---------------------------------------------------------------------------------------------
// Human output

fn print_human(v: &Value) {
    let f = |v: &Value| match v.as_f64() {
        Some(x) => format!("{x:.1}"),
        None => "-".to_string(),
    };
    println!(
        "{} {} c={} elapsed {}s",
        v["mode"].as_str().unwrap_or(""),
        v["url"].as_str().unwrap_or(""),
        v["concurrency"],
        v["elapsed_s"]
    );
    println!(
        "  requests {}  ok {}  errors {}  throughput {} req/s",
        v["requests"],
        v["ok"],
        v["errors"],
        f(&v["rps"])
    );
    if v["errors"].as_u64().unwrap_or(0) > 0 {
        println!(
            "  error kinds {}  first: {}",
            v["error_kinds"], v["first_error"]
        );
    }
    let pct = |name: &str, p: &Value| {
        if !p.is_null() {
            println!(
                "  {name:<10} p50 {} µs  p90 {} µs  p99 {} µs  p99.9 {} µs  max {} µs",
                f(&p["p50"]),
                f(&p["p90"]),
                f(&p["p99"]),
                f(&p["p999"]),
                f(&p["max"])
            );
        }
    };
    let stream = v.get("ttfb_us").is_some();
    pct(if stream { "stream" } else { "latency" }, &v["latency_us"]);
    if stream {
        pct("ttfb", &v["ttfb_us"]);
        println!(
            "  events/stream min {} mean {} max {}  missing [DONE] {}",
            v["events"]["min"], v["events"]["mean"], v["events"]["max"], v["done_missing"]
        );
    } else {
        println!(
            "  bytes/response {}  content-encoded responses {}",
            v["bytes_per_response"], v["encoded_responses"]
        );
    }
    if let Some(h) = v.get("hold") {
        println!(
            "  hold: {} streams, peak open {}, all open after {}s, completed ok {}",
            h["streams"], h["peak_open"], h["all_open_s"], h["completed_ok"]
        );
    }
    if v["machine"].is_object() {
        println!(
            "  machine busy {} cores, ours {}, others {}",
            v["machine"]["busy_cores"], v["machine"]["ours_cores"], v["machine"]["other_cores"]
        );
    }
    if let Some(procs) = v["procs"].as_object() {
        for (name, p) in procs {
            println!(
                "  {name}: cpu {} ms ({} µs/req, {} cores)  peak RSS {} KiB",
                f(&p["cpu_ms"]),
                f(&p["cpu_us_per_req"]),
                p["cpu_util"],
                p["peak_rss_kib"]
            );
        }
    }
}
