//! Measures the usage store on both backends: inserts 100,000 records in batches of 500, then
//! times the read side and prints the query plans.
//!
//! `cargo run -p store --example measure [-- ROWS]` (needs PostgreSQL as for the tests).

use std::time::Instant;

use store::testing::TestDb;
use store::usage::{Attempt, Filter, GroupBy, Query, Record, Scope};
use store::Store;

const BATCH: usize = 500;
const DAY: i64 = 86_400_000;

#[tokio::main]
async fn main() -> Result<(), store::Error> {
    let rows: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000);
    for db in [TestDb::sqlite().await?, TestDb::postgres().await?] {
        measure(&db.store, rows).await?;
    }
    Ok(())
}

fn record(i: usize, now: i64) -> Record {
    let model = format!("model-{}", i % 20);
    let status = if i % 50 == 0 { 502 } else { 200 };
    Record {
        request_id: format!("req-{i:08}"),
        // Spread over 30 days, newest last.
        ts: now - 30 * DAY + (i as i64) * (30 * DAY / 100_000),
        key_id: Some(format!("key_{:03}", i % 200)),
        team_id: Some(format!("team_{:02}", i % 10)),
        version: "default".into(),
        provider: ["openai", "anthropic", "gemini"][i % 3].into(),
        upstream_model: model.clone().into(),
        model: model.into(),
        status,
        streamed: i % 2 == 0,
        input_tokens: 500 + (i % 700) as u64,
        cache_read_tokens: (i % 100) as u64,
        cache_write_tokens: 0,
        reasoning_tokens: 0,
        output_tokens: 100 + (i % 300) as u64,
        cost_usd: Some(0.000_15 * ((i % 13) as f64 + 1.0)),
        latency_ms: 50.0 + fastrand::f64() * 2000.0,
        ttft_ms: Some(20.0 + fastrand::f64() * 300.0),
        overhead_ms: 0.2,
        attempts: vec![Attempt {
            provider: "openai".into(),
            upstream_model: "gpt-4o-mini".into(),
            status: Some(status),
            latency_ms: 50.0,
            error: None,
        }],
        error: None,
        endpoint: "chat.completions".into(),
        completed: Some(status == 200),
        client_gone: Some(false),
        ..Record::default()
    }
}

async fn measure(store: &Store, rows: usize) -> Result<(), store::Error> {
    println!(
        "\n=== {:?}: {rows} usage records, batches of {BATCH}",
        store.backend()
    );
    let now = store::now_ms();
    let records: Vec<Record> = (0..rows).map(|i| record(i, now)).collect();
    let t = Instant::now();
    for chunk in records.chunks(BATCH) {
        store.usage().insert_batch(chunk).await?;
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "insert: {:.2} s ({:.0} records/s, {:.1} ms per batch)",
        secs,
        rows as f64 / secs,
        secs * 1000.0 / (rows / BATCH).max(1) as f64
    );

    let full = Query::new(GroupBy::Model);
    let mut last_day = Query::new(GroupBy::Model);
    last_day.since = Some(now - DAY);
    for (label, q) in [("all 30 days", &full), ("last 24 h", &last_day)] {
        // The first run warms the cache; report the second.
        store.usage().aggregate(q).await?;
        let t = Instant::now();
        let groups = store.usage().aggregate(q).await?;
        let requests: u64 = groups.iter().map(|g| g.requests).sum();
        println!(
            "aggregate group_by=model, {label}: {:.1} ms ({} groups, {requests} records)",
            t.elapsed().as_secs_f64() * 1000.0,
            groups.len()
        );
        for line in store.usage().explain_aggregate(q).await? {
            println!("    plan: {line}");
        }
    }
    store
        .usage()
        .spend(Scope::Key("key_007"), Some(now - 7 * DAY))
        .await?;
    let t = Instant::now();
    let spent = store
        .usage()
        .spend(Scope::Key("key_007"), Some(now - 7 * DAY))
        .await?;
    println!(
        "spend(key, 7 days): {:.1} ms (${spent:.4})",
        t.elapsed().as_secs_f64() * 1000.0
    );
    let recent_filter = Filter {
        model: Some("model-3".into()),
        limit: 100,
        ..Filter::default()
    };
    store.usage().recent(&recent_filter).await?;
    let t = Instant::now();
    let recent = store.usage().recent(&recent_filter).await?;
    println!(
        "recent(model, 100): {:.1} ms ({} records)",
        t.elapsed().as_secs_f64() * 1000.0,
        recent.len()
    );
    Ok(())
}
