//! The batching usage writer: takes records off the request path through a bounded queue and
//! writes them to the store in batches, spooling to disk what the store cannot take. It owns
//! two background tasks and the spool; it must never block or await in [`Writer::send`].
//!
//! - **Flusher**: drains the queue into batches of `batch_size` (or whatever arrived within
//!   `flush_interval`) and inserts each with one `insert_shared` (idempotent by request id). It
//!   is woken by its tick or when a whole batch is queued, never per record (a wake-up per
//!   request cost a task switch, often across threads, on the request path). A
//!   batch the store refuses or does not answer within `store_timeout` goes to the spool, and
//!   the writer turns *degraded*: later batches go straight to the spool, without waiting on a
//!   store that is down, until the replayer has emptied it.
//! - **Replayer**: re-reads sealed spool segments and inserts them, oldest first, removing each
//!   segment once all its records are stored; it retries with exponential backoff
//!   (`retry_min`..`retry_max`) while the store fails. Replaying a record twice is harmless.
//!
//! Memory is bounded: at most `queue_capacity` records are held (queue plus the batch being
//! written). When the queue is full, [`Writer::send`] appends the record to the spool itself
//! (one `write(2)`, no `fsync`); only if that fails too is the record counted in
//! `switchyard_usage_records_dropped_total`. What a crash can lose is documented in
//! [`super::spool`]. The bytes waiting in the spool are the `switchyard_usage_spool_bytes`
//! gauge, refreshed every `flush_interval`.

use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use store::usage::Record;
use store::Store;
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::task::JoinHandle;
use tokio::time::{timeout, MissedTickBehavior};

use super::spool::{self, Segment, Spool};

/// How the writer batches, queues and spools.
#[derive(Debug, Clone)]
pub struct Options {
    /// Records per insert at most. Below ~40,000 requests/s the flush interval ends a batch
    /// first. Every commit costs SQLite a few hundred microseconds whatever its size (the last
    /// page of each index and of the table written again, the WAL frames, the writer thread
    /// woken): 4,000 rather than 1,000 cut the whole gateway's CPU per request by ~4% at
    /// 30,000 requests/s with keys, limits and usage records on (two builds taking turns under
    /// the same load; 100 per batch doubled the writer thread's CPU), with the same peak RSS
    /// (62–66 MiB, most of it the tokenizer's vocabulary).
    pub batch_size: usize,
    /// A partial batch waits at most this long.
    pub flush_interval: Duration,
    /// Records held in memory at most (queue plus the batch being written); at least twice
    /// `batch_size` (a smaller batch is used otherwise).
    pub queue_capacity: usize,
    pub spool_dir: PathBuf,
    /// A spool segment is sealed (replayable) at this size.
    pub segment_bytes: u64,
    /// The spool refuses appends beyond this (records are then dropped and counted); `None`:
    /// until the disk is full.
    pub spool_max_bytes: Option<u64>,
    /// An insert that takes longer counts as failed (its batch is spooled; if it did commit,
    /// the replay skips it). A guard against a hung connection, not a latency target: a
    /// store that is merely slow should not be retried, which would only add to its load.
    pub store_timeout: Duration,
    /// The first retry after a store failure, and how often an idle replayer looks at the spool.
    pub retry_min: Duration,
    /// The longest wait between retries while the store stays down.
    pub retry_max: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            batch_size: 4000,
            flush_interval: Duration::from_millis(100),
            queue_capacity: 10_000,
            spool_dir: PathBuf::from("switchyard-spool"),
            segment_bytes: 16 << 20,
            spool_max_bytes: None,
            store_timeout: Duration::from_secs(30),
            retry_min: Duration::from_millis(200),
            retry_max: Duration::from_secs(10),
        }
    }
}

/// What a writer has done so far. Counts are records.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Held in memory now (queue plus the batch being written).
    pub queued: usize,
    /// Handed to [`Writer::send`].
    pub sent: u64,
    /// New rows in the store (a replayed record that was already stored is not counted).
    pub stored: u64,
    /// Written to the spool, by the flusher or by [`Writer::send`] on a full queue.
    pub spooled: u64,
    /// Of `spooled`, written by [`Writer::send`] because the queue was full (or shut).
    pub overflowed: u64,
    /// Read back from the spool and inserted (new or already stored).
    pub replayed: u64,
    /// Lost: neither stored nor spooled, or unreadable in the spool.
    pub dropped: u64,
    /// Bytes waiting in the spool.
    pub spool_bytes: u64,
}

/// The process's usage writer. Start it once, [`Writer::send`] every record, and await
/// [`Writer::shutdown`] before exit. Dropping it without `shutdown` stops its tasks at once
/// (like a crash: queued records are lost, spooled ones are replayed by the next writer).
#[derive(Debug)]
pub struct Writer {
    tx: mpsc::Sender<Record>,
    shared: Arc<Shared>,
    tasks: Mutex<Option<Tasks>>,
}

#[derive(Debug)]
struct Tasks {
    flusher: JoinHandle<()>,
    replayer: JoinHandle<()>,
    stop_flusher: oneshot::Sender<()>,
    stop_replayer: oneshot::Sender<()>,
}

impl Writer {
    /// Starts a writer on `store`. Must be called within a tokio runtime; fails if there is
    /// none or the spool directory cannot be opened. Spooled records from an earlier run are
    /// replayed right away.
    pub fn start(store: Store, options: Options) -> io::Result<Writer> {
        let slot = OnceLock::new();
        let _ = slot.set(store);
        Writer::spawn(slot, None, options)
    }

    /// Starts a writer that connects to `url` itself, in the background, retrying with backoff
    /// until the store answers; meanwhile records go to the spool. For a gateway that must
    /// start while its store is down.
    pub fn connect(
        url: &str,
        store_options: store::Options,
        options: Options,
    ) -> io::Result<Writer> {
        Writer::spawn(
            OnceLock::new(),
            Some((url.to_owned(), store_options)),
            options,
        )
    }

    fn spawn(
        store: OnceLock<Store>,
        connect: Option<(String, store::Options)>,
        mut options: Options,
    ) -> io::Result<Writer> {
        let runtime = tokio::runtime::Handle::try_current().map_err(io::Error::other)?;
        options.queue_capacity = options.queue_capacity.max(2);
        options.batch_size = options.batch_size.clamp(1, options.queue_capacity / 2);
        let spool = Spool::open(
            &options.spool_dir,
            options.segment_bytes,
            options.spool_max_bytes,
        )?;
        let (tx, rx) = mpsc::channel(options.queue_capacity - options.batch_size);
        let shared = Arc::new(Shared {
            spool,
            store,
            connect,
            degraded: AtomicBool::new(false),
            batch_ready: Notify::new(),
            held: AtomicUsize::new(0),
            sent: AtomicU64::new(0),
            stored: AtomicU64::new(0),
            spooled: AtomicU64::new(0),
            overflowed: AtomicU64::new(0),
            replayed: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            options,
        });
        let (stop_flusher, flusher_stopped) = oneshot::channel();
        let (stop_replayer, replayer_stopped) = oneshot::channel();
        let flusher = runtime.spawn(Arc::clone(&shared).flush_loop(rx, flusher_stopped));
        let replayer = runtime.spawn(Arc::clone(&shared).replay_loop(replayer_stopped));
        Ok(Writer {
            tx,
            shared,
            tasks: Mutex::new(Some(Tasks {
                flusher,
                replayer,
                stop_flusher,
                stop_replayer,
            })),
        })
    }

    /// Queues a record for the store. Never awaits and never waits for the store: when the
    /// queue is full (or the writer has shut down) the record is appended to the spool right
    /// here instead, one `write(2)` into the page cache under a short lock, without `fsync`.
    pub fn send(&self, record: Record) {
        self.shared.sent.fetch_add(1, Relaxed);
        match self.tx.try_send(record) {
            // The flusher is not woken per record (it would cost a task wake-up, often across
            // threads, per request): it drains the queue on its tick, or once a batch is queued.
            Ok(()) => {
                let queued = self.tx.max_capacity() - self.tx.capacity();
                if queued >= self.shared.options.batch_size {
                    self.shared.batch_ready.notify_one();
                }
            }
            Err(mpsc::error::TrySendError::Full(r) | mpsc::error::TrySendError::Closed(r)) => {
                self.shared.overflow(&r);
            }
        }
    }

    /// Records held in memory: never more than `Options::queue_capacity`.
    pub fn queue_depth(&self) -> usize {
        let queued = self.tx.max_capacity() - self.tx.capacity();
        queued + self.shared.held.load(Relaxed)
    }

    pub fn stats(&self) -> Stats {
        let s = &self.shared;
        Stats {
            queued: self.queue_depth(),
            sent: s.sent.load(Relaxed),
            stored: s.stored.load(Relaxed),
            spooled: s.spooled.load(Relaxed),
            overflowed: s.overflowed.load(Relaxed),
            replayed: s.replayed.load(Relaxed),
            dropped: s.dropped.load(Relaxed),
            spool_bytes: s.spool.bytes(),
        }
    }

    /// Writes everything queued, then makes one last attempt to replay the spool, and stops the
    /// background tasks. Returns when done: records the store could not take are in the spool
    /// (`Stats::spool_bytes` > 0), `fsync`ed, for the next start. Records sent afterwards go
    /// straight to the spool. Waits at most about two `store_timeout`s when the store hangs.
    pub async fn shutdown(&self) -> Stats {
        let tasks = self
            .tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(t) = tasks {
            let _ = t.stop_flusher.send(());
            if let Err(e) = t.flusher.await {
                tracing::error!(error = %e, "usage flusher ended abnormally");
            }
            let _ = t.stop_replayer.send(());
            if let Err(e) = t.replayer.await {
                tracing::error!(error = %e, "usage replayer ended abnormally");
            }
        }
        self.shared.sync_spool().await;
        let m = crate::metrics::global();
        m.usage_queue_depth
            .store(self.queue_depth() as u64, Relaxed);
        m.usage_spool_bytes
            .store(self.shared.spool.bytes(), Relaxed);
        self.stats()
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        if let Some(t) = self
            .tasks
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            t.flusher.abort();
            t.replayer.abort();
        }
    }
}

/// State shared by the writer handle and its two tasks.
#[derive(Debug)]
struct Shared {
    spool: Spool,
    /// Set at start, or by the replayer once `connect` succeeds.
    store: OnceLock<Store>,
    connect: Option<(String, store::Options)>,
    /// The store failed: batches go to the spool until the replayer has caught up.
    degraded: AtomicBool,
    /// Signalled when a whole batch is queued.
    batch_ready: Notify,
    /// Records taken off the queue and not yet stored or spooled.
    held: AtomicUsize,
    sent: AtomicU64,
    stored: AtomicU64,
    spooled: AtomicU64,
    overflowed: AtomicU64,
    replayed: AtomicU64,
    dropped: AtomicU64,
    options: Options,
}

impl Shared {
    async fn flush_loop(
        self: Arc<Self>,
        mut rx: mpsc::Receiver<Record>,
        mut stop: oneshot::Receiver<()>,
    ) {
        let batch = self.options.batch_size;
        let mut buf = Vec::with_capacity(batch);
        // The first tick one interval from now (not at once, as `interval`'s is).
        let period = self.options.flush_interval;
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // Batches written per wake-up at most: what the queue holds, so the stop signal and
        // the spool sync are never starved by a steady stream of records.
        let rounds = self.options.queue_capacity / batch + 1;
        loop {
            tokio::select! {
                biased;
                _ = &mut stop => break,
                () = self.batch_ready.notified() => {
                    // Whole batches only; the rest waits for the tick.
                    for _ in 0..rounds {
                        if rx.len() + buf.len() < batch {
                            break;
                        }
                        self.take(&mut rx, &mut buf);
                        self.flush(&mut buf).await;
                    }
                }
                _ = tick.tick() => {
                    for _ in 0..rounds {
                        self.take(&mut rx, &mut buf);
                        if buf.is_empty() {
                            break;
                        }
                        self.flush(&mut buf).await;
                    }
                    self.sync_spool().await;
                    let m = crate::metrics::global();
                    m.usage_queue_depth.store((rx.len() + buf.len()) as u64, Relaxed);
                    m.usage_spool_bytes.store(self.spool.bytes(), Relaxed);
                }
            }
        }
        // Shutdown: refuse new records (they go to the spool), write what is queued.
        rx.close();
        loop {
            let room = batch - buf.len();
            if rx.recv_many(&mut buf, room).await == 0 {
                break;
            }
            self.held.store(buf.len(), Relaxed);
            if buf.len() >= batch {
                self.flush(&mut buf).await;
            }
        }
        if !buf.is_empty() {
            self.flush(&mut buf).await;
        }
        self.sync_spool().await;
    }

    /// Moves queued records into `buf`, up to a batch, without waiting.
    fn take(&self, rx: &mut mpsc::Receiver<Record>, buf: &mut Vec<Record>) {
        while buf.len() < self.options.batch_size {
            match rx.try_recv() {
                Ok(r) => buf.push(r),
                Err(_) => break,
            }
        }
        self.held.store(buf.len(), Relaxed);
    }

    /// Writes `buf` to the store, or to the spool if the store is down or refuses it.
    async fn flush(self: &Arc<Self>, buf: &mut Vec<Record>) {
        // Shared with the store's writer, kept here to be spooled if the insert fails.
        let records = Arc::new(std::mem::take(buf));
        let store = self.store.get().filter(|_| !self.degraded.load(Relaxed));
        if let Some(store) = store {
            match self.insert(store, records.clone()).await {
                Ok(n) => {
                    self.stored.fetch_add(n, Relaxed);
                    self.reuse(records, buf);
                    self.held.store(0, Relaxed);
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, records = records.len(),
                        "usage store write failed; spooling until it is back");
                    self.degraded.store(true, Relaxed);
                }
            }
        }
        self.spool_batch(records.clone()).await;
        self.reuse(records, buf);
        self.held.store(0, Relaxed);
    }

    /// Takes back a written batch's buffer as `buf`, emptied here (the records are freed on
    /// this thread), for the next batch. A new buffer of a whole batch (~1.4 MiB at 4,000
    /// records) for every batch came from fresh, cold memory; this one is still mapped. If
    /// the store's writer still holds the batch (a timed-out insert), `buf` is a new one.
    fn reuse(&self, records: Arc<Vec<Record>>, buf: &mut Vec<Record>) {
        *buf = match Arc::try_unwrap(records) {
            Ok(mut done) => {
                done.clear();
                done
            }
            Err(_) => Vec::with_capacity(self.options.batch_size),
        };
    }

    async fn insert(&self, store: &Store, records: Arc<Vec<Record>>) -> Result<u64, String> {
        match timeout(
            self.options.store_timeout,
            store.usage().insert_shared(records),
        )
        .await
        {
            Ok(Ok(n)) => Ok(n),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {:?}", self.options.store_timeout)),
        }
    }

    /// Appends a batch to the spool and `fsync`s it, off the runtime's threads.
    async fn spool_batch(self: &Arc<Self>, records: Arc<Vec<Record>>) {
        let n = records.len() as u64;
        let me = Arc::clone(self);
        let done =
            tokio::task::spawn_blocking(move || me.spool.append(&spool::encode(&records), true))
                .await;
        match done {
            Ok(Ok(())) => {
                self.spooled.fetch_add(n, Relaxed);
            }
            Ok(Err(e)) => self.drop_records(n, &e),
            Err(e) => self.drop_records(n, &e),
        }
    }

    /// The full-queue path of `send`: one record to the spool, synchronously, no `fsync`
    /// (the flusher's next tick does it).
    fn overflow(&self, record: &Record) {
        match self
            .spool
            .append(&spool::encode(std::slice::from_ref(record)), false)
        {
            Ok(()) => {
                self.spooled.fetch_add(1, Relaxed);
                self.overflowed.fetch_add(1, Relaxed);
            }
            Err(e) => self.drop_records(1, &e),
        }
    }

    async fn sync_spool(self: &Arc<Self>) {
        if !self.spool.needs_sync() {
            return;
        }
        let me = Arc::clone(self);
        match tokio::task::spawn_blocking(move || me.spool.sync()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "usage spool fsync failed"),
            Err(e) => tracing::error!(error = %e, "usage spool fsync failed"),
        }
    }

    fn drop_records(&self, n: u64, why: &dyn std::fmt::Display) {
        let before = self.dropped.fetch_add(n, Relaxed);
        crate::metrics::global()
            .usage_records_dropped
            .fetch_add(n, Relaxed);
        // Log the first loss and then every ten thousandth record, not every record.
        if before == 0 || before / 10_000 != (before + n) / 10_000 {
            tracing::error!(error = %why, dropped_total = before + n,
                "usage records lost: the spool cannot take them");
        }
    }

    async fn replay_loop(self: Arc<Self>, mut stop: oneshot::Receiver<()>) {
        let mut wait = self.options.retry_min;
        loop {
            wait = if self.replay().await {
                self.options.retry_min
            } else {
                (wait * 2).min(self.options.retry_max)
            };
            tokio::select! {
                biased;
                _ = &mut stop => break,
                () = tokio::time::sleep(wait) => {}
            }
        }
        // The flusher has stopped and spooled what the store would not take: one last try.
        self.replay().await;
    }

    /// Replays the whole spool. Returns whether the store took everything.
    async fn replay(self: &Arc<Self>) -> bool {
        let Some(store) = self.store().await else {
            return false;
        };
        if self.spool.is_empty() {
            self.degraded.store(false, Relaxed);
            return true;
        }
        // Sealed segments first, then the active one, sealed for the purpose. Records the
        // flusher spools meanwhile wait for the next round.
        for _ in 0..2 {
            let me = Arc::clone(self);
            let segments = match tokio::task::spawn_blocking(move || me.spool.sealed()).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "cannot list the usage spool");
                    return false;
                }
                Err(_) => return false,
            };
            for segment in segments {
                if !self.replay_segment(&store, &segment).await {
                    return false;
                }
            }
            let me = Arc::clone(self);
            match tokio::task::spawn_blocking(move || me.spool.seal()).await {
                Ok(Ok(true)) => {}
                Ok(Ok(false)) => break,
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "cannot seal the usage spool");
                    return false;
                }
                Err(_) => return false,
            }
        }
        if self.degraded.swap(false, Relaxed) {
            tracing::info!("usage store is back; spooled records replayed");
        }
        true
    }

    /// Inserts one sealed segment's records and removes it. Returns false, keeping the
    /// segment, if the store failed.
    async fn replay_segment(self: &Arc<Self>, store: &Store, segment: &Segment) -> bool {
        let mut reader = match spool::Reader::open(&segment.path).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, segment = %segment.path.display(),
                    "cannot read a usage spool segment");
                return false;
            }
        };
        let mut bad = Vec::new();
        loop {
            let chunk = match reader.next_chunk(self.options.batch_size).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(error = %e, segment = %segment.path.display(),
                        "cannot read a usage spool segment");
                    return false;
                }
            };
            bad.extend(chunk.bad);
            if !chunk.records.is_empty() {
                let count = chunk.records.len() as u64;
                match self.insert(store, Arc::new(chunk.records)).await {
                    Ok(n) => {
                        self.stored.fetch_add(n, Relaxed);
                        self.replayed.fetch_add(count, Relaxed);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "usage store still failing; will retry the spool");
                        return false;
                    }
                }
            }
            if chunk.done {
                break;
            }
        }
        // Lines that are not records are counted and set aside once, when the segment goes.
        let me = Arc::clone(self);
        let segment = segment.clone();
        let rejected = bad.len() as u64;
        let done = tokio::task::spawn_blocking(move || {
            if !bad.is_empty() {
                me.spool.reject(&segment, &bad)?;
            }
            me.spool.remove(&segment)
        })
        .await;
        match done {
            Ok(Ok(())) => {
                if rejected > 0 {
                    self.drop_records(rejected, &"unreadable lines in the usage spool (set aside)");
                }
                true
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, "cannot remove a replayed usage spool segment");
                false
            }
            Err(_) => false,
        }
    }

    /// The store, connecting first if this writer was started with a URL.
    async fn store(&self) -> Option<Store> {
        if let Some(s) = self.store.get() {
            return Some(s.clone());
        }
        let (url, options) = self.connect.as_ref()?;
        let connecting = timeout(
            self.options.store_timeout,
            Store::connect_with(url, options),
        );
        match connecting.await {
            Ok(Ok(s)) => {
                tracing::info!("usage store connected");
                Some(self.store.get_or_init(|| s).clone())
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "usage store unreachable; records wait in the spool");
                None
            }
            Err(_) => {
                tracing::warn!("usage store did not answer; records wait in the spool");
                None
            }
        }
    }
}
