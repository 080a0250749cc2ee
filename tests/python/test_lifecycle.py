"""The binary's life outside single requests: `check`, `--version`, `SWITCHYARD_CONFIG`,
`${VAR}` interpolation, hot reload (admin API and SIGHUP), graceful shutdown on SIGTERM,
and slow or idle clients (issue 2, points 2 and 8)."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

import httpx

from conftest import ADMIN_KEY, Gateway, MockProvider, render_config

MESSAGES = [{"role": "user", "content": "Say hello world"}]

BASE = """\
listen: 127.0.0.1:0
auth: none
admin_key: test-admin-key
providers:
  up:   { type: openai, base_url: $mock_url/v1, api_key: sk-upstream-secret }
  demo: { type: mock }
"""


def run_cli(binary: Path, *args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k != "SWITCHYARD_CONFIG"}
    full_env.update(env or {})
    return subprocess.run(
        [str(binary), *args],
        capture_output=True,
        text=True,
        timeout=30,
        env=full_env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
    )


def chat(gw: Gateway, model: str, **kwargs: Any) -> httpx.Response:
    with gw.http(api_key=None) as http:
        return http.post("/v1/chat/completions", json={"model": model, "messages": MESSAGES}, **kwargs)


def model_ids(gw: Gateway) -> set[str]:
    with gw.http(api_key=None) as http:
        resp = http.get("/v1/models")
        resp.raise_for_status()
        return {m["id"] for m in resp.json()["data"]}


# --------------------------------------------------------------------------- CLI


def test_version(switchyard_bin: Path) -> None:
    out = run_cli(switchyard_bin, "--version")
    assert out.returncode == 0, out.stderr
    assert re.search(r"switchyard \d+\.\d+\.\d+", out.stdout), out.stdout


def test_check_accepts_a_valid_config(switchyard_bin: Path, tmp_path: Path) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text(render_config(BASE + "models:\n  chat: { targets: [{ provider: demo, model: echo }] }\n", None))
    out = run_cli(switchyard_bin, "check", "-c", str(path))
    assert out.returncode == 0, out.stdout + out.stderr


def test_check_names_a_typo_with_path_line_and_hint(switchyard_bin: Path, tmp_path: Path) -> None:
    path = tmp_path / "typo.yaml"
    path.write_text(
        "listen: 127.0.0.1:0\n"
        "providers:\n"
        "  demo: { type: mock }\n"
        "models:\n"
        "  chat:\n"
        "    targets: [{ provider: demo, model: echo }]\n"
        "    retires: 2\n"
    )
    out = run_cli(switchyard_bin, "check", "-c", str(path))
    text = out.stdout + out.stderr
    assert out.returncode == 1, text
    assert "models.chat.retires" in text, text
    assert re.search(r"\b7\b", text), f"line 7 not named: {text}"
    assert "did you mean" in text and "retries" in text, text


def test_check_rejects_an_undefined_provider(switchyard_bin: Path, tmp_path: Path) -> None:
    path = tmp_path / "undefined.yaml"
    path.write_text(
        "listen: 127.0.0.1:0\n"
        "providers:\n"
        "  demo: { type: mock }\n"
        "models:\n"
        "  chat: { targets: [{ provider: nosuch, model: x }] }\n"
    )
    out = run_cli(switchyard_bin, "check", "-c", str(path))
    text = out.stdout + out.stderr
    assert out.returncode == 1, text
    assert "nosuch" in text, text
    assert re.search(r"\b5\b", text), f"line 5 not named: {text}"


def test_check_honours_switchyard_config(switchyard_bin: Path, tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(render_config(BASE + "models: {}\n", None))
    bad = tmp_path / "bad.yaml"
    bad.write_text("listen: 127.0.0.1:0\nlistne: oops\n")
    assert run_cli(switchyard_bin, "check", env={"SWITCHYARD_CONFIG": str(good)}).returncode == 0
    out = run_cli(switchyard_bin, "check", env={"SWITCHYARD_CONFIG": str(bad)})
    assert out.returncode == 1, out.stdout + out.stderr
    assert "listne" in out.stdout + out.stderr


def test_check_names_an_unset_variable(switchyard_bin: Path, tmp_path: Path) -> None:
    path = tmp_path / "env.yaml"
    path.write_text(
        "listen: 127.0.0.1:0\n"
        "providers:\n"
        "  up: { type: openai, base_url: http://127.0.0.1:1/v1, api_key: ${SY_TEST_SURELY_UNSET} }\n"
        "models: {}\n"
    )
    out = run_cli(switchyard_bin, "check", "-c", str(path), env={})
    assert out.returncode == 1
    assert "SY_TEST_SURELY_UNSET" in out.stdout + out.stderr


# --------------------------------------------------------------------------- env interpolation


def test_env_interpolation_reaches_the_provider(
    gateway_factory: Callable[..., Gateway], mock_provider: MockProvider
) -> None:
    config = render_config(
        "listen: 127.0.0.1:0\n"
        "auth: none\n"
        "server: { max_body_bytes: ${SY_TEST_MAX_BODY:-1KiB} }\n"
        "providers:\n"
        "  up: { type: openai, base_url: $mock_url/v1, api_key: ${SY_TEST_UPSTREAM_KEY} }\n"
        "models:\n"
        "  chat: { targets: [{ provider: up, model: gpt-4o-mini }] }\n",
        mock_provider,
    )
    gw = gateway_factory(config, env={"SY_TEST_UPSTREAM_KEY": "sk-upstream-secret"})
    # The key came from the environment: the mock (which checks it) answers.
    resp = chat(gw, "chat")
    assert resp.status_code == 200, resp.text
    # The default of ${SY_TEST_MAX_BODY:-1KiB} applies.
    with gw.http(api_key=None) as http:
        big = http.post(
            "/v1/chat/completions",
            json={"model": "chat", "messages": [{"role": "user", "content": "x" * 2048}]},
        )
    assert big.status_code == 413, big.text
    gw.server.stop()


# --------------------------------------------------------------------------- reload


def _write(path: Path, text: str) -> None:
    # Write then rename, as an editor or a config-management tool would: never a half file.
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def test_reload_via_admin_api(
    gateway_factory: Callable[..., Gateway], mock_provider: MockProvider
) -> None:
    one = BASE + "models:\n  one: { targets: [{ provider: demo, model: echo }] }\n"
    gw = gateway_factory(render_config(one, mock_provider))
    assert chat(gw, "one").status_code == 200
    assert chat(gw, "two").status_code == 404

    two = one + "  two: { targets: [{ provider: up, model: gpt-4o-mini }] }\n"
    _write(gw.config_path, render_config(two, mock_provider))
    with gw.http(api_key=None) as http:
        assert http.post("/admin/v1/reload").status_code == 401
        assert http.post("/admin/v1/reload", headers={"authorization": "Bearer wrong"}).status_code == 401
        ok = http.post("/admin/v1/reload", headers={"authorization": f"Bearer {ADMIN_KEY}"})
        assert ok.status_code == 200, ok.text
    resp = chat(gw, "two")
    assert resp.status_code == 200, resp.text
    assert resp.json()["choices"][0]["message"]["content"] == "echo: Say hello world"

    # An invalid file is refused with the reason; the running configuration is kept.
    _write(
        gw.config_path,
        render_config(two + "  three: { targets: [{ provider: nosuch, model: x }] }\n", mock_provider),
    )
    with gw.http(api_key=None) as http:
        refused = http.post("/admin/v1/reload", headers={"authorization": f"Bearer {ADMIN_KEY}"})
    assert 400 <= refused.status_code < 500, refused.text
    assert "nosuch" in refused.text, refused.text
    assert chat(gw, "two").status_code == 200
    assert chat(gw, "three").status_code == 404
    gw.server.stop()


def test_reload_on_sighup(
    gateway_factory: Callable[..., Gateway], mock_provider: MockProvider
) -> None:
    one = BASE + "models:\n  one: { targets: [{ provider: demo, model: echo }] }\n"
    gw = gateway_factory(render_config(one, mock_provider))
    # A broken file first: SIGHUP must not take the gateway down.
    _write(gw.config_path, "listen: 127.0.0.1:0\nmodles: {}\n")
    os.kill(gw.server.proc.pid, signal.SIGHUP)
    _write(
        gw.config_path,
        render_config(one + "  hup: { targets: [{ provider: demo, model: echo }] }\n", mock_provider),
    )
    os.kill(gw.server.proc.pid, signal.SIGHUP)
    deadline = time.monotonic() + 10
    while "hup" not in model_ids(gw):
        assert gw.server.proc.poll() is None, gw.server.diagnostics()
        assert time.monotonic() < deadline, f"SIGHUP did not reload\n{gw.server.diagnostics()}"
        time.sleep(0.05)
    assert chat(gw, "hup").status_code == 200
    assert chat(gw, "one").status_code == 200
    gw.server.stop()


# --------------------------------------------------------------------------- shutdown and slow clients


def test_sigterm_lets_an_inflight_stream_finish(
    gateway_factory: Callable[..., Gateway], mock_provider: MockProvider
) -> None:
    config = BASE + (
        "server: { shutdown_grace: 20s }\n"
        "models:\n"
        '  drip: { targets: [{ provider: up, model: "gpt-4o-mini+chunk_delay_ms=250" }] }\n'
    )
    gw = gateway_factory(render_config(config, mock_provider))
    text = "one two three four five six seven eight"
    first_chunk = threading.Event()
    result: dict[str, Any] = {}

    def stream() -> None:
        try:
            with gw.http(api_key=None) as http:
                body = {"model": "drip", "stream": True, "messages": [{"role": "user", "content": text}]}
                with http.stream("POST", "/v1/chat/completions", json=body) as resp:
                    result["status"] = resp.status_code
                    data = []
                    for line in resp.iter_lines():
                        if line.startswith("data:"):
                            data.append(line[5:].strip())
                            first_chunk.set()
                    result["data"] = data
        except Exception as exc:  # noqa: BLE001 - reported by the assertions below
            result["error"] = repr(exc)
        finally:
            first_chunk.set()

    thread = threading.Thread(target=stream)
    thread.start()
    assert first_chunk.wait(10), "the stream never started"
    gw.server.proc.send_signal(signal.SIGTERM)

    # The gateway stops accepting new connections while the stream goes on.
    host, port = urlsplit(gw.url).hostname, urlsplit(gw.url).port
    refused = False
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and thread.is_alive():
        try:
            with socket.create_connection((host, port), timeout=1):
                pass
        except OSError:
            refused = True
            break
        time.sleep(0.02)

    thread.join(30)
    assert not thread.is_alive(), "the stream did not finish"
    assert "error" not in result, result
    assert result["status"] == 200
    data = result["data"]
    assert data[-1] == "[DONE]", data[-3:]
    content = "".join(
        json.loads(d)["choices"][0]["delta"].get("content") or ""
        for d in data[:-1]
        if json.loads(d).get("choices")
    )
    assert content == "echo: " + text
    assert all("error" not in json.loads(d) for d in data[:-1])
    assert refused, "new connections were still accepted after SIGTERM"
    code = gw.server.proc.wait(timeout=20)
    assert code == 0, f"exit code {code}\n{gw.server.diagnostics()}"


def test_idle_and_slow_clients_are_disconnected(
    gateway_factory: Callable[..., Gateway], mock_provider: MockProvider
) -> None:
    config = BASE + (
        "server: { header_read_timeout: 1s, idle_timeout: 1s }\n"
        "models:\n  chat: { targets: [{ provider: demo, model: echo }] }\n"
    )
    gw = gateway_factory(render_config(config, mock_provider))
    host, port = urlsplit(gw.url).hostname, urlsplit(gw.url).port

    def closed_within(sock: socket.socket, limit: float) -> float:
        """Seconds until the server closes the connection (reading whatever it sends)."""
        started = time.monotonic()
        sock.settimeout(limit)
        try:
            while sock.recv(4096):
                pass
        except socket.timeout:
            raise AssertionError(f"connection still open after {limit}s") from None
        except ConnectionResetError:
            pass
        return time.monotonic() - started

    # A client that connects and says nothing.
    with socket.create_connection((host, port), timeout=5) as silent:
        assert closed_within(silent, 8) < 8
    # A client that sends half a request head and stalls.
    with socket.create_connection((host, port), timeout=5) as slow:
        slow.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
        assert closed_within(slow, 8) < 8
    # A keep-alive client that was served once and then says nothing more.
    with socket.create_connection((host, port), timeout=5) as served:
        body = json.dumps({"model": "chat", "messages": [{"role": "user", "content": "hi"}]})
        served.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n{body}".encode()
        )
        served.settimeout(5)
        first = served.recv(4096)
        assert first.startswith(b"HTTP/1.1 200"), first
        assert closed_within(served, 8) < 8
    # The gateway still serves after all three.
    assert chat(gw, "chat").status_code == 200
    gw.server.stop()
