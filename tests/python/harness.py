"""Process management for the black-box tests: start a binary, wait for its
"listening on" line, and stop it again.

No fixed ports and no sleeps that hope: every server is started on port 0 and
announces its address on stdout; readiness is polled with a bounded loop.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import httpx

STARTUP_TIMEOUT = float(os.environ.get("SWITCHYARD_TEST_STARTUP_TIMEOUT", "30"))
STOP_TIMEOUT = 10.0

_LISTEN_RE = {
    "switchyard": re.compile(r"switchyard listening on (http://\S+)"),
    "mock-provider": re.compile(r"mock-provider listening on (http://\S+)"),
}


class ServerError(RuntimeError):
    """A server did not start; the message carries its output."""


class Server:
    """One child process that announces `<name> listening on http://...`."""

    def __init__(self, name: str, argv: list[str], cwd: Path, env: dict[str, str] | None = None):
        self.name = name
        self.argv = argv
        self.cwd = cwd
        self.url: str | None = None
        self.stdout_lines: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        # stderr goes to a file: it can never block the child, and we can show it on failure.
        self._stderr = tempfile.NamedTemporaryFile(
            prefix=f"{name}-", suffix=".stderr", dir=cwd, delete=False
        )
        child_env = dict(os.environ)
        child_env.pop("SWITCHYARD_CONFIG", None)
        child_env.setdefault("RUST_BACKTRACE", "1")
        if env:
            child_env.update(env)
        self.proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=child_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            start_new_session=True,
        )
        # Drain stdout for the whole life of the process so it never blocks on a full pipe.
        self._reader = threading.Thread(target=self._read_stdout, daemon=True)
        self._reader.start()

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            self.stdout_lines.append(line)
            self._lines.put(line)
        self._lines.put(None)

    def stderr_text(self) -> str:
        try:
            return Path(self._stderr.name).read_text("utf-8", "replace")
        except OSError:
            return ""

    def diagnostics(self) -> str:
        out = "\n".join(self.stdout_lines[-200:])
        err = self.stderr_text()[-20000:]
        return (
            f"command: {' '.join(self.argv)}\n"
            f"exit code: {self.proc.poll()}\n"
            f"--- stdout ---\n{out}\n--- stderr ---\n{err}"
        )

    def wait_listening(self, timeout: float = STARTUP_TIMEOUT) -> str:
        """Read stdout lines until the 'listening on' line; return the base URL."""
        pattern = _LISTEN_RE[self.name]
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.stop()
                raise ServerError(
                    f"{self.name} did not print '{self.name} listening on http://...' "
                    f"within {timeout:.0f}s\n{self.diagnostics()}"
                )
            try:
                line = self._lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                self.proc.wait(timeout=STOP_TIMEOUT)
                raise ServerError(
                    f"{self.name} exited before it was listening\n{self.diagnostics()}"
                )
            match = pattern.search(line)
            if match:
                self.url = match.group(1).rstrip("/")
                return self.url

    def wait_http_ok(self, path: str, timeout: float = STARTUP_TIMEOUT) -> None:
        """Poll GET path until it answers 200, with a bounded loop."""
        assert self.url is not None
        deadline = time.monotonic() + timeout
        last = "no answer"
        with httpx.Client(timeout=2.0, trust_env=False) as client:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise ServerError(
                        f"{self.name} exited while waiting for {path}\n{self.diagnostics()}"
                    )
                try:
                    resp = client.get(self.url + path)
                    if resp.status_code == 200:
                        return
                    last = f"HTTP {resp.status_code}: {resp.text[:500]}"
                except httpx.HTTPError as exc:
                    last = repr(exc)
                time.sleep(0.05)
        self.stop()
        raise ServerError(
            f"{self.name}: GET {path} did not answer 200 within {timeout:.0f}s "
            f"(last: {last})\n{self.diagnostics()}"
        )

    def stop(self) -> int | None:
        """SIGTERM, wait; SIGKILL after a timeout. Returns the exit code."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(timeout=STOP_TIMEOUT)
        self._reader.join(timeout=STOP_TIMEOUT)
        self._stderr.close()
        return self.proc.returncode
