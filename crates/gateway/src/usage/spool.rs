//! The on-disk spool: usage records the store could not take yet, as append-only files of
//! newline-delimited JSON (one `store::usage::Record` a line), replayed into the store when it
//! is back. It owns the files under its directory and nothing else; it never talks to the store.
//!
//! # Files
//!
//! `usage-<seq>.jsonl` segments, `seq` increasing. One segment is *active* (appended to); it is
//! sealed when it reaches [`Spool::open`]'s `segment_bytes` or when the replayer asks
//! ([`Spool::seal`]). Sealed segments never change again: the replayer reads them and removes
//! each one once all its records are in the store. Segments left by an earlier process are all
//! sealed (a new process starts a new `seq`), so a restart replays them. Lines that are not a
//! record (a write torn by a crash or a full disk) are set aside in `rejected-<seq>.jsonl` for
//! an operator and counted in `switchyard_usage_records_dropped_total`.
//!
//! One process per directory: two gateways must not share a spool directory.
//!
//! # What a crash can lose
//!
//! Every append is a single `write(2)` of whole lines, straight to the file (no buffer in the
//! process), and batches are `fsync`ed (`sync_data`) before the writer counts them as spooled.
//! So:
//!
//! - **`kill -9` of the gateway** loses nothing that reached the spool: written bytes are in the
//!   kernel's page cache, which outlives the process. It loses only what was still in the
//!   process's memory: the writer's queue and the batch being written, at most
//!   `Options::queue_capacity` records (10,000 by default) — the live value is the
//!   `switchyard_usage_queue_depth` gauge, which is close to 0 while the store keeps up (the
//!   queue is emptied every `flush_interval`, 100 ms by default).
//! - **Power loss or a kernel crash** can additionally lose what was appended since the last
//!   `fsync`: the records overflowed from a full queue since the writer's last tick (at most one
//!   `flush_interval` of them), and a batch whose `fsync` had not returned (at most
//!   `batch_size`, 4,000 by default). A torn last line is rejected and counted, never misread.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use store::usage::Record;
use tokio::io::{AsyncBufReadExt, BufReader};

/// The spool's directory when the configuration names none: `switchyard-spool` next to a
/// SQLite database file, else in the working directory.
pub fn default_dir(store_url: &str) -> PathBuf {
    const NAME: &str = "switchyard-spool";
    let path = store_url
        .strip_prefix("sqlite://")
        .or_else(|| store_url.strip_prefix("sqlite:"))
        .map(|p| p.split('?').next().unwrap_or(p))
        .filter(|p| !p.is_empty() && !p.contains(":memory:"));
    match path.and_then(|p| Path::new(p).parent()) {
        Some(parent) => parent.join(NAME),
        None => PathBuf::from(NAME),
    }
}

/// Records as spool lines: one JSON object and a newline each.
pub fn encode(records: &[Record]) -> Vec<u8> {
    let mut out = Vec::with_capacity(records.len() * 512);
    for r in records {
        // A record is plain strings and numbers: serializing it into memory cannot fail, and if
        // it ever did, the line would be rejected on replay rather than corrupt its neighbours.
        if serde_json::to_writer(&mut out, r).is_ok() {
            out.push(b'\n');
        }
    }
    out
}

/// A spool directory; see the module documentation. Methods do blocking file IO: call them
/// from `spawn_blocking`, except the single-record append of a full queue (one `write(2)`).
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    segment_bytes: u64,
    max_bytes: Option<u64>,
    active: Mutex<Active>,
    /// Bytes in all segments, sealed and active.
    bytes: AtomicU64,
    /// The active segment has bytes not yet `fsync`ed.
    dirty: AtomicBool,
}

#[derive(Debug)]
struct Active {
    /// The open segment; `None` until the next append creates segment `seq`.
    file: Option<Arc<File>>,
    seq: u64,
    len: u64,
}

/// A sealed segment, ready to replay.
#[derive(Debug, Clone)]
pub struct Segment {
    pub seq: u64,
    pub path: PathBuf,
    pub bytes: u64,
}

impl Spool {
    /// Opens (creating it if needed) the spool in `dir`. Segments are sealed once they hold
    /// `segment_bytes`; appends fail once all segments hold `max_bytes` (`None`: until the disk
    /// is full).
    pub fn open(dir: &Path, segment_bytes: u64, max_bytes: Option<u64>) -> io::Result<Spool> {
        fs::create_dir_all(dir)?;
        let mut next = 0;
        let mut bytes = 0;
        for seg in list(dir)? {
            next = next.max(seg.seq + 1);
            bytes += seg.bytes;
        }
        Ok(Spool {
            dir: dir.to_owned(),
            segment_bytes: segment_bytes.max(1),
            max_bytes,
            active: Mutex::new(Active {
                file: None,
                seq: next,
                len: 0,
            }),
            bytes: AtomicU64::new(bytes),
            dirty: AtomicBool::new(false),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Bytes waiting in the spool.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.bytes() == 0
    }

    /// Whether [`Spool::sync`] has something to do.
    pub fn needs_sync(&self) -> bool {
        self.dirty.load(Relaxed)
    }

    /// Appends lines made by [`encode`] with one `write(2)`, then, if `sync`, `fsync`s them.
    /// On failure nothing of `lines` stays in the spool.
    pub fn append(&self, lines: &[u8], sync: bool) -> io::Result<()> {
        if lines.is_empty() {
            return Ok(());
        }
        let n = lines.len() as u64;
        if let Some(max) = self.max_bytes {
            if self.bytes().saturating_add(n) > max {
                return Err(io::Error::other(format!("spool full ({max} bytes)")));
            }
        }
        let mut active = self.lock();
        let file = match &active.file {
            Some(f) => Arc::clone(f),
            None => {
                let path = self.segment_path(active.seq);
                let f = Arc::new(OpenOptions::new().create(true).append(true).open(&path)?);
                // Make the new name itself durable.
                File::open(&self.dir).and_then(|d| d.sync_all())?;
                active.file = Some(Arc::clone(&f));
                active.len = f.metadata()?.len();
                f
            }
        };
        if let Err(e) = (&*file).write_all(lines) {
            // Cut a partial write off, so the next line does not join it; if even that fails,
            // start a new segment and leave the torn line to be rejected on replay.
            if file.set_len(active.len).is_err() {
                self.bytes.fetch_add(n, Relaxed);
                Self::close(&mut active);
            }
            return Err(e);
        }
        active.len += n;
        self.bytes.fetch_add(n, Relaxed);
        if active.len >= self.segment_bytes {
            file.sync_data()?;
            Self::close(&mut active);
            return Ok(());
        }
        if !sync {
            self.dirty.store(true, Relaxed);
            return Ok(());
        }
        // Appends by others during the `fsync` set the flag again for the next `sync`.
        self.dirty.store(false, Relaxed);
        drop(active);
        file.sync_data()
            .inspect_err(|_| self.dirty.store(true, Relaxed))
    }

    /// `fsync`s the active segment if it has unsynced appends.
    pub fn sync(&self) -> io::Result<()> {
        let file = {
            let active = self.lock();
            if !self.dirty.swap(false, Relaxed) {
                return Ok(());
            }
            active.file.clone()
        };
        match file {
            Some(f) => f
                .sync_data()
                .inspect_err(|_| self.dirty.store(true, Relaxed)),
            None => Ok(()),
        }
    }

    /// Seals the active segment if it holds anything, so [`Spool::sealed`] lists it; the next
    /// append starts a new one. Returns whether a segment was sealed.
    pub fn seal(&self) -> io::Result<bool> {
        let mut active = self.lock();
        match &active.file {
            Some(f) if active.len > 0 => {
                f.sync_data()?;
                self.dirty.store(false, Relaxed);
                Self::close(&mut active);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Sealed segments, oldest first.
    pub fn sealed(&self) -> io::Result<Vec<Segment>> {
        // Every segment before the active one (open, or the next to be created) is sealed, and
        // segments created while the directory is read get a later number: they are left out.
        let active = self.lock().seq;
        let mut segments = list(&self.dir)?;
        segments.retain(|s| s.seq < active);
        Ok(segments)
    }

    /// Removes a replayed segment.
    pub fn remove(&self, segment: &Segment) -> io::Result<()> {
        fs::remove_file(&segment.path)?;
        self.bytes
            .fetch_sub(segment.bytes.min(self.bytes()), Relaxed);
        Ok(())
    }

    /// Keeps lines that are not records, for an operator, in `rejected-<seq>.jsonl`.
    pub fn reject(&self, segment: &Segment, lines: &[Vec<u8>]) -> io::Result<()> {
        let path = self.dir.join(format!("rejected-{:016}.jsonl", segment.seq));
        let mut f = OpenOptions::new().create(true).append(true).open(path)?;
        let mut out = Vec::new();
        for l in lines {
            out.extend_from_slice(l);
            out.push(b'\n');
        }
        f.write_all(&out)?;
        f.sync_data()
    }

    fn segment_path(&self, seq: u64) -> PathBuf {
        self.dir.join(format!("usage-{seq:016}.jsonl"))
    }

    fn close(active: &mut Active) {
        if active.file.take().is_some() {
            active.seq += 1;
            active.len = 0;
        }
    }

    fn lock(&self) -> MutexGuard<'_, Active> {
        // The guarded state stays consistent at every step, so a panic elsewhere cannot leave
        // it half-changed.
        self.active.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The segments in `dir`, oldest first.
fn list(dir: &Path) -> io::Result<Vec<Segment>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(seq) = name
            .to_str()
            .and_then(|n| n.strip_prefix("usage-"))
            .and_then(|n| n.strip_suffix(".jsonl"))
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        out.push(Segment {
            seq,
            path: entry.path(),
            bytes: entry.metadata()?.len(),
        });
    }
    out.sort_by_key(|s| s.seq);
    Ok(out)
}

/// Reads a sealed segment back, a chunk of records at a time, so replaying a large spool takes
/// no more memory than one batch.
pub struct Reader {
    lines: BufReader<tokio::fs::File>,
}

/// Up to `max` records of a segment, and the lines around them that were not records.
#[derive(Debug, Default)]
pub struct Chunk {
    pub records: Vec<Record>,
    pub bad: Vec<Vec<u8>>,
    /// The segment has no more lines.
    pub done: bool,
}

impl Reader {
    pub async fn open(path: &Path) -> io::Result<Reader> {
        let file = tokio::fs::File::open(path).await?;
        Ok(Reader {
            lines: BufReader::with_capacity(256 * 1024, file),
        })
    }

    pub async fn next_chunk(&mut self, max: usize) -> io::Result<Chunk> {
        let mut chunk = Chunk::default();
        let mut line = Vec::new();
        while chunk.records.len() < max.max(1) {
            line.clear();
            if self.lines.read_until(b'\n', &mut line).await? == 0 {
                chunk.done = true;
                break;
            }
            let text = line.strip_suffix(b"\n").unwrap_or(&line);
            if text.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match serde_json::from_slice::<Record>(text) {
                Ok(r) => chunk.records.push(r),
                Err(_) => chunk.bad.push(text.to_vec()),
            }
        }
        Ok(chunk)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(i: u64) -> Record {
        Record {
            request_id: format!("req-{i}"),
            ts: 1_700_000_000_000,
            model: "m".into(),
            output_tokens: i,
            ..Record::default()
        }
    }

    async fn read_all(path: &Path) -> Chunk {
        let mut r = Reader::open(path).await.unwrap();
        let mut all = Chunk::default();
        loop {
            let c = r.next_chunk(3).await.unwrap();
            all.records.extend(c.records);
            all.bad.extend(c.bad);
            if c.done {
                return all;
            }
        }
    }

    #[test]
    fn default_dir_sits_next_to_the_sqlite_file() {
        assert_eq!(
            default_dir("sqlite:///var/lib/sy/switchyard.db?mode=rwc"),
            PathBuf::from("/var/lib/sy/switchyard-spool")
        );
        assert_eq!(
            default_dir("sqlite://switchyard.db"),
            PathBuf::from("switchyard-spool")
        );
        assert_eq!(
            default_dir("sqlite::memory:"),
            PathBuf::from("switchyard-spool")
        );
        assert_eq!(
            default_dir("postgres://u:p@db/sy"),
            PathBuf::from("switchyard-spool")
        );
    }

    #[tokio::test]
    async fn appended_records_read_back_after_sealing() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), 1 << 20, None).unwrap();
        assert!(spool.is_empty());
        spool
            .append(&encode(&(0..5).map(record).collect::<Vec<_>>()), true)
            .unwrap();
        spool.append(&encode(&[record(5)]), false).unwrap();
        assert!(spool.needs_sync());
        spool.sync().unwrap();
        assert!(!spool.needs_sync());
        // The active segment is not replayable until sealed.
        assert!(spool.sealed().unwrap().is_empty());
        assert!(spool.seal().unwrap());
        assert!(!spool.seal().unwrap(), "nothing left to seal");
        let sealed = spool.sealed().unwrap();
        assert_eq!(sealed.len(), 1);
        let back = read_all(&sealed[0].path).await;
        assert_eq!(back.records, (0..6).map(record).collect::<Vec<_>>());
        assert!(back.bad.is_empty());
        spool.remove(&sealed[0]).unwrap();
        assert!(spool.is_empty());
        assert!(spool.sealed().unwrap().is_empty());
    }

    #[tokio::test]
    async fn segments_rotate_by_size_and_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let one = encode(&[record(0)]).len() as u64;
        let spool = Spool::open(dir.path(), one * 2, None).unwrap();
        for i in 0..5 {
            spool.append(&encode(&[record(i)]), false).unwrap();
        }
        // Two full segments sealed by size; the fifth record is in the active one.
        assert_eq!(spool.sealed().unwrap().len(), 2);
        let bytes = spool.bytes();
        drop(spool);

        // A new process sees every segment, the old active one included, as sealed.
        let spool = Spool::open(dir.path(), one * 2, None).unwrap();
        assert_eq!(spool.bytes(), bytes);
        let sealed = spool.sealed().unwrap();
        assert_eq!(sealed.len(), 3);
        let mut all = Vec::new();
        for s in &sealed {
            all.extend(read_all(&s.path).await.records);
        }
        assert_eq!(all, (0..5).map(record).collect::<Vec<_>>());
        // New appends go to a segment after the old ones.
        spool.append(&encode(&[record(9)]), true).unwrap();
        assert!(spool.seal().unwrap());
        let last = spool.sealed().unwrap().pop().unwrap();
        assert!(last.seq > sealed[2].seq);
    }

    #[tokio::test]
    async fn a_torn_line_is_rejected_not_misread() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), 1 << 20, None).unwrap();
        spool
            .append(&encode(&[record(1), record(2)]), true)
            .unwrap();
        spool.seal().unwrap();
        let seg = spool.sealed().unwrap().remove(0);
        // A crash in the middle of a write leaves half a line at the end.
        let mut torn = encode(&[record(3)]);
        torn.truncate(torn.len() / 2);
        OpenOptions::new()
            .append(true)
            .open(&seg.path)
            .unwrap()
            .write_all(&torn)
            .unwrap();
        let back = read_all(&seg.path).await;
        assert_eq!(back.records, vec![record(1), record(2)]);
        assert_eq!(back.bad, vec![torn]);
        spool.reject(&seg, &back.bad).unwrap();
        assert!(dir
            .path()
            .join(format!("rejected-{:016}.jsonl", seg.seq))
            .exists());
    }

    #[test]
    fn a_segment_opened_after_the_listing_started_is_not_sealed() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), 1 << 20, None).unwrap();
        spool.append(&encode(&[record(1)]), false).unwrap();
        assert!(spool.seal().unwrap());
        // A file with a later number than the active one (as if created during a listing).
        fs::write(
            spool.segment_path(spool.lock().seq + 1),
            encode(&[record(2)]),
        )
        .unwrap();
        let sealed = spool.sealed().unwrap();
        assert_eq!(sealed.len(), 1);
        assert!(sealed[0].seq < spool.lock().seq);
    }

    #[test]
    fn a_full_spool_refuses_whole_appends() {
        let dir = tempfile::tempdir().unwrap();
        let line = encode(&[record(1)]);
        let spool = Spool::open(dir.path(), 1 << 20, Some(line.len() as u64 * 2)).unwrap();
        spool.append(&line, false).unwrap();
        spool.append(&line, false).unwrap();
        assert!(spool.append(&line, false).is_err());
        assert_eq!(spool.bytes(), line.len() as u64 * 2);
    }
}
