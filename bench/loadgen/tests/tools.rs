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
