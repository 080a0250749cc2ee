"""Fixtures for the black-box tests: the mock upstream, the gateway, clients.

Each test module may define `GATEWAY_CONFIG`, a YAML text in which `$mock_url`
(the mock provider's base URL, no trailing slash, e.g. http://127.0.0.1:4123)
and `$mock_port` are substituted. Without it, `DEFAULT_CONFIG` below is used.
Modules that need several gateways use the `gateway_factory` fixture directly.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator
from urllib.parse import urlsplit

import httpx
import openai
import pytest

from harness import Server, ServerError

# Never send loopback traffic through a proxy from the environment.
os.environ["NO_PROXY"] = "127.0.0.1,localhost"
os.environ["no_proxy"] = "127.0.0.1,localhost"

REPO = Path(__file__).resolve().parents[2]

UPSTREAM_SECRET = "sk-upstream-secret"
TEST_KEY = "sk-sy-test-0000000000000000000000000000000000"
# A key without a model allow-list (every model allowed).
ALL_KEY = "sk-sy-all0000000000000000000000000000000000000"
ADMIN_KEY = "test-admin-key"

DEFAULT_CONFIG = """\
listen: 127.0.0.1:0
auth: keys
admin_key: test-admin-key
server: { max_body_bytes: 64KiB, request_timeout: 30s }
providers:
  up:       { type: openai, base_url: $mock_url/v1, api_key: sk-upstream-secret }
  az:       { type: azure, base_url: $mock_url, api_key: sk-upstream-secret, api_version: "2024-10-21" }
  dead:     { type: openai-compatible, base_url: http://127.0.0.1:1/v1 }
  wrongkey: { type: openai, base_url: $mock_url/v1, api_key: sk-wrong-upstream-secret }
  demo:     { type: mock }
models:
  chat:      { targets: [{ provider: up, model: gpt-4o-mini }], price: { input: 0.15, output: 0.60 } }
  azchat:    { targets: [{ provider: az, model: prod-4o-mini }], price: { input: 0.15, output: 0.60 } }
  failover:  { targets: [{ provider: dead, model: x, weight: 1 }, { provider: up, model: gpt-4o-mini, weight: 1 }], retries: 0 }
  bad:       { targets: [{ provider: up, model: "gpt-4o-mini+malformed" }], retries: 0 }
  up503:     { targets: [{ provider: up, model: "gpt-4o-mini+status=503" }], retries: 0 }
  limited:   { targets: [{ provider: up, model: "gpt-4o-mini+status=429" }], retries: 0 }
  down:      { targets: [{ provider: dead, model: x }], retries: 0 }
  slow:      { targets: [{ provider: up, model: "gpt-4o-mini+delay_ms=3000" }], timeout: 500ms, retries: 0 }
  cut:       { targets: [{ provider: up, model: "gpt-4o-mini+cut_after=2" }], retries: 0 }
  drip:      { targets: [{ provider: up, model: "gpt-4o-mini+chunk_delay_ms=150" }], retries: 0 }
  emb:       { targets: [{ provider: up, model: text-embedding-3-small }] }
  badkey:    { targets: [{ provider: wrongkey, model: gpt-4o-mini }], retries: 0 }
  demo-chat: { targets: [{ provider: demo, model: echo }], price: { input: 0.15, output: 0.60 } }
  forbidden: { targets: [{ provider: up, model: gpt-4o-mini }] }
keys:
  - { name: test, secret: sk-sy-test-0000000000000000000000000000000000, models: ["chat", "azchat", "failover", "bad", "up503", "limited", "down", "slow", "cut", "drip", "emb", "badkey", "demo-*"] }
  - { name: all, secret: sk-sy-all0000000000000000000000000000000000000 }
"""


def _binary(env_name: str, default_name: str) -> Path:
    raw = os.environ.get(env_name)
    path = Path(raw) if raw else REPO / "target" / "debug" / default_name
    if not path.is_absolute():
        path = REPO / path
    if not (path.is_file() and os.access(path, os.X_OK)):
        # Fail, never skip: a missing binary means the suite did not run.
        pytest.fail(
            f"{default_name} binary not found at {path}; build it with "
            f"`cargo build --workspace --bins` or set {env_name}",
            pytrace=False,
        )
    return path


@pytest.fixture(scope="session")
def switchyard_bin() -> Path:
    return _binary("SWITCHYARD_BIN", "switchyard")


@pytest.fixture(scope="session")
def mock_provider_bin() -> Path:
    return _binary("MOCK_PROVIDER_BIN", "mock-provider")


# --------------------------------------------------------------------------- mock provider


@dataclass
class MockProvider:
    server: Server
    url: str
    api_key: str | None

    @property
    def port(self) -> int:
        return int(urlsplit(self.url).port or 0)

    def stats(self) -> dict[str, Any]:
        resp = httpx.get(self.url + "/_mock/stats", timeout=5.0, trust_env=False)
        resp.raise_for_status()
        return resp.json()

    def last_request(self) -> dict[str, Any]:
        """The last request the mock received, headers lower-cased, body parsed if JSON."""
        last = dict(self.stats()["last"] or {})
        headers = last.get("headers") or {}
        if isinstance(headers, list):  # [[name, value], ...]
            headers = {k: v for k, v in headers}
        last["headers"] = {str(k).lower(): v for k, v in headers.items()}
        body = last.get("body")
        if isinstance(body, str):
            try:
                last["body"] = json.loads(body)
            except ValueError:
                pass
        return last


@pytest.fixture(scope="session")
def mock_provider_factory(
    mock_provider_bin: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., MockProvider]]:
    started: list[Server] = []

    def start(api_key: str | None = UPSTREAM_SECRET) -> MockProvider:
        argv = [str(mock_provider_bin), "--port", "0"]
        if api_key:
            argv += ["--api-key", api_key]
        server = Server("mock-provider", argv, cwd=tmp_path_factory.mktemp("mock"))
        started.append(server)
        try:
            url = server.wait_listening()
        except ServerError as exc:
            pytest.fail(str(exc), pytrace=False)
        return MockProvider(server=server, url=url, api_key=api_key)

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="module")
def mock_provider(mock_provider_factory: Callable[..., MockProvider]) -> Iterator[MockProvider]:
    mock = mock_provider_factory()
    yield mock
    mock.server.stop()


# --------------------------------------------------------------------------- gateway


@dataclass
class Gateway:
    server: Server
    url: str
    config_path: Path
    clients: list[Any] = field(default_factory=list)

    def openai(self, api_key: str = TEST_KEY, **kwargs: Any) -> openai.OpenAI:
        """An official OpenAI SDK client pointed at the gateway, without SDK-side retries."""
        kwargs.setdefault("max_retries", 0)
        kwargs.setdefault("timeout", 30.0)
        client = openai.OpenAI(base_url=self.url + "/v1", api_key=api_key, **kwargs)
        self.clients.append(client)
        return client

    def http(self, api_key: str | None = TEST_KEY, **kwargs: Any) -> httpx.Client:
        """A raw HTTP client with the key (if any) as a Bearer token."""
        headers = dict(kwargs.pop("headers", {}) or {})
        if api_key is not None:
            headers["authorization"] = f"Bearer {api_key}"
        kwargs.setdefault("timeout", 30.0)
        client = httpx.Client(base_url=self.url, headers=headers, trust_env=False, **kwargs)
        self.clients.append(client)
        return client

    def close_clients(self) -> None:
        for client in self.clients:
            try:
                client.close()
            except Exception:  # noqa: BLE001 - best effort at teardown
                pass
        self.clients.clear()


def render_config(template: str, mock: MockProvider | None) -> str:
    """Substitutes `$mock_url` and `$mock_port`; everything else, `${VAR}` included, is kept."""
    url = mock.url if mock else "http://127.0.0.1:1"
    port = str(mock.port if mock else 1)
    return template.replace("$mock_url", url).replace("$mock_port", port)


@pytest.fixture(scope="session")
def gateway_factory(
    switchyard_bin: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., Gateway]]:
    """Start a gateway from a YAML text (already rendered). Stopped at session end,
    or earlier by calling `gateway.server.stop()`."""
    started: list[Gateway] = []

    def start(config_yaml: str, env: dict[str, str] | None = None) -> Gateway:
        workdir = tmp_path_factory.mktemp("gateway")
        config_path = workdir / "switchyard.yaml"
        config_path.write_text(config_yaml)
        server = Server(
            "switchyard",
            [str(switchyard_bin), "serve", "-c", str(config_path)],
            cwd=workdir,
            env=env,
        )
        try:
            url = server.wait_listening()
            server.wait_http_ok("/health/ready")
        except ServerError as exc:
            pytest.fail(f"{exc}\n--- config ---\n{config_yaml}", pytrace=False)
        gateway = Gateway(server=server, url=url, config_path=config_path)
        started.append(gateway)
        return gateway

    yield start
    for gateway in started:
        gateway.close_clients()
        gateway.server.stop()


@pytest.fixture(scope="module")
def gateway(
    request: pytest.FixtureRequest,
    gateway_factory: Callable[..., Gateway],
    mock_provider: MockProvider,
) -> Iterator[Gateway]:
    template = getattr(request.module, "GATEWAY_CONFIG", DEFAULT_CONFIG)
    gw = gateway_factory(render_config(template, mock_provider))
    yield gw
    gw.close_clients()
    code = gw.server.stop()
    # A gateway that crashed during the module's tests is a failure even if the tests passed.
    assert code in (0, -15, 143, None), (
        f"gateway exited with {code} at shutdown\n{gw.server.diagnostics()}"
    )


@pytest.fixture
def client(gateway: Gateway) -> openai.OpenAI:
    return gateway.openai()


@pytest.fixture
def http(gateway: Gateway) -> httpx.Client:
    return gateway.http()
