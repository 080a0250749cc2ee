//! The OTLP/HTTP exporter: a bounded queue the request path hands encoded spans to without
//! waiting, and one background task that batches them (up to [`BATCH_SPANS`] spans, or what
//! arrived within [`FLUSH_EVERY`]) and POSTs each batch as one `ExportTraceServiceRequest`
//! (JSON) to `{otlp_endpoint}/v1/traces`, through the same pooled client (HTTP or HTTPS) as
//! provider calls.
//!
//! Spans are lost, and counted in `switchyard_trace_spans_dropped_total`, when the queue is full
//! or the collector does not take a batch (after a short retry for the statuses OTLP calls
//! retryable). A failing collector is logged at warn once, and again when it recovers; it never
//! slows a request. [`Exporter::shutdown`] sends what is queued before the process exits.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderName, HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::config::Otlp;
use crate::upstream::client::{self, Client};

/// Spans per export at most.
const BATCH_SPANS: usize = 512;
/// A partial batch waits at most this long.
const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// Requests' spans waiting to be batched, at most.
const QUEUE: usize = 2048;
/// One POST, answer included.
const POST_TIMEOUT: Duration = Duration::from_secs(10);
/// Tries per batch for retryable failures.
const TRIES: u32 = 3;
/// How long shutdown waits for the last batches.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(5);

static JSON: HeaderValue = HeaderValue::from_static("application/json");
static USER_AGENT: HeaderValue =
    HeaderValue::from_static(concat!("switchyard/", env!("CARGO_PKG_VERSION")));

/// One request's spans, encoded: comma-separated `Span` objects.
#[derive(Debug)]
struct Spans {
    json: Vec<u8>,
    count: usize,
}

/// The request path's end of the queue.
#[derive(Debug, Clone)]
pub(super) struct Sink(mpsc::Sender<Spans>);

impl Sink {
    /// Queues spans without waiting; a full (or closed) queue drops them, counted.
    pub(super) fn send(&self, json: Vec<u8>, count: usize) {
        if self.0.try_send(Spans { json, count }).is_err() {
            dropped(count);
        }
    }
}

fn dropped(count: usize) {
    crate::metrics::global()
        .trace_spans_dropped
        .fetch_add(count as u64, Relaxed);
}

/// The process's trace exporter: its queue and its background task.
#[derive(Debug)]
pub struct Exporter {
    tx: mpsc::Sender<Spans>,
    task: Mutex<Option<(JoinHandle<()>, oneshot::Sender<()>)>>,
}

impl Exporter {
    /// Starts exporting to `otlp`'s endpoint. `None` outside a tokio runtime (logged).
    pub fn start(otlp: &Otlp) -> Option<Exporter> {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!("traces are not exported: no runtime to run the exporter on");
            return None;
        };
        let (tx, rx) = mpsc::channel(QUEUE);
        let (stop, stopped) = oneshot::channel();
        let post = Post::new(otlp);
        let task = runtime.spawn(run(rx, stopped, post));
        tracing::info!(endpoint = %otlp.traces_url.authority().map_or("", |a| a.host()), "exporting traces over OTLP/HTTP");
        Some(Exporter {
            tx,
            task: Mutex::new(Some((task, stop))),
        })
    }

    pub(super) fn sink(&self) -> Sink {
        Sink(self.tx.clone())
    }

    /// Sends every span queued so far, then stops the task (waits at most a few seconds).
    /// Spans queued after this are not sent.
    pub async fn shutdown(&self) {
        let task = self.task.lock().unwrap_or_else(|e| e.into_inner()).take();
        let Some((task, stop)) = task else { return };
        let _ = stop.send(());
        let abort = task.abort_handle();
        if tokio::time::timeout(SHUTDOWN_WAIT, task).await.is_err() {
            abort.abort();
            tracing::warn!("trace export did not finish in time; the last spans are lost");
        }
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        if let Some((task, _)) = self.task.lock().unwrap_or_else(|e| e.into_inner()).take() {
            task.abort();
        }
    }
}

/// The background task: batches until stopped, then drains the queue.
async fn run(mut rx: mpsc::Receiver<Spans>, mut stop: oneshot::Receiver<()>, mut post: Post) {
    let mut batch = Batch::default();
    let mut tick = tokio::time::interval(FLUSH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            item = rx.recv() => match item {
                Some(s) => {
                    if batch.push(s) {
                        post.send(batch.take()).await;
                    }
                }
                None => break,
            },
            _ = tick.tick() => {
                if batch.count > 0 {
                    post.send(batch.take()).await;
                }
            }
            _ = &mut stop => break,
        }
    }
    rx.close();
    while let Some(s) = rx.recv().await {
        if batch.push(s) {
            post.send(batch.take()).await;
        }
    }
    if batch.count > 0 {
        post.send(batch.take()).await;
    }
}

#[derive(Default)]
struct Batch {
    items: Vec<Spans>,
    count: usize,
}

impl Batch {
    /// Adds spans; true when the batch is full.
    fn push(&mut self, s: Spans) -> bool {
        self.count += s.count;
        self.items.push(s);
        self.count >= BATCH_SPANS
    }

    fn take(&mut self) -> Batch {
        std::mem::take(self)
    }
}

/// Where and how batches are sent.
struct Post {
    client: Client,
    url: http::Uri,
    headers: Vec<(HeaderName, HeaderValue)>,
    /// `{"resourceSpans":[{"resource":{…},"scopeSpans":[{"scope":{…},"spans":[`.
    prefix: Vec<u8>,
    /// The collector failed last time (logged once until it recovers).
    failing: bool,
}

const SUFFIX: &[u8] = b"]}]}]}";

impl Post {
    fn new(otlp: &Otlp) -> Post {
        let mut prefix = b"{\"resourceSpans\":[{\"resource\":{\"attributes\":[".to_vec();
        super::span::resource_attributes(&mut prefix, &otlp.service_name);
        prefix.extend_from_slice(
            b"]},\"scopeSpans\":[{\"scope\":{\"name\":\"switchyard\",\"version\":\"",
        );
        prefix.extend_from_slice(env!("CARGO_PKG_VERSION").as_bytes());
        prefix.extend_from_slice(b"\"},\"spans\":[");
        Post {
            client: client::new(),
            url: otlp.traces_url.clone(),
            headers: otlp.headers.clone(),
            prefix,
            failing: false,
        }
    }

    /// One `ExportTraceServiceRequest` of the batch.
    fn body(&self, batch: &Batch) -> Bytes {
        let size: usize = batch.items.iter().map(|s| s.json.len() + 1).sum();
        let mut body = Vec::with_capacity(self.prefix.len() + size + SUFFIX.len());
        body.extend_from_slice(&self.prefix);
        for (i, s) in batch.items.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(&s.json);
        }
        body.extend_from_slice(SUFFIX);
        Bytes::from(body)
    }

    async fn send(&mut self, batch: Batch) {
        let body = self.body(&batch);
        let mut result = Err(Failure::Other(String::new()));
        for attempt in 0..TRIES {
            if attempt > 0 {
                let wait = match &result {
                    Err(Failure::Retry(Some(after))) => (*after).min(Duration::from_secs(5)),
                    _ => Duration::from_millis(250 << attempt),
                };
                tokio::time::sleep(wait).await;
            }
            result = self.post(body.clone()).await;
            if !matches!(result, Err(Failure::Retry(_))) {
                break;
            }
        }
        match result {
            Ok(()) => {
                crate::metrics::global()
                    .trace_spans_exported
                    .fetch_add(batch.count as u64, Relaxed);
                if self.failing {
                    self.failing = false;
                    tracing::info!("trace export works again");
                }
            }
            Err(f) => {
                dropped(batch.count);
                let why = match f {
                    Failure::Retry(_) => "the collector is unavailable".to_string(),
                    Failure::Other(e) => e,
                };
                if !self.failing {
                    self.failing = true;
                    tracing::warn!(host = self.url.host().unwrap_or(""), error = %why, spans = batch.count, "trace export failed; spans dropped (further failures are logged at debug until it recovers)");
                } else {
                    tracing::debug!(error = %why, spans = batch.count, "trace export failed");
                }
            }
        }
    }

    async fn post(&self, body: Bytes) -> Result<(), Failure> {
        let mut req = Request::new(Full::new(body));
        *req.method_mut() = Method::POST;
        *req.uri_mut() = self.url.clone();
        let h = req.headers_mut();
        h.insert(header::CONTENT_TYPE, JSON.clone());
        h.insert(header::USER_AGENT, USER_AGENT.clone());
        for (name, value) in &self.headers {
            h.insert(name.clone(), value.clone());
        }
        let exchange = async {
            let resp = self.client.request(req).await.map_err(|e| {
                if e.is_connect() {
                    Failure::Retry(None)
                } else {
                    Failure::Other(format!("the request failed: {e}"))
                }
            })?;
            let status = resp.status();
            let retry_after = resp
                .headers()
                .get(header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            // Read the (small) answer so the connection can be reused.
            let _ = http_body_util::Limited::new(resp.into_body(), 64 << 10)
                .collect()
                .await;
            if status.is_success() {
                Ok(())
            } else if matches!(
                status,
                StatusCode::TOO_MANY_REQUESTS
                    | StatusCode::BAD_GATEWAY
                    | StatusCode::SERVICE_UNAVAILABLE
                    | StatusCode::GATEWAY_TIMEOUT
            ) {
                Err(Failure::Retry(retry_after))
            } else {
                Err(Failure::Other(format!(
                    "the collector answered HTTP {status}"
                )))
            }
        };
        tokio::time::timeout(POST_TIMEOUT, exchange)
            .await
            .unwrap_or_else(|_| Err(Failure::Other("no answer in time".into())))
    }
}

enum Failure {
    /// OTLP says try again (429, 502, 503, 504, or no connection), maybe after this long.
    Retry(Option<Duration>),
    Other(String),
}
