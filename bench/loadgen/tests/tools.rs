//! End-to-end checks of the benchmark tools: sy-upstream serves, sy-loadgen measures it in every
//! mode, and bad input is refused with a message instead of a panic.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

struct Upstream {
    child: Child,
    url: String,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn upstream(args: &[&str]) -> Upstream {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sy-upstream"))
        .args(["--port", "0", "--threads", "1"])
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start sy-upstream");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base = line
        .trim()
        .strip_prefix("sy-upstream listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    Upstream {
        child,
        url: format!("{base}/v1/chat/completions"),
    }
}

fn loadgen(args: &[&str]) -> (i32, serde_json::Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sy-loadgen"))
        .args(args)
        .arg("--json")
        .output()
        .expect("run sy-loadgen");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let v = serde_json::from_str(stdout.trim()).unwrap_or(serde_json::Value::Null);
    (out.status.code().unwrap_or(-1), v, stderr)
}

#[test]
fn plain_stream_and_hold_modes_measure_the_mock() {
    let up = upstream(&["--chunks", "3", "--chunk-delay-ms", "20"]);
    let pid = up.child.id().to_string();
    let watch = format!("upstream={pid}");

    let (code, v, err) = loadgen(&[
        "--url",
        &up.url,
        "-c",
        "4",
        "--duration",
        "400ms",
        "--warmup",
        "100ms",
        "--watch",
        &watch,
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(v["mode"], "plain");
    assert!(v["ok"].as_u64().unwrap() > 0, "{v}");
    assert_eq!(v["errors"], 0, "{v}");
    assert!(v["latency_us"]["p99"].as_f64().unwrap() > 0.0);
    assert!((600..=700).contains(&v["bytes_per_response"].as_u64().unwrap()));
    assert!(v["procs"]["upstream"]["peak_rss_kib"].as_u64().unwrap() > 0);
    assert!(v["procs"]["loadgen"]["cpu_ms"].is_number());

    let (code, v, err) = loadgen(&[
        "--url",
        &up.url,
        "-c",
        "4",
        "--duration",
        "300ms",
        "--stream",
        "--expect-events",
        "5",
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(v["mode"], "stream");
    assert!(v["ok"].as_u64().unwrap() > 0, "{v}");
    assert_eq!(v["errors"], 0, "{v}");
    assert_eq!(v["events"]["min"], 5);
    assert_eq!(v["done_missing"], 0);
    // 3 chunks 20 ms apart: the stream lasts about 40 ms, the first event comes at once.
    assert!(v["latency_us"]["p50"].as_f64().unwrap() >= 35_000.0, "{v}");
    assert!(v["ttfb_us"]["p50"].as_f64().unwrap() < 35_000.0, "{v}");

    // A wrong expectation is reported as broken streams, not hidden.
    let (code, v, _) = loadgen(&[
        "--url",
        &up.url,
        "--duration",
        "100ms",
        "--stream",
        "--expect-events",
        "9",
    ]);
    assert_eq!(code, 0);
    assert!(v["error_kinds"]["bad_stream"].as_u64().unwrap() > 0, "{v}");

    let (code, v, err) = loadgen(&["--url", &up.url, "-c", "50", "--hold", "100ms"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(v["mode"], "hold");
    assert_eq!(v["hold"]["peak_open"], 50, "{v}");
    assert_eq!(v["hold"]["completed_ok"], 50, "{v}");
    assert_eq!(v["errors"], 0, "{v}");
}

/// One HTTP/1.0 POST (the answer ends when the connection closes, so no chunked decoding):
/// the status code, the response head and the body.
fn post_http10(base: &str, path: &str, body: &str) -> (u16, String, String) {
    use std::io::{Read, Write};
    let addr = base.strip_prefix("http://").unwrap();
    let mut conn = std::net::TcpStream::connect(addr).unwrap();
    write!(
        conn,
        "POST {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = String::new();
    conn.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head.to_string(), body.to_string())
}

#[test]
fn anthropic_messages_endpoint() {
    let up = upstream(&["--chunks", "4", "--chunk-delay-ms", "20"]);
    let base = up.url.trim_end_matches("/v1/chat/completions").to_string();
    let request =
        r#"{"model":"bench-model","max_tokens":64,"messages":[{"role":"user","content":"hello"}]}"#;

    let (status, head, body) = post_http10(&base, "/v1/messages", request);
    assert_eq!(status, 200, "{head}");
    assert!(head
        .to_ascii_lowercase()
        .contains("content-type: application/json"));
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["type"], "message");
    assert_eq!(v["content"][0]["type"], "text");
    assert_eq!(v["stop_reason"], "end_turn");
    assert!((600..=700).contains(&body.len()), "{} bytes", body.len());

    let stream_request = r#"{"model":"bench-model","max_tokens":64,"stream": true,"messages":[{"role":"user","content":"hello"}]}"#;
    let started = std::time::Instant::now();
    let (status, head, body) = post_http10(&base, "/v1/messages", stream_request);
    let took = started.elapsed();
    assert_eq!(status, 200, "{head}");
    assert!(head
        .to_ascii_lowercase()
        .contains("content-type: text/event-stream"));
    let names: Vec<&str> = body
        .split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| e.lines().next().unwrap().strip_prefix("event: ").unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "ping",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    // 4 deltas 20 ms apart, the first at once: about 60 ms.
    assert!(took >= std::time::Duration::from_millis(55), "{took:?}");

    // Unknown Anthropic paths answer an Anthropic-style 404.
    let (status, _, body) = post_http10(&base, "/v1/messages/nope", request);
    assert_eq!(status, 404);
    assert!(body.contains("not_found_error"), "{body}");
}

/// Runs sy-loadgen with --json and parses one JSON object per stdout line.
fn loadgen_lines(args: &[&str]) -> (i32, Vec<serde_json::Value>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sy-loadgen"))
        .args(args)
        .arg("--json")
        .output()
        .expect("run sy-loadgen");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let lines = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    (out.status.code().unwrap_or(-1), lines, stderr)
}

#[test]
fn sliced_runs_measure_each_target_in_turns() {
    let up = upstream(&[]);
    let pid = up.child.id().to_string();
    let other = upstream(&[]);
    let other_pid = other.child.id().to_string();
    let wrong_path = other.url.replace("/v1/chat/completions", "/nope");
    let (code, lines, err) = loadgen_lines(&[
        "--slice",
        "100ms",
        "--duration",
        "450ms",
        "--warmup",
        "50ms",
        "-c",
        "2",
        "--watch",
        &format!("upstream={pid}"),
        "--target",
        &format!("one={}", up.url),
        "--target",
        &format!("two={}", up.url),
        "--target",
        &format!("missing={wrong_path}"),
        // Only `two` closes its connection after every answer.
        "--target-header",
        "two=Connection: close",
        "--target-watch",
        &format!("missing={other_pid}"),
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(lines.len(), 3, "{lines:?}");
    let by = |name: &str| {
        lines
            .iter()
            .find(|v| v["slice_target"] == name)
            .unwrap_or_else(|| panic!("no {name}: {lines:?}"))
    };
    for name in ["one", "two"] {
        let v = by(name);
        assert_eq!(v["mode"], "plain");
        assert_eq!(v["slices"], 5, "{v}");
        assert_eq!(v["url"], up.url.as_str());
        assert!(v["ok"].as_u64().unwrap() > 0, "{v}");
        assert_eq!(v["errors"], 0, "{v}");
        // Five turns of at most 100 ms (the last 50 ms), each ending with its last answer.
        let elapsed = v["elapsed_s"].as_f64().unwrap();
        assert!((0.45..1.5).contains(&elapsed), "{v}");
        // The mock is watched over this target's turns only, and served its requests then.
        assert!(v["procs"]["upstream"]["cpu_ms"].is_number(), "{v}");
        assert!(v["procs"].get("target").is_none(), "{v}");
    }
    assert_eq!(by("one")["reconnects"], 0, "{}", by("one"));
    assert!(
        by("two")["reconnects"].as_u64().unwrap() > 0,
        "{}",
        by("two")
    );
    let missing = by("missing");
    assert_eq!(missing["ok"], 0, "{missing}");
    assert!(
        missing["error_kinds"]["statuses"]["404"].as_u64().unwrap() > 0,
        "{missing}"
    );
    assert_eq!(missing["url"], wrong_path.as_str());
    assert!(
        missing["procs"]["target"]["peak_rss_kib"].as_u64().unwrap() > 0,
        "{missing}"
    );
    assert!(
        missing["procs"]["target"]["cpu_ms"].as_f64().unwrap() >= 0.0,
        "{missing}"
    );

    for args in [
        vec!["--slice", "100ms"],
        vec!["--slice", "0ms", "--target", "a=http://127.0.0.1:1/"],
        vec![
            "--slice",
            "100ms",
            "--url",
            "http://127.0.0.1:1/",
            "--target",
            "a=http://127.0.0.1:1/",
        ],
        vec!["--slice", "100ms", "--target", "http://127.0.0.1:1/"],
        vec![
            "--slice",
            "100ms",
            "--target",
            "a=http://127.0.0.1:1/",
            "--target",
            "a=http://127.0.0.1:2/",
        ],
        vec!["--slice", "100ms", "--target", "a=http://10.0.0.1:1/"],
        vec![
            "--slice",
            "100ms",
            "--target",
            "a=http://127.0.0.1:1/",
            "--target-header",
            "b=X-A: 1",
        ],
        vec![
            "--slice",
            "100ms",
            "--target",
            "a=http://127.0.0.1:1/",
            "--target-header",
            "a=no colon",
        ],
        vec![
            "--slice",
            "100ms",
            "--target",
            "a=http://127.0.0.1:1/",
            "--target-watch",
            "a=pid",
        ],
        vec![
            "--slice",
            "100ms",
            "--target",
            "a=http://127.0.0.1:1/",
            "--hold",
            "1s",
        ],
    ] {
        let (code, lines, stderr) = loadgen_lines(&args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert_eq!(lines.len(), 1, "{args:?}");
        assert!(lines[0]["fatal"].is_string(), "{args:?}: {lines:?}");
    }
}

#[test]
fn non_2xx_and_refused_connections_are_errors() {
    let up = upstream(&[]);
    let wrong_path = up.url.replace("/v1/chat/completions", "/nope");
    let (code, v, _) = loadgen(&["--url", &wrong_path, "--duration", "100ms"]);
    assert_eq!(code, 0);
    assert_eq!(v["ok"], 0);
    assert!(
        v["error_kinds"]["statuses"]["404"].as_u64().unwrap() > 0,
        "{v}"
    );

    // Port 1 on loopback: nothing listens there.
    let (code, v, _) = loadgen(&[
        "--url",
        "http://127.0.0.1:1/v1/chat/completions",
        "--duration",
        "100ms",
    ]);
    assert_eq!(code, 0);
    assert!(v["error_kinds"]["connect"].as_u64().unwrap() > 0, "{v}");
}

#[test]
fn bad_input_is_refused_without_panicking() {
    for args in [
        vec!["--url", "http://10.1.2.3:80/"],
        vec!["--url", "http://example.com/"],
        vec!["--url", "https://127.0.0.1/"],
        vec!["--url", "http://127.0.0.1:1/", "--duration", "soon"],
        vec!["--url", "http://127.0.0.1:1/", "-c", "0"],
        vec![
            "--url",
            "http://127.0.0.1:1/",
            "--body",
            "/nonexistent/file",
        ],
        vec!["--url", "http://127.0.0.1:1/", "-H", "no colon"],
        vec!["--url", "http://127.0.0.1:1/", "--watch", "x"],
        vec!["--url", "http://127.0.0.1:1/", "--duration", "5h"],
        vec!["--duration", "1s"],
    ] {
        let (code, _, stderr) = loadgen(&args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_sy-upstream"))
        .args(["--host", "0.0.0.0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}
