//! Serving threads: one single-threaded Tokio runtime per CPU, as nginx runs one worker process
//! per CPU. The accept loop hands each new connection to the next worker, round robin; the
//! connection, its requests, their timers and the upstream sockets they open stay on that
//! thread. A multi-threaded runtime would move tasks between threads and wake idle threads to
//! steal work: on a busy 2-CPU machine that cost ~10% of the CPU per request (`bench/run`,
//! scenario b) for no gain, since every request is independent.
//!
//! The gateway's background tasks (usage writer, health checks, reloads) run on the main
//! runtime, beside the accept loop.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::thread::JoinHandle;

use tokio::runtime::Handle;
use tokio::sync::oneshot;

static COUNT: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static INDEX: Cell<usize> = const { Cell::new(0) };
}

/// How many serving threads were started (0 when connections are served on the caller's
/// runtime).
pub fn count() -> usize {
    COUNT.load(Relaxed)
}

/// This thread's worker number (0 on any other thread).
pub fn index() -> usize {
    INDEX.with(Cell::get)
}

/// The running serving threads; [`Workers::stop`] ends them.
pub struct Workers {
    handles: Vec<Handle>,
    threads: Vec<(oneshot::Sender<()>, JoinHandle<()>)>,
}

impl Workers {
    /// Starts `n` serving threads (at least one).
    pub fn start(n: usize) -> std::io::Result<Workers> {
        let n = n.max(1);
        let mut workers = Workers {
            handles: Vec::with_capacity(n),
            threads: Vec::with_capacity(n),
        };
        for i in 0..n {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let (stop, stopped) = oneshot::channel::<()>();
            workers.handles.push(runtime.handle().clone());
            let thread = std::thread::Builder::new()
                .name(format!("switchyard-worker-{i}"))
                .spawn(move || {
                    INDEX.with(|x| x.set(i));
                    // Spawned tasks run while the thread is in `block_on`; what is left when
                    // it is told to stop is dropped with the runtime.
                    runtime.block_on(async move {
                        let _ = stopped.await;
                    });
                })?;
            workers.threads.push((stop, thread));
        }
        COUNT.store(n, Relaxed);
        Ok(workers)
    }

    /// The workers' runtimes, to spawn connections on.
    pub fn handles(&self) -> &[Handle] {
        &self.handles
    }

    /// Ends every worker and waits for its thread: call once nothing uses them any more (after
    /// the graceful drain and the services' stop, whose connections may live on them).
    pub fn stop(self) {
        let threads: Vec<JoinHandle<()>> = self
            .threads
            .into_iter()
            .map(|(stop, thread)| {
                let _ = stop.send(());
                thread
            })
            .collect();
        for thread in threads {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Each worker runs what is spawned on it on its own thread, which knows its number; stop
    /// ends the threads.
    #[test]
    fn each_worker_runs_its_tasks_on_its_own_thread() {
        let workers = Workers::start(2).unwrap();
        assert_eq!(count(), 2);
        let mut seen = Vec::new();
        for handle in workers.handles() {
            let (tx, rx) = std::sync::mpsc::channel();
            handle.spawn(async move {
                let name = std::thread::current().name().map(str::to_owned);
                let _ = tx.send((index(), name));
            });
            seen.push(rx.recv_timeout(Duration::from_secs(10)).unwrap());
        }
        assert_eq!(
            seen,
            [
                (0, Some("switchyard-worker-0".to_owned())),
                (1, Some("switchyard-worker-1".to_owned())),
            ]
        );
        // Not a worker thread.
        assert_eq!(index(), 0);
        let handle = workers.handles()[0].clone();
        workers.stop();
        // The runtime is gone with its thread: a task spawned on it is dropped unrun (and with
        // it the sender, so `recv` answers at once).
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        handle.spawn(async move {
            let _ = tx.send(());
        });
        assert!(rx.recv().is_err());
    }
}
