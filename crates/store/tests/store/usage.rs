use store::usage::{Attempt, Filter, GroupBy, Query, Record, Scope, Status};

use crate::on_both;

const DAY: i64 = 86_400_000;
/// 2024-03-01T00:00:00Z.
const T0: i64 = 1_709_251_200_000;

#[allow(clippy::too_many_arguments)]
fn rec(id: &str, ts: i64, key: &str, model: &str, status: u16, cost: f64, latency: f64) -> Record {
    Record {
        request_id: id.into(),
        ts,
        key_id: (!key.is_empty()).then(|| key.to_owned()),
        team_id: (key == "k1" || key == "k2").then(|| "t1".to_owned()),
        model: model.to_owned().into(),
        version: if model == "summarizer" {
            "v2".into()
        } else {
            "default".into()
        },
        provider: "openai".into(),
        upstream_model: format!("{model}-2024").into(),
        status,
        streamed: ts % 2 == 0,
        endpoint: "chat.completions".into(),
        completed: Some(status < 400),
        client_gone: Some(false),
        input_tokens: 100,
        cache_read_tokens: 10,
        cache_write_tokens: 5,
        reasoning_tokens: 3,
        output_tokens: 20,
        cost_usd: Some(cost),
        latency_ms: latency,
        ttft_ms: Some(latency / 2.0),
        overhead_ms: 0.25,
        attempts: vec![Attempt {
            provider: "openai".into(),
            upstream_model: format!("{model}-2024").into(),
            status: Some(status),
            latency_ms: latency,
            error: None,
        }],
        error: None,
        request_body: None,
        completion: None,
    }
}

/// Every record of `batch` reads back by its request id exactly as written.
#[allow(clippy::unwrap_used)]
async fn assert_stored(store: &store::Store, batch: &[Record]) {
    for r in batch {
        assert_eq!(
            store.usage().get(&r.request_id).await.unwrap().as_ref(),
            Some(r),
            "{}",
            r.request_id
        );
    }
}

#[tokio::test]
async fn insert_batch_is_idempotent_and_round_trips() {
    on_both(|store| async move {
        let mut failed = rec("req-2", T0 + 1, "k1", "gpt", 200, 0.5, 80.0);
        failed.error = Some("upstream closed the stream".into());
        failed.ttft_ms = None;
        failed.attempts.push(Attempt {
            provider: "azure".into(),
            upstream_model: "prod".into(),
            status: None,
            latency_ms: 3.5,
            error: Some("connect timeout".into()),
        });
        let batch = vec![
            rec("req-1", T0, "k1", "gpt", 200, 0.25, 100.0),
            failed,
            rec("req-3", T0 + 2, "", "gpt", 401, 0.0, 1.0),
        ];
        assert_eq!(store.usage().insert_batch(&batch).await.unwrap(), 3);
        assert_eq!(
            store.usage().insert_batch(&batch).await.unwrap(),
            0,
            "replayed"
        );
        assert_eq!(store.usage().insert_batch(&[]).await.unwrap(), 0);
        // A duplicate inside one batch is stored once too.
        let twice = vec![
            rec("req-4", T0 + 3, "k1", "gpt", 200, 1.0, 5.0),
            rec("req-4", T0 + 3, "k1", "gpt", 200, 1.0, 5.0),
        ];
        assert_eq!(store.usage().insert_batch(&twice).await.unwrap(), 1);
        assert_stored(&store, &batch).await;
        assert_eq!(store.usage().get("req-nope").await.unwrap(), None);
        let all = store
            .usage()
            .aggregate(&Query::new(GroupBy::Model))
            .await
            .unwrap();
        assert_eq!(all[0].requests, 4);
    })
    .await;
}

/// A batch longer than one multi-row statement (the SQLite writer binds 16 records per
/// statement and the rest one by one): every record lands with its own values, and a record
/// already stored, or repeated across two statements of the batch, is skipped.
#[tokio::test]
async fn long_batches_store_every_record_once() {
    on_both(|store| async move {
        let batch: Vec<Record> = (0..40)
            .map(|i| {
                let key = ["k1", "k3", ""][i % 3];
                let mut r = rec(
                    &format!("m{i:02}"),
                    T0 + i as i64,
                    key,
                    ["gpt", "summarizer"][i % 2],
                    [200, 429, 502][i % 3],
                    i as f64 / 8.0,
                    i as f64 + 0.5,
                );
                r.error = (i % 7 == 0).then(|| format!("error {i}"));
                r.input_tokens = i as u64 * 11;
                r
            })
            .collect();
        // m05 (first statement) and m36 (the one-by-one tail) are stored already.
        let before = [batch[5].clone(), batch[36].clone()];
        assert_eq!(store.usage().insert_batch(&before).await.unwrap(), 2);
        // Newest first (SQLite's writer stores a batch in `ts` order: the bound positions must
        // follow the records, not the batch), and m03 twice, far apart.
        let mut with_repeat: Vec<Record> = batch.iter().rev().cloned().collect();
        with_repeat.insert(20, batch[3].clone());
        assert_eq!(store.usage().insert_batch(&with_repeat).await.unwrap(), 38);
        assert_stored(&store, &batch).await;
        let all = store
            .usage()
            .aggregate(&Query::new(GroupBy::Model))
            .await
            .unwrap();
        assert_eq!(all.iter().map(|g| g.requests).sum::<u64>(), 40);
    })
    .await;
}

/// Each record differs from the one 16 places before it, which the SQLite writer binds to the
/// same row of its multi-row statement (it binds again only what changed), in one field only:
/// every field in turn, each changed and then changed back. Every record reads back as written.
#[tokio::test]
async fn records_that_differ_from_their_predecessor_in_one_field_round_trip() {
    type Toggle = fn(&mut Record, bool);
    let implied = |r: &mut Record| {
        r.attempts[0].latency_ms = ((r.latency_ms - r.overhead_ms) * 1e6).round() / 1e6;
    };
    let toggles: Vec<(&str, Toggle)> = vec![
        ("key_id", |r, on| r.key_id = on.then(|| "k2".into())),
        ("team_id", |r, on| r.team_id = on.then(|| "t2".into())),
        ("endpoint", |r, on| {
            r.endpoint = if on {
                "messages".into()
            } else {
                "chat.completions".into()
            }
        }),
        ("model", |r, on| {
            r.model = if on {
                "summarizer".into()
            } else {
                "gpt".into()
            }
        }),
        ("version", |r, on| {
            r.version = if on { "v3".into() } else { "default".into() }
        }),
        ("provider", |r, on| {
            r.provider = if on { "azure".into() } else { "openai".into() }
        }),
        ("upstream_model", |r, on| {
            r.upstream_model = if on { "prod".into() } else { "gpt-2024".into() }
        }),
        ("status", |r, on| r.status = if on { 502 } else { 200 }),
        ("streamed", |r, on| r.streamed = on),
        ("completed", |r, on| {
            r.completed = if on { None } else { Some(true) }
        }),
        ("client_gone", |r, on| r.client_gone = Some(on)),
        ("input_tokens", |r, on| {
            r.input_tokens = if on { 7 } else { 100 }
        }),
        ("cache_read_tokens", |r, on| {
            r.cache_read_tokens = u64::from(on)
        }),
        ("cache_write_tokens", |r, on| {
            r.cache_write_tokens = u64::from(on) * 2
        }),
        ("reasoning_tokens", |r, on| {
            r.reasoning_tokens = u64::from(on) * 3
        }),
        ("output_tokens", |r, on| {
            r.output_tokens = if on { 1 } else { 20 }
        }),
        ("cost_usd", |r, on| r.cost_usd = (!on).then_some(0.5)),
        ("latency_ms", |r, on| {
            r.latency_ms = if on { 12.5 } else { 100.0 }
        }),
        ("ttft_ms", |r, on| r.ttft_ms = (!on).then_some(50.0)),
        ("overhead_ms", |r, on| {
            r.overhead_ms = if on { 0.5 } else { 0.25 }
        }),
        ("attempts", |r, on| {
            r.attempts[0].error = on.then(|| "status".into());
        }),
        ("error", |r, on| {
            r.error = on.then(|| "upstream closed".into())
        }),
        ("request_body", |r, on| {
            r.request_body = on.then(|| "{}".into())
        }),
        ("completion", |r, on| {
            r.completion = on.then(|| "hello".into())
        }),
    ];
    let mut template = rec("x", T0, "k1", "gpt", 200, 0.5, 100.0);
    implied(&mut template);
    assert!(template.attempts_implied());
    let mut state = vec![false; toggles.len()];
    let mut batch = Vec::new();
    let mut fields = Vec::new();
    // Twice round every field, then a tail the writer binds one record at a time.
    for group in 0..=2 * toggles.len() {
        if group > 0 {
            let f = (group - 1) % toggles.len();
            state[f] = !state[f];
            (toggles[f].1)(&mut template, state[f]);
            // Changing a latency keeps the one attempt implied (or not) as it was.
            if !template.attempts.is_empty() && template.attempts[0].error.is_none() {
                implied(&mut template);
            }
            fields.push(toggles[f].0);
        }
        let rows = if group == 2 * toggles.len() { 5 } else { 16 };
        for _ in 0..rows {
            let mut r = template.clone();
            let n = batch.len();
            r.request_id = format!("f{n:04}");
            r.ts = T0 + n as i64;
            batch.push(r);
        }
    }
    assert_eq!(fields.len(), 2 * toggles.len());
    on_both(|store| {
        let batch = batch.clone();
        async move {
            let n = batch.len() as u64;
            assert_eq!(store.usage().insert_batch(&batch).await.unwrap(), n);
            assert_stored(&store, &batch).await;
        }
    })
    .await;
}

/// Records whose attempts the record implies and records whose attempts say more, for
/// `attempts_the_record_implies_round_trip`: (request id, stored as the empty text on SQLite).
fn attempt_cases() -> Vec<(Record, bool)> {
    // Latency 100 ms, overhead 0.25 ms: the one attempt took 99.75 ms.
    let implied = || {
        let mut r = rec("att-implied", T0, "k1", "gpt", 200, 0.5, 100.0);
        r.attempts[0].latency_ms = 99.75;
        r
    };
    let mut cases = vec![(implied(), true)];
    let mut variant = |id: &str, change: &dyn Fn(&mut Record)| {
        let mut r = implied();
        r.request_id = id.into();
        change(&mut r);
        cases.push((r, false));
    };
    variant("att-latency", &|r| r.attempts[0].latency_ms = 99.750_001);
    variant("att-status", &|r| r.attempts[0].status = Some(503));
    variant("att-no-status", &|r| r.attempts[0].status = None);
    variant("att-error", &|r| {
        r.attempts[0].error = Some("status".into());
    });
    variant("att-provider", &|r| r.attempts[0].provider = "azure".into());
    variant("att-model", &|r| {
        r.attempts[0].upstream_model = "gpt-4o".into()
    });
    variant("att-none", &|r| r.attempts.clear());
    variant("att-two", &|r| {
        let mut first = r.attempts[0].clone();
        first.provider = "azure".into();
        first.status = None;
        first.error = Some("connect".into());
        r.attempts.insert(0, first);
    });
    cases
}

/// The SQLite writer stores the attempts a record implies (one attempt, on the record's
/// provider and model, with its status, no error, latency = latency - overhead) as the empty
/// text; every record reads back exactly as written, on both stores.
#[tokio::test]
async fn attempts_the_record_implies_round_trip() {
    on_both(|store| async move {
        let cases = attempt_cases();
        let batch: Vec<Record> = cases.iter().map(|(r, _)| r.clone()).collect();
        assert_eq!(
            store.usage().insert_batch(&batch).await.unwrap(),
            batch.len() as u64
        );
        assert_stored(&store, &batch).await;
        let recent = store.usage().recent(&Filter::default()).await.unwrap();
        assert_eq!(recent.len(), batch.len());
        for r in &recent {
            assert!(batch.contains(r), "{}", r.request_id);
        }
    })
    .await;
    // What the SQLite file holds: the empty text only where the record implies its attempts.
    let db = store::testing::TestDb::sqlite().await.unwrap();
    let cases = attempt_cases();
    let batch: Vec<Record> = cases.iter().map(|(r, _)| r.clone()).collect();
    db.store
        .usage()
        .insert_shared(std::sync::Arc::new(batch))
        .await
        .unwrap();
    let path = db.url.strip_prefix("sqlite://").unwrap();
    let conn = rusqlite::Connection::open(path).unwrap();
    for (r, empty) in &cases {
        let stored: String = conn
            .query_row(
                "SELECT attempts FROM usage_records WHERE request_id = ?1",
                [&r.request_id],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(stored.is_empty(), *empty, "{}: {stored:?}", r.request_id);
        if !empty {
            let list: Vec<Attempt> = serde_json::from_str(&stored).unwrap();
            assert_eq!(list, r.attempts);
        }
    }
}

#[tokio::test]
async fn aggregates_have_exact_sums_and_percentiles() {
    on_both(|store| async move {
        let mut batch = Vec::new();
        // gpt: 10 requests on day 0, latencies 1..=10, cost 0.125 each, two errors.
        for i in 0..10 {
            let status = if i < 2 { 500 } else { 200 };
            let key = if i % 2 == 0 { "k1" } else { "k2" };
            batch.push(rec(
                &format!("g{i}"),
                T0 + i,
                key,
                "gpt",
                status,
                0.125,
                (i + 1) as f64,
            ));
        }
        // summarizer: 4 requests on day 1, one without a key, one failing mid-stream.
        for i in 0..4 {
            let key = if i == 3 { "" } else { "k3" };
            let mut r = rec(
                &format!("s{i}"),
                T0 + DAY + i,
                key,
                "summarizer",
                200,
                0.5,
                10.0,
            );
            if i == 2 {
                r.error = Some("stream cut".into());
            }
            batch.push(r);
        }
        assert_eq!(store.usage().insert_batch(&batch).await.unwrap(), 14);

        let by_model = store
            .usage()
            .aggregate(&Query::new(GroupBy::Model))
            .await
            .unwrap();
        assert_eq!(by_model.len(), 2);
        let gpt = &by_model[0];
        assert_eq!(gpt.group.as_deref(), Some("gpt"));
        assert_eq!((gpt.requests, gpt.errors), (10, 2));
        assert_eq!((gpt.input_tokens, gpt.output_tokens), (1000, 200));
        assert_eq!(
            (
                gpt.cache_read_tokens,
                gpt.cache_write_tokens,
                gpt.reasoning_tokens
            ),
            (100, 50, 30)
        );
        assert_eq!(gpt.cost_usd, 1.25);
        assert!((gpt.p50_ms - 5.5).abs() < 1e-9, "{}", gpt.p50_ms);
        assert!((gpt.p95_ms - 9.55).abs() < 1e-9, "{}", gpt.p95_ms);
        let sum = &by_model[1];
        assert_eq!(sum.group.as_deref(), Some("summarizer"));
        assert_eq!((sum.requests, sum.errors, sum.cost_usd), (4, 1, 2.0));
        assert_eq!((sum.p50_ms, sum.p95_ms), (10.0, 10.0));

        let by_key = store
            .usage()
            .aggregate(&Query::new(GroupBy::Key))
            .await
            .unwrap();
        let keys: Vec<_> = by_key
            .iter()
            .map(|g| (g.group.clone(), g.requests))
            .collect();
        assert_eq!(
            keys,
            vec![
                (Some("k1".into()), 5),
                (Some("k2".into()), 5),
                (Some("k3".into()), 3),
                (None, 1)
            ]
        );
        let by_team = store
            .usage()
            .aggregate(&Query::new(GroupBy::Team))
            .await
            .unwrap();
        assert_eq!(by_team[0].group.as_deref(), Some("t1"));
        assert_eq!((by_team[0].requests, by_team[0].cost_usd), (10, 1.25));

        let by_day = store
            .usage()
            .aggregate(&Query::new(GroupBy::Day))
            .await
            .unwrap();
        let days: Vec<_> = by_day
            .iter()
            .map(|g| (g.group.clone().unwrap(), g.requests))
            .collect();
        assert_eq!(
            days,
            vec![("2024-03-01".into(), 10), ("2024-03-02".into(), 4)]
        );

        let by_version = store
            .usage()
            .aggregate(&Query::new(GroupBy::Version))
            .await
            .unwrap();
        let labels: Vec<_> = by_version
            .iter()
            .map(|g| g.group.clone().unwrap())
            .collect();
        assert_eq!(labels, vec!["gpt@default", "summarizer@v2"]);

        let by_provider = store
            .usage()
            .aggregate(&Query::new(GroupBy::Provider))
            .await
            .unwrap();
        assert_eq!(by_provider.len(), 1);
        assert_eq!(
            (by_provider[0].requests, by_provider[0].cost_usd),
            (14, 3.25)
        );

        // Time range [since, until) and filters.
        let mut q = Query::new(GroupBy::Model);
        q.since = Some(T0 + 5);
        q.until = Some(T0 + DAY + 2);
        let ranged = store.usage().aggregate(&q).await.unwrap();
        let counts: Vec<_> = ranged.iter().map(|g| g.requests).collect();
        assert_eq!(counts, vec![5, 2]);
        let mut q = Query::new(GroupBy::Key);
        q.model = Some("gpt".into());
        q.key_id = Some("k2".into());
        let one = store.usage().aggregate(&q).await.unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!((one[0].requests, one[0].cost_usd), (5, 0.625));
        // Latencies 2, 4, 6, 8, 10: p50 6, p95 at position 3.8 -> 9.6.
        assert!((one[0].p50_ms - 6.0).abs() < 1e-9, "{}", one[0].p50_ms);
        assert!((one[0].p95_ms - 9.6).abs() < 1e-9, "{}", one[0].p95_ms);
        let mut q = Query::new(GroupBy::Team);
        q.team_id = Some("t-none".into());
        assert!(store.usage().aggregate(&q).await.unwrap().is_empty());

        let plan = store
            .usage()
            .explain_aggregate(&Query::new(GroupBy::Model))
            .await
            .unwrap();
        assert!(!plan.is_empty());
    })
    .await;
}

#[tokio::test]
async fn recent_is_newest_first_with_filters_and_paging() {
    on_both(|store| async move {
        let mut batch = Vec::new();
        for i in 0..6 {
            let status = [200, 429, 200, 503, 200, 200][i as usize];
            let model = if i % 2 == 0 { "a" } else { "b" };
            let key = if i < 3 { "k1" } else { "k2" };
            batch.push(rec(
                &format!("r{i}"),
                T0 + i * 1000,
                key,
                model,
                status,
                0.0,
                1.0,
            ));
        }
        // Two records in the same millisecond: ordered by request id, descending.
        batch.push(rec("r5b", T0 + 5000, "k2", "a", 200, 0.0, 1.0));
        batch[4].error = Some("client went away".into());
        store.usage().insert_batch(&batch).await.unwrap();
        let ids = |rs: Vec<Record>| rs.into_iter().map(|r| r.request_id).collect::<Vec<_>>();

        let all = ids(store.usage().recent(&Filter::default()).await.unwrap());
        assert_eq!(all, vec!["r5b", "r5", "r4", "r3", "r2", "r1", "r0"]);
        let f = Filter {
            key_id: Some("k1".into()),
            ..Filter::default()
        };
        assert_eq!(
            ids(store.usage().recent(&f).await.unwrap()),
            vec!["r2", "r1", "r0"]
        );
        let f = Filter {
            model: Some("b".into()),
            ..Filter::default()
        };
        assert_eq!(
            ids(store.usage().recent(&f).await.unwrap()),
            vec!["r5", "r3", "r1"]
        );
        let f = Filter {
            status: Some(Status::Code(429)),
            ..Filter::default()
        };
        assert_eq!(ids(store.usage().recent(&f).await.unwrap()), vec!["r1"]);
        let f = Filter {
            status: Some(Status::Class(5)),
            ..Filter::default()
        };
        assert_eq!(ids(store.usage().recent(&f).await.unwrap()), vec!["r3"]);
        let f = Filter {
            status: Some(Status::Error),
            ..Filter::default()
        };
        assert_eq!(
            ids(store.usage().recent(&f).await.unwrap()),
            vec!["r4", "r3", "r1"]
        );
        let f = Filter {
            status: Some(Status::Ok),
            ..Filter::default()
        };
        assert_eq!(
            ids(store.usage().recent(&f).await.unwrap()),
            vec!["r5b", "r5", "r2", "r0"]
        );
        let f = Filter {
            since: Some(T0 + 2000),
            until: Some(T0 + 4000),
            ..Filter::default()
        };
        assert_eq!(
            ids(store.usage().recent(&f).await.unwrap()),
            vec!["r3", "r2"]
        );
        let f = Filter {
            key_id: Some("k2".into()),
            model: Some("a".into()),
            ..Filter::default()
        };
        assert_eq!(
            ids(store.usage().recent(&f).await.unwrap()),
            vec!["r5b", "r4"]
        );
        assert!(!store.usage().explain_recent(&f).await.unwrap().is_empty());

        // Pages of two, following the cursor.
        let mut pages = Vec::new();
        let mut f = Filter {
            limit: 2,
            ..Filter::default()
        };
        loop {
            let page = store.usage().recent(&f).await.unwrap();
            let Some(last) = page.last() else { break };
            f.before = Some((last.ts, last.request_id.clone()));
            pages.push(ids(page));
        }
        assert_eq!(
            pages,
            vec![
                vec!["r5b", "r5"],
                vec!["r4", "r3"],
                vec!["r2", "r1"],
                vec!["r0"]
            ]
        );
    })
    .await;
}

#[tokio::test]
async fn spend_adds_up_per_key_and_team_since_a_time() {
    on_both(|store| async move {
        let batch = vec![
            rec("a", T0, "k1", "m", 200, 0.25, 1.0),
            rec("b", T0 + DAY, "k1", "m", 200, 0.5, 1.0),
            rec("c", T0 + DAY, "k2", "m", 200, 2.0, 1.0),
            rec("d", T0 + 2 * DAY, "k3", "m", 200, 8.0, 1.0),
        ];
        store.usage().insert_batch(&batch).await.unwrap();
        let spend = |scope, since| {
            let store = store.clone();
            async move { store.usage().spend(scope, since).await.unwrap() }
        };
        assert_eq!(spend(Scope::Key("k1"), None).await, 0.75);
        assert_eq!(spend(Scope::Key("k1"), Some(T0 + 1)).await, 0.5);
        assert_eq!(spend(Scope::Key("k1"), Some(T0 + DAY + 1)).await, 0.0);
        assert_eq!(spend(Scope::Team("t1"), None).await, 2.75);
        assert_eq!(spend(Scope::Team("t1"), Some(T0 + DAY)).await, 2.5);
        assert_eq!(spend(Scope::Key("nobody"), None).await, 0.0);

        assert_eq!(store.usage().prune(T0 + DAY).await.unwrap(), 1);
        assert_eq!(spend(Scope::Key("k1"), None).await, 0.5);
    })
    .await;
}

#[tokio::test]
async fn unknown_costs_stay_null_and_bodies_and_flags_round_trip() {
    on_both(|store| async move {
        let mut unpriced = rec("u1", T0, "k1", "self-hosted", 200, 0.0, 5.0);
        unpriced.cost_usd = None;
        unpriced.endpoint = "messages".into();
        unpriced.completed = Some(false);
        unpriced.client_gone = Some(true);
        // Text PostgreSQL cannot hold (NUL) must not lose the batch.
        unpriced.request_body = Some("{\"messages\":\"hi\u{0}there\"}".into());
        unpriced.completion = Some("é ✓ ".repeat(1000));
        let priced = rec("u2", T0 + 1, "k1", "self-hosted", 200, 0.5, 5.0);
        let mut older = rec("u3", T0 + 2, "k1", "self-hosted", 200, 0.25, 5.0);
        older.completed = None;
        older.client_gone = None;
        older.endpoint = "".into();
        let batch = vec![unpriced.clone(), priced.clone(), older.clone()];
        assert_eq!(store.usage().insert_batch(&batch).await.unwrap(), 3);

        let got = store.usage().get("u1").await.unwrap().unwrap();
        assert_eq!(got.cost_usd, None);
        assert_eq!(got.endpoint, "messages");
        assert_eq!((got.completed, got.client_gone), (Some(false), Some(true)));
        let body = got.request_body.unwrap();
        assert!(
            body == "{\"messages\":\"hi\u{0}there\"}"
                || body == "{\"messages\":\"hi\u{FFFD}there\"}",
            "{body:?}"
        );
        assert_eq!(got.completion, unpriced.completion);
        assert_eq!(store.usage().get("u2").await.unwrap().unwrap(), priced);
        assert_eq!(store.usage().get("u3").await.unwrap().unwrap(), older);

        // Sums and spend count the known costs only.
        let mut q = Query::new(GroupBy::Model);
        q.model = Some("self-hosted".into());
        let sums = store.usage().aggregate(&q).await.unwrap();
        assert_eq!((sums[0].requests, sums[0].cost_usd), (3, 0.75));
        assert_eq!(
            store.usage().spend(Scope::Key("k1"), None).await.unwrap(),
            0.75
        );
        // A group whose every cost is unknown sums to 0, not an error.
        let mut q = Query::new(GroupBy::Key);
        q.since = Some(T0);
        q.until = Some(T0 + 1);
        let only_unknown = store.usage().aggregate(&q).await.unwrap();
        assert_eq!(
            (only_unknown[0].requests, only_unknown[0].cost_usd),
            (1, 0.0)
        );
    })
    .await;
}

#[test]
fn records_spooled_by_an_older_gateway_still_parse() {
    // A spool line as the first release wrote it: no endpoint, flags or bodies; cost a number.
    let line = r#"{"request_id":"old-1","ts":1709251200000,"key_id":null,"team_id":null,"model":"m","version":"default","provider":"p","upstream_model":"u","status":200,"streamed":false,"input_tokens":1,"cache_read_tokens":0,"cache_write_tokens":0,"reasoning_tokens":0,"output_tokens":2,"cost_usd":0.5,"latency_ms":1.0,"ttft_ms":null,"overhead_ms":0.1,"attempts":[],"error":null}"#;
    let r: Record = serde_json::from_str(line).unwrap();
    assert_eq!(r.cost_usd, Some(0.5));
    assert_eq!((r.completed, r.client_gone), (None, None));
    assert!(r.endpoint.is_empty() && r.request_body.is_none() && r.completion.is_none());
    // Bodies are left out of a spool line when there are none.
    let out = serde_json::to_string(&r).unwrap();
    assert!(
        !out.contains("request_body") && !out.contains("completion"),
        "{out}"
    );
}

#[tokio::test]
async fn shared_batches_insert_once_and_a_closed_store_refuses_them() {
    let check = |store: store::Store| async move {
        let batch = std::sync::Arc::new(vec![
            rec("req-s1", T0, "k1", "gpt", 200, 0.25, 100.0),
            rec("req-s2", T0 + 1, "", "gpt", 500, 0.0, 3.0),
        ]);
        assert_eq!(store.usage().insert_shared(batch.clone()).await.unwrap(), 2);
        assert_eq!(
            store.usage().insert_shared(batch.clone()).await.unwrap(),
            0,
            "replayed"
        );
        assert_eq!(
            store.usage().get("req-s2").await.unwrap().as_ref(),
            Some(&batch[1])
        );
        store.close().await;
        let err = store.usage().insert_shared(batch).await.unwrap_err();
        // The usage writer spools on this and retries later.
        assert!(err.is_transient(), "{err:?}");
    };
    on_both(check).await;
    check(store::Store::connect("sqlite::memory:").await.unwrap()).await;
}

/// On a SQLite file usage records are inserted by a connection of their own while the pool
/// writes keys, teams and settings: neither may fail on the other's lock.
#[tokio::test]
async fn usage_inserts_and_pool_writes_share_a_sqlite_file() {
    let db = store::testing::TestDb::sqlite().await.unwrap();
    let store = db.store.clone();
    let inserts = {
        let store = store.clone();
        async move {
            for b in 0..20 {
                let batch: Vec<Record> = (0..200)
                    .map(|i| {
                        let id = format!("req-{b:02}-{i:03}");
                        rec(&id, T0 + b * 1000 + i, "k9", "gpt", 200, 0.01, 5.0)
                    })
                    .collect();
                let n = store
                    .usage()
                    .insert_shared(std::sync::Arc::new(batch))
                    .await
                    .unwrap();
                assert_eq!(n, 200);
            }
        }
    };
    let writes = {
        let store = store.clone();
        async move {
            for i in 0..50 {
                store.settings().set(&format!("s{i}"), "v").await.unwrap();
            }
        }
    };
    tokio::join!(inserts, writes);
    let spent = store
        .usage()
        .spend(Scope::Key("k9"), Some(T0))
        .await
        .unwrap();
    assert!((spent - 40.0).abs() < 1e-6, "{spent}");
    assert_eq!(
        store.settings().get("s49").await.unwrap().as_deref(),
        Some("v")
    );
}

/// The key and team indexes hold only records that have a key or a team (migration 0004); a
/// filter on either still walks its index, newest first.
#[tokio::test]
async fn key_and_team_filters_use_their_partial_indexes_on_sqlite() {
    let db = store::testing::TestDb::sqlite().await.unwrap();
    let store = db.store.clone();
    let batch: Vec<Record> = (0..50)
        .map(|i| {
            let key = ["k1", "k3", ""][i % 3];
            rec(
                &format!("req-p{i:02}"),
                T0 + i as i64,
                key,
                "gpt",
                200,
                0.5,
                1.0,
            )
        })
        .collect();
    store.usage().insert_batch(&batch).await.unwrap();
    for (filter, index) in [
        (
            Filter {
                key_id: Some("k3".into()),
                ..Filter::default()
            },
            "usage_records_key_ts",
        ),
        (
            Filter {
                team_id: Some("t1".into()),
                ..Filter::default()
            },
            "usage_records_team_ts",
        ),
    ] {
        let plan = store
            .usage()
            .explain_recent(&filter)
            .await
            .unwrap()
            .join("\n");
        assert!(plan.contains(index), "{index} not used:\n{plan}");
    }
    let k3 = Filter {
        key_id: Some("k3".into()),
        ..Filter::default()
    };
    let got = store.usage().recent(&k3).await.unwrap();
    assert_eq!(got.len(), 17);
    assert!(got.windows(2).all(|w| w[0].ts > w[1].ts));
    let team = Filter {
        team_id: Some("t1".into()),
        ..Filter::default()
    };
    assert_eq!(store.usage().recent(&team).await.unwrap().len(), 17);
}
