//! No usage record is lost, through the real binary: a graceful stop with 20 requests in flight,
//! and a PostgreSQL outage (a TCP proxy between the gateway and the database, cut and restored)
//! while requests keep coming. Writer-level cases are in `usage_writer.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{eventually, runtime, write, Answer, Gateway};
use mock_provider::{MockServer, Options};
use serde_json::{json, Value};
use store::testing::TestDb;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

fn chat(model: &str, stream: bool, i: usize) -> Value {
    // A different prompt length per request, so every record has its own token counts.
    let words = vec!["word"; i + 1].join(" ");
    let mut body = json!({ "model": model, "messages": [{ "role": "user", "content": words }] });
    if stream {
        body["stream"] = json!(true);
        body["stream_options"] = json!({ "include_usage": true });
    }
    body
}

/// (request id, prompt tokens, completion tokens) of a complete answer; panics on anything less.
fn complete(a: &Answer, stream: bool) -> (String, u64, u64) {
    assert_eq!(a.status, 200, "{}", a.body);
    let usage = if stream {
        assert!(
            a.body.ends_with("data: [DONE]\n\n"),
            "stream cut: {}",
            a.body
        );
        assert!(!a.body.contains("\"error\""), "{}", a.body);
        a.events()
            .into_iter()
            .rev()
            .find(|e| e["usage"].is_object())
            .expect("a usage chunk")["usage"]
            .clone()
    } else {
        a.json()["usage"].clone()
    };
    (
        a.header("x-request-id").unwrap().to_owned(),
        usage["prompt_tokens"].as_u64().unwrap(),
        usage["completion_tokens"].as_u64().unwrap(),
    )
}

#[test]
fn sigterm_with_20_requests_in_flight_loses_no_record() {
    let rt = runtime();
    let mock = rt.block_on(MockServer::start(Options::default())).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("sy.db");
    let path = write(
        dir.path(),
        "switchyard.yaml",
        &format!(
            "listen: 127.0.0.1:0\nstore: \"sqlite://{db}\"\nauth: none\nserver: {{ shutdown_grace: 30s }}\nproviders:\n  up: {{ type: openai-compatible, base_url: \"{mock}/v1\" }}\nmodels:\n  slow: {{ targets: [{{ provider: up, model: \"m+delay_ms=1500\" }}], retries: 0 }}\n",
            db = db.display(),
            mock = mock.url(),
        ),
    );
    let mut gw = Gateway::start(&path, dir.path(), dir.path().join("gw.log"));

    // 20 clients, half of them streaming, each held by the mock for 1.5 s before it answers.
    let clients: Vec<_> = (0..20)
        .map(|i| {
            let addr = gw.addr.clone();
            let stream = i % 2 == 1;
            std::thread::spawn(move || {
                let a = common::http(
                    &addr,
                    "POST",
                    "/v1/chat/completions",
                    None,
                    Some(&chat("slow", stream, i)),
                );
                complete(&a, stream)
            })
        })
        .collect();
    // Every one of them is in flight: the mock has received all 20.
    let received = eventually(Duration::from_secs(20), || {
        (mock.stats().requests >= 20).then_some(())
    });
    assert!(
        received.is_some(),
        "the mock saw {} requests",
        mock.stats().requests
    );
    assert_eq!(mock.stats().requests, 20);
    gw.signal("-TERM");

    // Graceful drain: every client gets its whole answer.
    let answered: BTreeMap<String, (u64, u64)> = clients
        .into_iter()
        .map(|c| {
            let (id, p, c) = c.join().unwrap();
            (id, (p, c))
        })
        .collect();
    assert_eq!(answered.len(), 20);
    let status = gw
        .wait_exit(Duration::from_secs(30))
        .expect("the gateway did not exit");
    assert!(status.success(), "{status:?}\n{}", gw.log_text());

    // After exit, the store holds exactly those 20 records, with the tokens the clients saw.
    let stored = rt.block_on(async {
        let store = store::Store::connect(&format!("sqlite://{}", db.display()))
            .await
            .unwrap();
        let filter = store::usage::Filter {
            limit: 1000,
            ..Default::default()
        };
        store.usage().recent(&filter).await.unwrap()
    });
    assert_eq!(stored.len(), 20, "{stored:#?}");
    for r in &stored {
        let (p, c) = answered
            .get(&r.request_id)
            .unwrap_or_else(|| panic!("a record nobody asked for: {r:?}"));
        assert_eq!((r.input_tokens, r.output_tokens), (*p, *c), "{r:?}");
        assert_eq!(
            (r.status, r.completed, r.client_gone),
            (200, Some(true), Some(false))
        );
        assert_eq!(r.error, None);
        assert_eq!(r.endpoint, "chat.completions");
    }
    assert_eq!(stored.iter().filter(|r| r.streamed).count(), 10);
    drop(mock);
}

/// A TCP proxy in front of one address, that can be cut (listener and every connection
/// closed) and restored on the same port.
struct Proxy {
    addr: SocketAddr,
    upstream: SocketAddr,
    running: Mutex<Option<Running>>,
}

struct Running {
    accept: JoinHandle<()>,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Proxy {
    async fn start(upstream: SocketAddr) -> Arc<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy = Arc::new(Proxy {
            addr: listener.local_addr().unwrap(),
            upstream,
            running: Mutex::new(None),
        });
        proxy.serve(listener);
        proxy
    }

    fn serve(&self, listener: TcpListener) {
        let connections: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let conns = connections.clone();
        let upstream = self.upstream;
        let accept = tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    continue;
                };
                let task = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                conns.lock().unwrap().push(task);
            }
        });
        *self.running.lock().unwrap() = Some(Running {
            accept,
            connections,
        });
    }

    /// Closes the listener and every connection: the database is unreachable from now on.
    async fn cut(&self) {
        let running = self.running.lock().unwrap().take().expect("running");
        running.accept.abort();
        let _ = running.accept.await;
        let tasks: Vec<_> = running.connections.lock().unwrap().drain(..).collect();
        for t in tasks {
            t.abort();
            let _ = t.await;
        }
    }

    /// Listens on the same port again.
    async fn restore(&self) {
        let mut tries = 0;
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(e) if tries < 100 => {
                    tries += 1;
                    eprintln!("rebinding {}: {e}", self.addr);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("cannot listen on {} again: {e}", self.addr),
            }
        };
        self.serve(listener);
    }
}

/// `url` with its `host:port` replaced by `addr`, and the address it named.
fn through(url: &str, addr: SocketAddr) -> (String, SocketAddr) {
    let (scheme, rest) = url.split_once("://").unwrap();
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let (user, host) = match authority.rsplit_once('@') {
        Some((u, h)) => (format!("{u}@"), h),
        None => (String::new(), authority),
    };
    let host = if host.contains(':') {
        host.to_owned()
    } else {
        format!("{host}:5432")
    };
    let target = host.to_socket_addrs().unwrap().next().unwrap();
    (format!("{scheme}://{user}{addr}{}", &rest[end..]), target)
}

async fn stored_ids(store: &store::Store) -> BTreeSet<String> {
    let filter = store::usage::Filter {
        limit: 1000,
        ..Default::default()
    };
    store
        .usage()
        .recent(&filter)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.request_id)
        .collect()
}

#[test]
fn a_postgres_outage_spools_records_and_replays_each_exactly_once() {
    let rt = runtime();
    let mock = rt.block_on(MockServer::start(Options::default())).unwrap();
    let db = rt.block_on(TestDb::postgres()).unwrap();
    let (_, pg) = through(&db.url, "127.0.0.1:1".parse().unwrap());
    let proxy = rt.block_on(Proxy::start(pg));
    let (store_url, _) = through(&db.url, proxy.addr);
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "switchyard.yaml",
        &format!(
            "listen: 127.0.0.1:0\nstore: \"{store_url}\"\nauth: none\nproviders:\n  up: {{ type: openai-compatible, base_url: \"{mock}/v1\" }}\nmodels:\n  m: {{ targets: [{{ provider: up, model: m }}] }}\n",
            mock = mock.url(),
        ),
    );
    // The spool goes to the gateway's working directory (the store is not a file).
    let gw = Gateway::start(&path, dir.path(), dir.path().join("gw.log"));
    let send = |n: usize, offset: usize| -> Vec<String> {
        (0..n)
            .map(|i| {
                let stream = i % 2 == 1;
                complete(
                    &gw.post("/v1/chat/completions", None, &chat("m", stream, offset + i)),
                    stream,
                )
                .0
            })
            .collect()
    };

    // N requests while the database is there: stored.
    let before: BTreeSet<String> = send(10, 0).into_iter().collect();
    let stored = eventually(Duration::from_secs(20), || {
        let ids = rt.block_on(stored_ids(&db.store));
        (ids == before).then_some(ids)
    });
    assert!(
        stored.is_some(),
        "the first records never reached PostgreSQL"
    );
    assert_eq!(gw.metric("switchyard_usage_spool_bytes"), Some(0.0));

    // The database goes away; M more requests still succeed, and their records are spooled.
    rt.block_on(proxy.cut());
    let during: BTreeSet<String> = send(10, 10).into_iter().collect();
    let spooled = eventually(Duration::from_secs(30), || {
        gw.metric("switchyard_usage_spool_bytes")
            .filter(|b| *b > 0.0)
    });
    assert!(spooled.is_some(), "nothing was spooled:\n{}", gw.log_text());
    let spool_files: u64 = std::fs::read_dir(dir.path().join("switchyard-spool"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert!(spool_files > 0, "the spool directory is empty");
    assert!(rt.block_on(stored_ids(&db.store)).is_disjoint(&during));

    // The database is back: every record arrives, each exactly once, and none was dropped.
    rt.block_on(proxy.restore());
    let all: BTreeSet<String> = before.union(&during).cloned().collect();
    let replayed = eventually(Duration::from_secs(60), || {
        let ids = rt.block_on(stored_ids(&db.store));
        (ids == all).then_some(ids)
    });
    assert!(
        replayed.is_some(),
        "stored {:?} of {}\n{}",
        rt.block_on(stored_ids(&db.store)).len(),
        all.len(),
        gw.log_text()
    );
    let rows: i64 = rt.block_on(async {
        let store = store::Store::connect(&db.url).await.unwrap();
        let filter = store::usage::Filter {
            limit: 1000,
            ..Default::default()
        };
        store.usage().recent(&filter).await.unwrap().len() as i64
    });
    assert_eq!(rows, 20, "a record stored twice or lost");
    assert_eq!(
        gw.metric("switchyard_usage_records_dropped_total"),
        Some(0.0)
    );
    let drained = eventually(Duration::from_secs(20), || {
        gw.metric("switchyard_usage_spool_bytes")
            .filter(|b| *b == 0.0)
    });
    assert!(drained.is_some(), "the spool was not emptied");
    drop(gw);
    drop(mock);
}
