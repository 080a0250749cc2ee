//! Keys, teams, limits and budgets, black box: the real binary, several replicas sharing one
//! PostgreSQL database and one Redis (a fresh database and key prefix per test), the admin API
//! and the `keys` command line.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{http, Answer, Gateway, BIN};
use serde_json::{json, Value};

const ADMIN: &str = "admin-key-for-keys-tests";

fn redis_url() -> String {
    std::env::var("SWITCHYARD_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into())
}

fn unique_prefix() -> String {
    let base = std::env::var("SWITCHYARD_TEST_REDIS_PREFIX").unwrap_or_else(|_| "sy_test:".into());
    format!("{base}keys-{:016x}", fastrand::u64(..))
}

/// A configuration with the built-in mock, priced at $1 per token so costs are easy to follow.
fn config(dir: &Path, name: &str, store: &str, redis: Option<(&str, &str, &str)>) -> PathBuf {
    let redis = match redis {
        Some((url, prefix, failure)) => {
            format!("redis: \"{url}\"\nredis_prefix: \"{prefix}\"\nredis_failure: {failure}\n")
        }
        None => String::new(),
    };
    let text = format!(
        "listen: 127.0.0.1:0\nstore: \"{store}\"\nadmin_key: {ADMIN}\n{redis}providers:\n  demo: {{ type: mock }}\nmodels:\n  demo-chat: {{ targets: [{{ provider: demo, model: m }}], price: {{ input: 1000000, output: 1000000 }} }}\n  other: {{ targets: [{{ provider: demo, model: o }}] }}\n"
    );
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// Starts the gateway with its working directory (where a spool would go) beside `config`.
fn start(config: &Path, log: PathBuf) -> Gateway {
    Gateway::start(config, config.parent().unwrap(), log)
}

fn chat(gw: &Gateway, key: &str, model: &str) -> Answer {
    let body = json!({ "model": model, "messages": [{ "role": "user", "content": "hello" }] });
    http(
        &gw.addr,
        "POST",
        "/v1/chat/completions",
        Some(key),
        Some(&body),
    )
}

fn create_key(gw: &Gateway, body: Value) -> (String, String) {
    let a = http(&gw.addr, "POST", "/admin/v1/keys", Some(ADMIN), Some(&body));
    assert_eq!(a.status, 201, "{}", a.body);
    let v = a.json();
    (
        v["id"].as_str().unwrap().to_string(),
        v["key"].as_str().unwrap().to_string(),
    )
}

/// Polls `f` until it is true, for at most `bound`.
fn eventually(bound: Duration, mut f: impl FnMut() -> bool) -> bool {
    common::eventually(bound, || f().then_some(())).is_some()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn the_admin_api_manages_keys_and_teams_and_never_shows_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}/sy.db", dir.path().display());
    let gw = start(
        &config(dir.path(), "a.yaml", &store, None),
        dir.path().join("a.log"),
    );

    let a = http(
        &gw.addr,
        "POST",
        "/admin/v1/teams",
        Some(ADMIN),
        Some(&json!({ "name": "research", "rpm": 1000 })),
    );
    assert_eq!(a.status, 201, "{}", a.body);
    let (id, secret) = create_key(
        &gw,
        json!({ "name": "alice", "team": "research", "models": ["demo-*"], "rpm": 100, "budget": 5000, "budget_period": "1mo" }),
    );
    assert!(
        secret.starts_with("sk-sy-") && secret.len() == 46,
        "{secret}"
    );

    // The key works for its models, and only those.
    let ok = chat(&gw, &secret, "demo-chat");
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(ok.header("x-ratelimit-limit-requests"), Some("100"));
    assert_eq!(ok.header("x-ratelimit-remaining-requests"), Some("99"));
    let reset = ok.header("x-ratelimit-reset-requests").unwrap_or_default();
    let reset_ms: u64 = reset
        .strip_suffix("ms")
        .and_then(|n| n.parse().ok())
        .unwrap_or(u64::MAX);
    // When the newest one-second bucket leaves the one-minute window.
    assert!(reset_ms <= 61_000, "{reset}");
    // No tpm on this key: no token headers.
    assert_eq!(ok.header("x-ratelimit-limit-tokens"), None);
    let (_, tokens_secret) = create_key(
        &gw,
        json!({ "name": "bob", "models": ["demo-*"], "tpm": 100000 }),
    );
    let t = chat(&gw, &tokens_secret, "demo-chat");
    assert_eq!(t.status, 200, "{}", t.body);
    assert_eq!(t.header("x-ratelimit-limit-tokens"), Some("100000"));
    let remaining: u64 = t
        .header("x-ratelimit-remaining-tokens")
        .and_then(|v| v.parse().ok())
        .unwrap_or(u64::MAX);
    assert!(remaining < 100_000, "{remaining}");
    assert!(t
        .header("x-ratelimit-reset-tokens")
        .is_some_and(|v| v.ends_with("ms") && v[..v.len() - 2].parse::<u64>().is_ok()));
    assert_eq!(t.header("x-ratelimit-limit-requests"), None);
    let forbidden = chat(&gw, &secret, "other");
    assert_eq!(forbidden.status, 403, "{}", forbidden.body);

    // Listing and inspecting show the key, never its secret or hash.
    let list = http(&gw.addr, "GET", "/admin/v1/keys", Some(ADMIN), None);
    assert_eq!(list.status, 200);
    assert!(
        list.body.contains(&id) && !list.body.contains(&secret[6..]),
        "{}",
        list.body
    );
    let one = http(
        &gw.addr,
        "GET",
        &format!("/admin/v1/keys/{id}"),
        Some(ADMIN),
        None,
    );
    let v = one.json();
    assert_eq!(v["name"], "alice");
    assert_eq!(v["rpm"], 100);
    assert!(v["usage"]["spend"].as_f64().unwrap() > 0.0, "{v}");
    assert!(!one.body.contains(&secret[6..]));

    // A virtual key is not an admin key.
    assert_eq!(
        http(&gw.addr, "GET", "/admin/v1/keys", Some(&secret), None).status,
        401
    );

    // Change, then revoke: refused at once on this replica.
    let p = http(
        &gw.addr,
        "PATCH",
        &format!("/admin/v1/keys/{id}"),
        Some(ADMIN),
        Some(&json!({ "rpm": 7 })),
    );
    assert_eq!(p.status, 200, "{}", p.body);
    assert_eq!(
        chat(&gw, &secret, "demo-chat").header("x-ratelimit-limit-requests"),
        Some("7")
    );
    assert_eq!(
        http(
            &gw.addr,
            "DELETE",
            &format!("/admin/v1/keys/{id}"),
            Some(ADMIN),
            None
        )
        .status,
        200
    );
    let refused = chat(&gw, &secret, "demo-chat");
    assert_eq!(refused.status, 401);
    assert!(!refused.body.contains(&secret[6..]));

    // The secret never reached the log.
    let log = std::fs::read_to_string(&gw.log).unwrap();
    assert!(!log.contains(&secret[6..]), "the secret is in the log");
}

#[test]
fn three_replicas_share_one_rpm_limit_and_see_a_revocation_within_two_seconds() {
    let rt = runtime();
    let db = rt.block_on(store::testing::TestDb::postgres()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let prefix = unique_prefix();
    let redis = redis_url();
    let cfg = config(
        dir.path(),
        "r.yaml",
        &db.url,
        Some((&redis, &prefix, "closed")),
    );
    let gws: Vec<Gateway> = (0..3)
        .map(|i| start(&cfg, dir.path().join(format!("r{i}.log"))))
        .collect();
    let (id, secret) = create_key(&gws[0], json!({ "name": "shared", "rpm": 12 }));
    // Every replica knows the new key (it polls the store every second).
    for gw in &gws {
        assert!(
            eventually(Duration::from_secs(5), || chat(gw, &secret, "other").status
                != 401),
            "a replica never saw the key"
        );
    }
    // Those probes used some of the 12; use a fresh key for the exact count.
    let (_, secret) = create_key(&gws[0], json!({ "name": "exact", "rpm": 12 }));
    for gw in &gws {
        assert!(eventually(Duration::from_secs(5), || {
            http(&gw.addr, "GET", "/v1/models", Some(&secret), None).status == 200
        }));
    }
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..36)
            .map(|i| {
                let gw = &gws[i % 3];
                let secret = &secret;
                s.spawn(move || chat(gw, secret, "demo-chat"))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                let a = h.join().unwrap();
                if a.status == 429 {
                    assert_eq!(a.json()["error"]["code"], "rate_limit_exceeded");
                    assert!(a.header("retry-after").is_some());
                }
                a.status
            })
            .collect()
    });
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        12,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        24,
        "{statuses:?}"
    );

    // Revoked on one replica, refused by all within two seconds.
    let (_, fresh) = create_key(&gws[0], json!({ "name": "to-revoke" }));
    for gw in &gws {
        assert!(eventually(Duration::from_secs(5), || chat(
            gw, &fresh, "other"
        )
        .status
            == 200));
    }
    let keys = http(&gws[1].addr, "GET", "/admin/v1/keys", Some(ADMIN), None).json();
    let fresh_id = keys["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == "to-revoke")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        http(
            &gws[1].addr,
            "DELETE",
            &format!("/admin/v1/keys/{fresh_id}"),
            Some(ADMIN),
            None
        )
        .status,
        200
    );
    let revoked_at = Instant::now();
    for gw in &gws {
        assert!(
            eventually(Duration::from_secs(2), || chat(gw, &fresh, "other").status
                == 401),
            "a replica still took the revoked key"
        );
    }
    assert!(revoked_at.elapsed() < Duration::from_secs(3));
    let _ = id;
}

#[test]
fn a_budget_is_never_overspent_by_32_concurrent_clients() {
    let rt = runtime();
    let db = rt.block_on(store::testing::TestDb::postgres()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let prefix = unique_prefix();
    let redis = redis_url();
    let cfg = config(
        dir.path(),
        "b.yaml",
        &db.url,
        Some((&redis, &prefix, "closed")),
    );
    let gws: Vec<Gateway> = (0..2)
        .map(|i| start(&cfg, dir.path().join(format!("b{i}.log"))))
        .collect();
    let budget = 400.0;
    let (_, secret) = create_key(&gws[0], json!({ "name": "spender", "budget": budget }));
    assert!(eventually(Duration::from_secs(5), || chat(
        &gws[1], &secret, "other"
    )
    .status
        == 200));
    let spent: f64 = std::thread::scope(|s| {
        let handles: Vec<_> = (0..32)
            .map(|i| {
                let gw = &gws[i % 2];
                let secret = &secret;
                s.spawn(move || {
                    let mut spent = 0.0;
                    for _ in 0..50 {
                        let a = chat(gw, secret, "demo-chat");
                        match a.status {
                            200 => {
                                spent += a
                                    .header("x-switchyard-cost")
                                    .unwrap()
                                    .parse::<f64>()
                                    .unwrap()
                            }
                            429 => {
                                assert_eq!(
                                    a.json()["error"]["code"],
                                    "budget_exceeded",
                                    "{}",
                                    a.body
                                );
                                break;
                            }
                            other => panic!("unexpected {other}: {}", a.body),
                        }
                    }
                    spent
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert!(spent > 0.0);
    assert!(spent <= budget, "spent {spent} of a {budget} budget");
}

/// A private redis-server on a free port, stopped when dropped. Never the machine's shared one.
struct PrivateRedis {
    child: Child,
    url: String,
}

impl PrivateRedis {
    fn start() -> Option<PrivateRedis> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .spawn()
            .ok()?;
        let url = format!("redis://127.0.0.1:{port}/0");
        let up = eventually(Duration::from_secs(10), || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        up.then_some(PrivateRedis { child, url })
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn when_redis_goes_away_closed_refuses_and_open_admits() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}/sy.db", dir.path().display());
    let redis = PrivateRedis::start().expect("redis-server is needed for this test");
    let closed = start(
        &config(
            dir.path(),
            "c.yaml",
            &store,
            Some((&redis.url, "t", "closed")),
        ),
        dir.path().join("c.log"),
    );
    let open = start(
        &config(
            dir.path(),
            "o.yaml",
            &store,
            Some((&redis.url, "t", "open")),
        ),
        dir.path().join("o.log"),
    );
    let (_, secret) = create_key(&closed, json!({ "name": "limited", "rpm": 1000 }));
    assert!(eventually(Duration::from_secs(5), || chat(
        &open,
        &secret,
        "demo-chat"
    )
    .status
        == 200));
    assert_eq!(chat(&closed, &secret, "demo-chat").status, 200);
    drop(redis);
    let a = chat(&closed, &secret, "demo-chat");
    assert_eq!(a.status, 503, "closed: {}", a.body);
    let a = chat(&open, &secret, "demo-chat");
    assert_eq!(a.status, 200, "open: {}", a.body);
}

#[test]
fn the_keys_command_line_works_against_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}/sy.db", dir.path().display());
    let cfg = config(dir.path(), "k.yaml", &store, None);
    let run = |args: &[&str]| {
        let out = Command::new(BIN)
            .args(["keys", "-c"])
            .arg(&cfg)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let created = run(&[
        "create",
        "--name",
        "cli-key",
        "--rpm",
        "5",
        "--models",
        "demo-chat",
    ]);
    let secret = created
        .lines()
        .find_map(|l| l.strip_prefix("secret: "))
        .unwrap()
        .trim()
        .to_string();
    let id = created
        .lines()
        .find_map(|l| l.strip_prefix("id:"))
        .unwrap()
        .trim()
        .to_string();
    let gw = start(&cfg, dir.path().join("k.log"));
    assert_eq!(chat(&gw, &secret, "demo-chat").status, 200);
    let listed = run(&["list"]);
    assert!(
        listed.contains("cli-key") && !listed.contains(&secret[6..]),
        "{listed}"
    );
    run(&["revoke", &id]);
    assert!(eventually(Duration::from_secs(3), || chat(
        &gw,
        &secret,
        "demo-chat"
    )
    .status
        == 401));
}

#[test]
fn usage_records_reach_the_store_add_up_and_survive_a_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}/sy.db", dir.path().display());
    let cfg = config(dir.path(), "u.yaml", &store, None);
    let mut gw = start(&cfg, dir.path().join("u.log"));
    let (key_id, secret) = create_key(&gw, json!({ "name": "metered" }));
    let mut ids = Vec::new();
    let mut total = 0.0;
    for _ in 0..3 {
        let a = chat(&gw, &secret, "demo-chat");
        assert_eq!(a.status, 200);
        total += a
            .header("x-switchyard-cost")
            .unwrap()
            .parse::<f64>()
            .unwrap();
        ids.push(a.header("x-request-id").unwrap().to_string());
    }
    // One request's record, as the key that made it sees it.
    let mut generation = Value::Null;
    assert!(eventually(Duration::from_secs(5), || {
        let a = http(
            &gw.addr,
            "GET",
            &format!("/v1/generation?id={}", ids[0]),
            Some(&secret),
            None,
        );
        generation = if a.status == 200 {
            a.json()
        } else {
            Value::Null
        };
        a.status == 200
    }));
    let g = &generation["data"];
    assert_eq!(g["model"], "demo-chat");
    assert_eq!(g["api_key_id"], key_id);
    assert_eq!(g["tokens_prompt"], 1, "{g}");
    assert_eq!(g["tokens_completion"], 2, "{g}");
    // The usage report adds up to what the clients were told.
    assert!(eventually(Duration::from_secs(5), || {
        let v = http(
            &gw.addr,
            "GET",
            "/admin/v1/usage?group_by=model",
            Some(ADMIN),
            None,
        )
        .json();
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["group"] == "demo-chat" && r["requests"] == 3)
    }));
    let v = http(
        &gw.addr,
        "GET",
        "/admin/v1/usage?group_by=key",
        Some(ADMIN),
        None,
    )
    .json();
    let row = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["group"] == key_id.as_str())
        .unwrap()
        .clone();
    assert!(
        (row["cost_usd"].as_f64().unwrap() - total).abs() < 1e-9,
        "{row} vs {total}"
    );
    let recent = http(
        &gw.addr,
        "GET",
        "/admin/v1/requests?limit=2",
        Some(ADMIN),
        None,
    )
    .json();
    assert_eq!(recent["data"].as_array().unwrap().len(), 2);
    assert_eq!(recent["data"][0]["id"], ids[2].as_str(), "newest first");

    // A request answered just before SIGTERM is flushed on the way out.
    let last = chat(&gw, &secret, "demo-chat");
    let last_id = last.header("x-request-id").unwrap().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &gw.child.id().to_string()])
        .status()
        .unwrap()
        .success());
    let exited = eventually(Duration::from_secs(15), || {
        gw.child.try_wait().unwrap().is_some()
    });
    assert!(exited, "the gateway did not exit");
    drop(gw);
    let gw = start(&cfg, dir.path().join("u2.log"));
    let a = http(
        &gw.addr,
        "GET",
        &format!("/v1/generation?id={last_id}"),
        Some(ADMIN),
        None,
    );
    assert_eq!(a.status, 401, "the admin key is not a virtual key");
    let a = http(
        &gw.addr,
        "GET",
        &format!("/v1/generation?id={last_id}"),
        Some(&secret),
        None,
    );
    assert_eq!(
        a.status, 200,
        "the record of the last request was lost: {}",
        a.body
    );
}
