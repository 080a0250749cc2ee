//! The real binary, black box: `check`, listening on port 0, SIGTERM draining in-flight streams,
//! SIGHUP reloads, and slow clients cut off by the header read timeout.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");

struct Gateway {
    child: Child,
    addr: String,
}

impl Gateway {
    fn start(config: &Path) -> Gateway {
        let mut child = Command::new(BIN)
            .args(["serve", "-c"])
            .arg(config)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .strip_prefix("switchyard listening on http://")
            .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
            .to_string();
        Gateway { child, addr }
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }

    /// Sends a raw HTTP/1.1 request and returns the connection, the request written.
    fn send(&self, method: &str, path: &str, body: &str) -> TcpStream {
        let mut s = TcpStream::connect(&self.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        s
    }

    fn status_of(&self, method: &str, path: &str, body: &str) -> u16 {
        let mut out = String::new();
        self.send(method, path, body)
            .read_to_string(&mut out)
            .unwrap();
        out.split(' ').nth(1).unwrap().parse().unwrap()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn write_config(dir: &Path, models: &str) -> std::path::PathBuf {
    let path = dir.join("switchyard.yaml");
    let text = format!(
        "listen: 127.0.0.1:0\nstore: \"sqlite://{db}/sy.db\"\nauth: none\nserver: {{ header_read_timeout: 500ms, idle_timeout: 1s, shutdown_grace: 20s }}\nproviders:\n  demo: {{ type: mock, chunk_delay: 150ms }}\nmodels:\n{models}",
        db = dir.display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

const ONE: &str = "  one: { targets: [{ provider: demo, model: m }] }\n";

fn chat(model: &str, stream: bool) -> String {
    format!(
        r#"{{"model":"{model}","stream":{stream},"messages":[{{"role":"user","content":"a b c d e f"}}]}}"#
    )
}

/// Waits (bounded) for the process to exit.
fn wait_exit(child: &mut Child, bound: Duration) -> Option<std::process::ExitStatus> {
    let start = Instant::now();
    while start.elapsed() < bound {
        if let Some(s) = child.try_wait().unwrap() {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

#[test]
fn check_reports_each_problem_with_its_line_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(&path, "providers:\n  p: { type: mock }\nmodels:\n  m:\n    targets: [{ provider: q, model: x }]\n    fallbacks: [nope]\n").unwrap();
    let out = Command::new(BIN)
        .args(["check", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.yaml:5: models.m.targets[0].provider: unknown provider 'q'"),
        "{err}"
    );
    assert!(
        err.contains("bad.yaml:6: models.m.fallbacks[0]: unknown model 'nope'"),
        "{err}"
    );

    std::fs::write(&path, "models:\n  m:\n    tragets: []\n").unwrap();
    let out = Command::new(BIN)
        .args(["check", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.yaml:3:") && err.contains("did you mean `targets`?"),
        "{err}"
    );

    let good = write_config(dir.path(), ONE);
    let out = Command::new(BIN)
        .args(["check"])
        .env("SWITCHYARD_CONFIG", &good)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn sigterm_lets_an_in_flight_stream_finish_and_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let mut gw = Gateway::start(&write_config(dir.path(), ONE));
    let mut conn = gw.send("POST", "/v1/chat/completions", &chat("one", true));
    // Wait for the stream to start (its first event), then ask the gateway to stop.
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !seen.windows(6).any(|w| w == b"data: ") {
        let n = conn.read(&mut buf).unwrap();
        assert!(
            n > 0,
            "stream ended early: {}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }
    gw.signal("-TERM");
    conn.read_to_end(&mut seen).unwrap();
    let text = String::from_utf8_lossy(&seen);
    assert!(
        text.contains("data: [DONE]"),
        "the stream was cut by the shutdown: {text}"
    );
    assert!(!text.contains("\"error\""), "{text}");
    let status =
        wait_exit(&mut gw.child, Duration::from_secs(15)).expect("the gateway did not exit");
    assert!(status.success(), "{status:?}");
}

/// The model routes are served without the router (see `server::Hot`); what the router did for
/// them still holds through the real server: each protocol answers in its own format, another
/// method on the same path is a 405 and a path that only starts like one is a 404, both in
/// OpenAI's error format.
#[test]
fn model_routes_and_their_neighbours_answer_through_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(&write_config(dir.path(), ONE));
    let answer = |method: &str, path: &str, body: &str| {
        let mut out = String::new();
        gw.send(method, path, body)
            .read_to_string(&mut out)
            .unwrap();
        let status: u16 = out.split(' ').nth(1).unwrap().parse().unwrap();
        let body = out.split_once("\r\n\r\n").unwrap().1.to_string();
        (status, body)
    };
    let anthropic =
        r#"{"model":"one","max_tokens":16,"messages":[{"role":"user","content":"a b c"}]}"#;
    for (path, body, want) in [
        (
            "/v1/chat/completions",
            chat("one", false),
            r#""object":"chat.completion""#,
        ),
        ("/v1/messages", anthropic.to_string(), r#""type":"message""#),
        (
            "/v1/completions",
            r#"{"model":"one","prompt":"a b c"}"#.to_string(),
            r#""object":"text_completion""#,
        ),
        (
            "/v1/embeddings",
            r#"{"model":"one","input":"a b c"}"#.to_string(),
            r#""embedding""#,
        ),
    ] {
        let (status, answer) = answer("POST", path, &body);
        assert_eq!(status, 200, "{path}: {answer}");
        assert!(answer.contains(want), "{path}: {answer}");
    }
    // A model error still comes from the pipeline, in the endpoint's own format.
    let (status, body) = answer("POST", "/v1/messages", r#"{"model":"one"}"#);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains(r#""type":"error""#), "{body}");
    for (method, path, want) in [
        ("GET", "/v1/chat/completions", 405),
        ("PUT", "/v1/messages", 405),
        ("POST", "/v1/chat/completions/", 404),
        ("POST", "/v1/chat", 404),
    ] {
        let (status, body) = answer(method, path, "");
        assert_eq!(status, want, "{method} {path}: {body}");
        assert!(body.contains(r#""error""#), "{method} {path}: {body}");
    }
}

#[test]
fn sighup_reloads_the_file_and_keeps_serving_on_a_bad_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), ONE);
    let gw = Gateway::start(&path);
    assert_eq!(
        gw.status_of("POST", "/v1/chat/completions", &chat("two", false)),
        404
    );
    write_config(
        dir.path(),
        &format!("{ONE}  two: {{ targets: [{{ provider: demo, model: m }}] }}\n"),
    );
    gw.signal("-HUP");
    let start = Instant::now();
    while gw.status_of("POST", "/v1/chat/completions", &chat("two", false)) != 200 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the reload never took effect"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::fs::write(&path, "models: [this is not a map]\n").unwrap();
    gw.signal("-HUP");
    // A broken file is refused; both models keep answering.
    for _ in 0..5 {
        assert_eq!(
            gw.status_of("POST", "/v1/chat/completions", &chat("two", false)),
            200
        );
        assert_eq!(
            gw.status_of("POST", "/v1/chat/completions", &chat("one", false)),
            200
        );
    }
}

#[test]
fn a_client_that_never_finishes_its_headers_is_disconnected() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(&write_config(dir.path(), ONE));
    let mut s = TcpStream::connect(&gw.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n")
        .unwrap();
    let mut out = Vec::new();
    // The gateway closes the connection (header_read_timeout: 500ms); a read timeout here fails.
    let r = s.read_to_end(&mut out);
    assert!(r.is_ok(), "the connection was held open: {r:?}");
    // An idle keep-alive connection is closed too.
    let mut s = TcpStream::connect(&gw.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    assert!(
        s.read_to_end(&mut Vec::new()).is_ok(),
        "an idle connection was held open"
    );
}

/// A fake upstream that accepts one request, optionally starts a stream, then waits for the
/// gateway to hang up. Returns whether the gateway closed the upstream connection.
fn upstream_sees_hangup(stream: bool) -> bool {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        dir.path(),
        "  up: { targets: [{ provider: fake, model: m }], retries: 0 }\n",
    );
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("providers:\n", &format!("providers:\n  fake: {{ type: openai-compatible, base_url: \"http://127.0.0.1:{port}/v1\" }}\n"));
    std::fs::write(&path, text).unwrap();
    let gw = Gateway::start(&path);
    let mut client = gw.send("POST", "/v1/chat/completions", &chat("up", stream));
    let (mut up, _) = listener.accept().unwrap();
    up.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let mut buf = [0u8; 8192];
    let mut req = Vec::new();
    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = up.read(&mut buf).unwrap();
        req.extend_from_slice(&buf[..n]);
    }
    if stream {
        up.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n").unwrap();
        let ev = b"data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"},\"finish_reason\":null}]}\n\n";
        write!(up, "{:x}\r\n", ev.len()).unwrap();
        up.write_all(ev).unwrap();
        up.write_all(b"\r\n").unwrap();
        // The client sees the event, then goes away.
        let mut got = Vec::new();
        while !got.windows(5).any(|w| w == b"\"hi\"}") {
            let n = client.read(&mut buf).unwrap();
            assert!(n > 0);
            got.extend_from_slice(&buf[..n]);
        }
    }
    drop(client);
    // Drain whatever else the gateway sends; EOF means it closed the upstream connection.
    loop {
        match up.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

#[test]
fn a_client_disconnect_cancels_the_upstream_stream() {
    assert!(
        upstream_sees_hangup(true),
        "the upstream stream kept running after the client left"
    );
}

#[test]
fn a_client_disconnect_cancels_a_waiting_upstream_request() {
    assert!(
        upstream_sees_hangup(false),
        "the upstream request kept running after the client left"
    );
}

/// A minimal OTLP/HTTP receiver on a thread: keeps the body of every request, answers `{}`.
fn otlp_receiver() -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use std::sync::{Arc, Mutex};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let got: Arc<Mutex<Vec<String>>> = Arc::default();
    let keep = got.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { return };
            let keep = keep.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut conn = conn;
                loop {
                    let mut len = 0usize;
                    let mut line = String::new();
                    loop {
                        line.clear();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" {
                            break;
                        }
                        if let Some((k, v)) = line.split_once(':') {
                            if k.eq_ignore_ascii_case("content-length") {
                                len = v.trim().parse().unwrap();
                            }
                        }
                    }
                    let mut body = vec![0u8; len];
                    reader.read_exact(&mut body).unwrap();
                    keep.lock().unwrap().push(String::from_utf8(body).unwrap());
                    let _ = conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}");
                }
            });
        }
    });
    (url, got)
}

#[test]
fn traces_are_flushed_to_the_collector_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let (url, got) = otlp_receiver();
    let path = write_config(dir.path(), ONE);
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        format!("telemetry: {{ otlp_endpoint: {url} }}\n{text}"),
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["check", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("traces to {url}/v1/traces")),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut gw = Gateway::start(&path);
    assert_eq!(
        gw.status_of("POST", "/v1/chat/completions", &chat("one", false)),
        200
    );
    gw.signal("-TERM");
    let status =
        wait_exit(&mut gw.child, Duration::from_secs(15)).expect("the gateway did not exit");
    assert!(status.success(), "{status:?}");
    let bodies = got.lock().unwrap().join("\n");
    assert!(bodies.contains("\"name\":\"chat one\""), "{bodies}");
    assert!(bodies.contains("\"name\":\"chat m\""), "{bodies}");
}
