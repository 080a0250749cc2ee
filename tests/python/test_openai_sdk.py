"""The gateway driven by the official `openai` Python SDK (issue 2, point 9).

Upstream is the repository's mock provider, whose answers are deterministic:
the reply is "echo: " + the last user message; prompt tokens are the number of
whitespace-separated words in all message texts (+1 per tool); completion
tokens are the words of the reply.
"""

from __future__ import annotations

import base64
import json
import math
import socket
import struct
import time
from typing import Any
from urllib.parse import urlsplit

import httpx
import openai
import pytest

from conftest import ALL_KEY, TEST_KEY, UPSTREAM_SECRET, Gateway, MockProvider

PRICE_IN, PRICE_OUT = 0.15, 0.60  # USD per million tokens, the `chat` model's price

SWITCHYARD_HEADERS = (
    "x-request-id",
    "x-switchyard-model",
    "x-switchyard-version",
    "x-switchyard-provider",
    "x-switchyard-upstream-model",
    "x-switchyard-attempts",
)


def words(text: str) -> int:
    return len(text.split())


def expected_cost(prompt_tokens: int, completion_tokens: int) -> float:
    return (prompt_tokens * PRICE_IN + completion_tokens * PRICE_OUT) / 1e6


def usage_cost(usage: Any) -> float:
    """`usage.cost` is an extension field: pydantic keeps it in model_extra."""
    assert usage is not None, "no usage object"
    extra = getattr(usage, "model_extra", None) or {}
    cost = extra.get("cost", getattr(usage, "cost", None))
    assert cost is not None, f"usage has no `cost`: {usage!r}"
    assert isinstance(cost, (int, float)), f"usage.cost is not a number: {cost!r}"
    return float(cost)


def attempt_count(header: str) -> int:
    """`x-switchyard-attempts` is either a count ("2") or a list of attempts
    ("dead:503,up:200"); either way, count them."""
    header = header.strip()
    if header.isdigit():
        return int(header)
    return len([part for part in header.split(",") if part.strip()])


def assert_openai_error(body: Any, status: int) -> dict[str, Any]:
    """The OpenAI error shape: {"error": {"message", "type", "param", "code"}}."""
    assert isinstance(body, dict) and isinstance(body.get("error"), dict), (
        f"HTTP {status}: not an OpenAI error body: {body!r}"
    )
    err = body["error"]
    for key in ("message", "type", "param", "code"):
        assert key in err, f"HTTP {status}: error has no `{key}`: {body!r}"
    assert isinstance(err["message"], str) and err["message"], body
    assert isinstance(err["type"], str) and err["type"], body
    assert UPSTREAM_SECRET not in json.dumps(body), f"provider secret leaked: {body!r}"
    return err


def assert_no_secret(resp: httpx.Response) -> None:
    assert UPSTREAM_SECRET not in resp.text, f"provider secret in body: {resp.text[:2000]}"
    for name, value in resp.headers.items():
        assert UPSTREAM_SECRET not in value, f"provider secret in header {name}: {value}"


def sse_data_lines(resp: httpx.Response) -> list[str]:
    """The `data:` payloads of a server-sent event stream, in order."""
    out = []
    for line in resp.iter_lines():
        if line.startswith("data:"):
            out.append(line[len("data:") :].strip())
    return out


MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Say hello world"},
]
REPLY = "echo: Say hello world"
PROMPT_TOKENS = words("You are terse.") + words("Say hello world")
COMPLETION_TOKENS = words(REPLY)

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather of a city",
        "parameters": {
            "type": "object",
            "properties": {"input": {"type": "string"}},
            "required": ["input"],
        },
    },
}


# --------------------------------------------------------------------------- health


def test_health_endpoints(gateway: Gateway) -> None:
    with gateway.http(api_key=None) as http:
        assert http.get("/health/live").status_code == 200
        assert http.get("/health/ready").status_code == 200


# --------------------------------------------------------------------------- chat


def test_chat_completion(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(model="chat", messages=MESSAGES)
    assert completion.object == "chat.completion"
    assert completion.id
    assert len(completion.choices) == 1
    choice = completion.choices[0]
    assert choice.index == 0
    assert choice.message.role == "assistant"
    assert choice.message.content == REPLY
    assert choice.finish_reason == "stop"
    usage = completion.usage
    assert usage is not None
    assert usage.prompt_tokens == PROMPT_TOKENS
    assert usage.completion_tokens == COMPLETION_TOKENS
    assert usage.total_tokens == PROMPT_TOKENS + COMPLETION_TOKENS
    assert usage_cost(usage) == pytest.approx(expected_cost(PROMPT_TOKENS, COMPLETION_TOKENS), rel=1e-6)


def test_chat_response_headers(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(model="chat", messages=MESSAGES)
    assert raw.status_code == 200
    headers = raw.headers
    for name in SWITCHYARD_HEADERS + ("x-switchyard-cost",):
        assert headers.get(name), f"missing header {name}; got {dict(headers)}"
    assert headers["x-switchyard-model"] == "chat"
    assert headers["x-switchyard-version"] == "default"
    assert headers["x-switchyard-provider"] == "up"
    assert headers["x-switchyard-upstream-model"] == "gpt-4o-mini"
    assert attempt_count(headers["x-switchyard-attempts"]) == 1
    completion = raw.parse()
    assert completion.choices[0].message.content == REPLY
    assert float(headers["x-switchyard-cost"]) == pytest.approx(usage_cost(completion.usage), rel=1e-6)


def test_request_ids_are_unique(client: openai.OpenAI) -> None:
    ids = {
        client.chat.completions.with_raw_response.create(model="chat", messages=MESSAGES).headers.get(
            "x-request-id"
        )
        for _ in range(3)
    }
    assert None not in ids and len(ids) == 3, ids


def test_upstream_gets_rewritten_model_and_provider_key(
    client: openai.OpenAI, mock_provider: MockProvider
) -> None:
    client.chat.completions.create(
        model="chat",
        messages=MESSAGES,
        response_format={"type": "json_object"},
        seed=7,
        temperature=0.5,
        metadata={"trace": "abc"},
    )
    last = mock_provider.last_request()
    assert last["method"] == "POST"
    assert last["path"] == "/v1/chat/completions"
    body = last["body"]
    assert isinstance(body, dict), last
    assert body["model"] == "gpt-4o-mini"
    assert body["messages"] == MESSAGES
    # The other fields are forwarded untouched.
    assert body["response_format"] == {"type": "json_object"}
    assert body["seed"] == 7
    assert body["temperature"] == 0.5
    assert body["metadata"] == {"trace": "abc"}
    headers = last["headers"]
    assert headers.get("authorization") == f"Bearer {UPSTREAM_SECRET}"
    # The client's virtual key never travels upstream.
    assert TEST_KEY not in json.dumps(last)


def test_azure_deployment_url_and_api_key_header(
    client: openai.OpenAI, mock_provider: MockProvider
) -> None:
    raw = client.chat.completions.with_raw_response.create(model="azchat", messages=MESSAGES)
    assert raw.parse().choices[0].message.content == REPLY
    assert raw.headers["x-switchyard-provider"] == "az"
    assert raw.headers["x-switchyard-upstream-model"] == "prod-4o-mini"
    last = mock_provider.last_request()
    assert last["path"] == "/openai/deployments/prod-4o-mini/chat/completions", last
    query = last.get("query") or ""
    if isinstance(query, dict):
        assert query.get("api-version") == "2024-10-21", last
    else:
        assert "api-version=2024-10-21" in query, last
    assert last["headers"].get("api-key") == UPSTREAM_SECRET, last["headers"]


def test_builtin_mock_provider(gateway: Gateway) -> None:
    client = gateway.openai()
    raw = client.chat.completions.with_raw_response.create(model="demo-chat", messages=MESSAGES)
    completion = raw.parse()
    assert completion.choices[0].message.content == REPLY
    assert raw.headers["x-switchyard-provider"] == "demo"


def test_x_api_key_header_authenticates(gateway: Gateway) -> None:
    with gateway.http(api_key=None, headers={"x-api-key": TEST_KEY}) as http:
        resp = http.post("/v1/chat/completions", json={"model": "chat", "messages": MESSAGES})
    assert resp.status_code == 200, resp.text
    assert resp.json()["choices"][0]["message"]["content"] == REPLY


def test_legacy_completions(client: openai.OpenAI) -> None:
    completion = client.completions.create(model="chat", prompt="Say hi", max_tokens=16)
    assert completion.object == "text_completion"
    assert completion.choices[0].text == "echo: Say hi"
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == 2
    assert completion.usage.completion_tokens == 3


def test_body_just_under_the_limit_is_accepted(client: openai.OpenAI) -> None:
    text = " ".join(["word"] * 10_000)  # ~50 KB, under the 64 KiB limit
    completion = client.chat.completions.create(
        model="chat", messages=[{"role": "user", "content": text}]
    )
    assert completion.choices[0].message.content == "echo: " + text
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == 10_000


# --------------------------------------------------------------------------- streaming


def test_stream_with_usage(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="chat",
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert len(chunks) >= 3, f"expected several chunks, got {len(chunks)}"
    for chunk in chunks:
        assert chunk.object == "chat.completion.chunk"
    ids = {chunk.id for chunk in chunks}
    assert len(ids) == 1, f"chunks of one stream carry different ids: {ids}"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == REPLY
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish == ["stop"]
    # Only the last chunk has usage, and it has no choices (OpenAI's include_usage contract).
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert all(c.usage is None for c in chunks[:-1]), "usage on a chunk before the last"
    assert last.usage.prompt_tokens == PROMPT_TOKENS
    assert last.usage.completion_tokens == COMPLETION_TOKENS
    # Streamed and non-streamed calls yield identical token counts and cost (SPEC 3.4).
    assert usage_cost(last.usage) == pytest.approx(
        expected_cost(PROMPT_TOKENS, COMPLETION_TOKENS), rel=1e-6
    )


def test_stream_response_headers(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="chat", messages=MESSAGES, stream=True
    )
    assert raw.status_code == 200
    assert raw.headers.get("content-type", "").startswith("text/event-stream")
    for name in SWITCHYARD_HEADERS:
        assert raw.headers.get(name), f"missing header {name} on a stream; got {dict(raw.headers)}"
    assert raw.headers["x-switchyard-model"] == "chat"
    assert raw.headers["x-switchyard-upstream-model"] == "gpt-4o-mini"
    text = "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)
    assert text == REPLY


def test_stream_wire_format_ends_with_done(http: httpx.Client) -> None:
    body = {"model": "chat", "messages": MESSAGES, "stream": True}
    with http.stream("POST", "/v1/chat/completions", json=body) as resp:
        assert resp.status_code == 200
        data = sse_data_lines(resp)
    assert data, "no data lines"
    assert data[-1] == "[DONE]", data[-3:]
    assert data.count("[DONE]") == 1
    payloads = [json.loads(d) for d in data[:-1]]
    assert all("error" not in p for p in payloads), payloads
    text = "".join(
        (p["choices"][0]["delta"].get("content") or "") for p in payloads if p.get("choices")
    )
    assert text == REPLY


def test_stream_is_relayed_as_it_arrives(client: openai.OpenAI) -> None:
    # The upstream sends one word every 150 ms: the chunks must reach the client spread out
    # the same way, not merged or held back until the end.
    text = "one two three four five six"
    started = time.monotonic()
    arrivals = []
    pieces = []
    stream = client.chat.completions.create(
        model="drip", messages=[{"role": "user", "content": text}], stream=True
    )
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            arrivals.append(time.monotonic() - started)
            pieces.append(chunk.choices[0].delta.content)
    assert "".join(pieces) == "echo: " + text
    assert len(arrivals) == 7, pieces
    spread = arrivals[-1] - arrivals[0]
    # Six gaps of 150 ms upstream; allow for scheduling, but a buffered relay shows ~0.
    assert spread >= 0.45, f"chunks arrived together (spread {spread:.3f}s): {arrivals}"
    assert arrivals[0] < arrivals[-1] - 0.45


def test_stream_cut_midway_raises_in_sdk(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="cut",
        messages=[{"role": "user", "content": "one two three four five six seven eight"}],
        stream=True,
    )
    received = []
    with pytest.raises(openai.APIError) as info:
        for chunk in stream:
            received.append(chunk)
    exc = info.value
    # A dropped connection would also be an APIError (APIConnectionError); the
    # gateway must instead send an in-stream error event that the SDK raises as-is.
    assert not isinstance(exc, openai.APIConnectionError), f"connection error instead of an error event: {exc!r}"
    assert isinstance(exc.body, dict) and exc.body.get("message"), exc.body
    assert UPSTREAM_SECRET not in json.dumps(exc.body)
    assert received, "the chunks sent before the cut never reached the client"


def test_stream_cut_midway_wire_format(http: httpx.Client) -> None:
    body = {
        "model": "cut",
        "messages": [{"role": "user", "content": "one two three four five six seven eight"}],
        "stream": True,
    }
    with http.stream("POST", "/v1/chat/completions", json=body) as resp:
        assert resp.status_code == 200
        data = sse_data_lines(resp)
    assert len(data) >= 3, data
    assert data[-1] == "[DONE]", f"stream did not end with [DONE]: {data[-3:]}"
    err = json.loads(data[-2])
    assert isinstance(err.get("error"), dict), f"no error event before [DONE]: {data[-3:]}"
    assert err["error"].get("message"), err
    assert UPSTREAM_SECRET not in data[-2]
    # The content that arrived before the cut was relayed.
    first = json.loads(data[0])
    assert "error" not in first


def test_stream_failing_before_first_byte_is_an_http_error(client: openai.OpenAI) -> None:
    with pytest.raises(openai.InternalServerError) as info:
        stream = client.chat.completions.create(model="down", messages=MESSAGES, stream=True)
        list(stream)
    assert info.value.status_code == 503


# --------------------------------------------------------------------------- tools


def test_tool_call_non_streamed(client: openai.OpenAI) -> None:
    text = "What is the weather in Paris"
    completion = client.chat.completions.create(
        model="chat",
        messages=[{"role": "user", "content": text}],
        tools=[WEATHER_TOOL],
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls
    assert calls and len(calls) == 1
    call = calls[0]
    assert call.id
    assert call.type == "function"
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"input": text}
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == words(text) + 1


def test_tool_call_streamed(client: openai.OpenAI) -> None:
    text = "What is the weather in Paris"
    stream = client.chat.completions.create(
        model="chat",
        messages=[{"role": "user", "content": text}],
        tools=[WEATHER_TOOL],
        stream=True,
        stream_options={"include_usage": True},
    )
    calls: dict[int, dict[str, str]] = {}
    finish = None
    usage = None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        if not chunk.choices:
            continue
        choice = chunk.choices[0]
        if choice.finish_reason:
            finish = choice.finish_reason
        for delta in choice.delta.tool_calls or []:
            call = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
            if delta.id:
                call["id"] = delta.id
            if delta.function is not None:
                call["name"] += delta.function.name or ""
                call["arguments"] += delta.function.arguments or ""
    assert finish == "tool_calls"
    assert list(calls) == [0], calls
    assert calls[0]["id"]
    assert calls[0]["name"] == "get_weather"
    assert json.loads(calls[0]["arguments"]) == {"input": text}
    assert usage is not None and usage.prompt_tokens == words(text) + 1


def test_tool_result_round_trip(client: openai.OpenAI) -> None:
    # The conversation continues after the tool ran: the mock answers "tool said: <result>".
    completion = client.chat.completions.create(
        model="chat",
        messages=[
            {"role": "user", "content": "What is the weather in Paris"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"input": "Paris"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny and warm"},
        ],
        tools=[WEATHER_TOOL],
    )
    assert completion.choices[0].message.content == "tool said: sunny and warm"
    assert completion.choices[0].finish_reason == "stop"


# --------------------------------------------------------------------------- other request features


def test_n_choices(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(model="chat", messages=MESSAGES, n=2)
    assert [c.index for c in completion.choices] == [0, 1]
    assert all(c.message.content == REPLY for c in completion.choices)
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 2 * COMPLETION_TOKENS
    assert usage_cost(completion.usage) == pytest.approx(
        expected_cost(PROMPT_TOKENS, 2 * COMPLETION_TOKENS), rel=1e-6
    )


def test_image_content_parts(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model="chat",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "describe this"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                ],
            }
        ],
    )
    assert completion.choices[0].message.content == "echo: describe this"
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == 3  # two words + one image


# --------------------------------------------------------------------------- embeddings and models


def test_embeddings_float(client: openai.OpenAI) -> None:
    resp = client.embeddings.create(
        model="emb", input=["alpha beta", "gamma"], encoding_format="float"
    )
    assert resp.object == "list"
    assert [d.index for d in resp.data] == [0, 1]
    dims = {len(d.embedding) for d in resp.data}
    assert len(dims) == 1 and dims.pop() > 0
    for d in resp.data:
        assert d.object == "embedding"
        assert all(isinstance(x, float) and math.isfinite(x) for x in d.embedding)
    assert resp.data[0].embedding != resp.data[1].embedding
    assert resp.usage.prompt_tokens == 3
    again = client.embeddings.create(model="emb", input="alpha beta", encoding_format="float")
    assert again.data[0].embedding == resp.data[0].embedding, "embeddings are not deterministic"


def test_embeddings_base64(client: openai.OpenAI) -> None:
    floats = client.embeddings.create(model="emb", input="alpha beta", encoding_format="float")
    b64 = client.embeddings.create(model="emb", input="alpha beta", encoding_format="base64")
    encoded = b64.data[0].embedding
    assert isinstance(encoded, str), f"base64 embedding is not a string: {type(encoded)}"
    raw = base64.b64decode(encoded)
    assert len(raw) % 4 == 0
    decoded = list(struct.unpack(f"<{len(raw) // 4}f", raw))
    expected = floats.data[0].embedding
    assert len(decoded) == len(expected)
    assert decoded == pytest.approx(expected, rel=1e-6, abs=1e-7)
    # Without encoding_format the SDK asks for base64 and decodes it itself.
    default = client.embeddings.create(model="emb", input="alpha beta")
    assert default.data[0].embedding == pytest.approx(expected, rel=1e-6, abs=1e-7)


def test_models_list(client: openai.OpenAI) -> None:
    models = list(client.models.list())
    ids = {m.id for m in models}
    allowed = {"chat", "azchat", "failover", "bad", "down", "slow", "cut", "drip", "emb", "demo-chat"}
    assert allowed <= ids, f"missing: {allowed - ids}"
    for m in models:
        assert m.object == "model"


def test_models_list_unrestricted_key(gateway: Gateway) -> None:
    ids = {m.id for m in gateway.openai(api_key=ALL_KEY).models.list()}
    assert {"chat", "forbidden", "emb"} <= ids


# --------------------------------------------------------------------------- failover


def test_failover_from_dead_target(client: openai.OpenAI) -> None:
    attempts = []
    for _ in range(16):
        raw = client.chat.completions.with_raw_response.create(model="failover", messages=MESSAGES)
        assert raw.status_code == 200
        assert raw.parse().choices[0].message.content == REPLY
        assert raw.headers["x-switchyard-provider"] == "up"
        attempts.append(raw.headers["x-switchyard-attempts"])
    counts = [attempt_count(a) for a in attempts]
    assert set(counts) <= {1, 2}, attempts
    # With weights 1:1 the dead target is picked first about half of the time
    # (all 16 missing it has probability 2^-16); each such request shows 2 attempts.
    assert 2 in counts, f"no request failed over: {attempts}"
    for header, count in zip(attempts, counts):
        if count == 2 and not header.strip().isdigit():
            assert "dead" in header, header


# --------------------------------------------------------------------------- errors


def test_400_malformed_json(http: httpx.Client) -> None:
    resp = http.post(
        "/v1/chat/completions",
        content=b'{"model": "chat", "messages": [{"role": "user", ',
        headers={"content-type": "application/json"},
    )
    assert resp.status_code == 400, resp.text
    assert_openai_error(resp.json(), 400)
    assert resp.headers.get("x-request-id")


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"model": 123, "messages": MESSAGES}, id="model-is-a-number"),
        pytest.param({"model": "chat", "messages": "hello"}, id="messages-is-a-string"),
        pytest.param({"model": "chat", "messages": MESSAGES, "stream": "yes"}, id="stream-is-a-string"),
        pytest.param({"messages": MESSAGES}, id="model-missing"),
    ],
)
def test_400_wrong_types(http: httpx.Client, body: dict[str, Any]) -> None:
    resp = http.post("/v1/chat/completions", json=body)
    assert resp.status_code == 400, resp.text
    assert_openai_error(resp.json(), 400)


def test_400_wrong_types_via_sdk(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="chat", messages="hello")  # type: ignore[arg-type]
    assert info.value.status_code == 400
    assert_openai_error({"error": info.value.body}, 400)


def test_401_unknown_key(gateway: Gateway) -> None:
    bad = gateway.openai(api_key="sk-sy-not-a-real-key-000000000000000000000000")
    with pytest.raises(openai.AuthenticationError) as info:
        bad.chat.completions.create(model="chat", messages=MESSAGES)
    assert info.value.status_code == 401
    assert_openai_error({"error": info.value.body}, 401)
    assert info.value.response.headers.get("x-request-id")


def test_401_missing_key(gateway: Gateway) -> None:
    with gateway.http(api_key=None) as http:
        resp = http.post("/v1/chat/completions", json={"model": "chat", "messages": MESSAGES})
    assert resp.status_code == 401, resp.text
    assert_openai_error(resp.json(), 401)
    with gateway.http(api_key=None) as http:
        models = http.get("/v1/models")
    assert models.status_code == 401, models.text


def _read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response with a content-length body: status, headers, body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed after {data!r}")
        data += chunk
    head, rest = data.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed in the middle of a body")
        rest += chunk
    return status, headers, rest[:length]


@pytest.mark.parametrize("case", ["401", "413"])
def test_connection_reusable_or_closed_explicitly_after_early_error(gateway: Gateway, case: str) -> None:
    """An error sent before the request body was read (401 bad key, 413 too large) must
    either leave the keep-alive connection usable or say `connection: close`. Closing it
    silently makes a client's next request on it fail: httpx and the openai SDK report
    "Server disconnected without sending a response".

    Deterministic version: send the request head, let the gateway answer, then send the
    body and a second request on the same connection."""
    content = "x" * 70_000 if case == "413" else "hi"
    body = json.dumps({"model": "chat", "messages": [{"role": "user", "content": content}]}).encode()
    auth = b"" if case == "401" else f"Authorization: Bearer {TEST_KEY}\r\n".encode()
    head = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
        + auth
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
    )
    url = urlsplit(gateway.url)
    with socket.create_connection((url.hostname, url.port), timeout=5) as sock:
        sock.sendall(head)
        sock.settimeout(1.0)
        try:
            status, headers, _ = _read_response(sock)  # the gateway answered before the body
            early = True
        except socket.timeout:
            early = False  # it waits for the body: send it, then read the answer
        sock.settimeout(5)
        try:
            sock.sendall(body)
            if not early:
                status, headers, _ = _read_response(sock)
            assert status == int(case)
            if headers.get("connection", "").lower() == "close":
                return
            sock.sendall(b"GET /health/live HTTP/1.1\r\nHost: gw\r\n\r\n")
            second, _, _ = _read_response(sock)
        except OSError as exc:  # ConnectionError, BrokenPipeError, ...
            raise AssertionError(
                f"the gateway answered {case} ({'before' if early else 'after'} the body "
                f"arrived) without `connection: close`, then closed the connection: {exc!r}"
            ) from None
        assert second == 200


def test_403_model_not_allowed_for_key(client: openai.OpenAI) -> None:
    with pytest.raises(openai.PermissionDeniedError) as info:
        client.chat.completions.create(model="forbidden", messages=MESSAGES)
    assert info.value.status_code == 403
    assert_openai_error({"error": info.value.body}, 403)


def test_404_unknown_model(gateway: Gateway) -> None:
    client = gateway.openai(api_key=ALL_KEY)
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="no-such-model", messages=MESSAGES)
    assert info.value.status_code == 404
    err = assert_openai_error({"error": info.value.body}, 404)
    assert "no-such-model" in err["message"]


def test_413_body_too_large(client: openai.OpenAI) -> None:
    text = "x" * (70 * 1024)  # over server.max_body_bytes (64 KiB)
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model="chat", messages=[{"role": "user", "content": text}])
    assert info.value.status_code == 413
    assert_openai_error({"error": info.value.body}, 413)


def test_413_body_too_large_raw(http: httpx.Client) -> None:
    body = json.dumps({"model": "chat", "messages": [{"role": "user", "content": "x" * 70_000}]})
    resp = http.post("/v1/chat/completions", content=body, headers={"content-type": "application/json"})
    assert resp.status_code == 413, resp.text
    assert_openai_error(resp.json(), 413)


def _assert_upstream_error_headers(response: httpx.Response, model: str) -> None:
    assert response.headers.get("x-request-id")
    assert response.headers.get("x-switchyard-model") == model
    assert response.headers.get("x-switchyard-attempts")
    assert_no_secret(response)


def test_502_upstream_answered_badly(client: openai.OpenAI) -> None:
    with pytest.raises(openai.InternalServerError) as info:
        client.chat.completions.create(model="bad", messages=MESSAGES)
    assert info.value.status_code == 502
    assert_openai_error({"error": info.value.body}, 502)
    _assert_upstream_error_headers(info.value.response, "bad")


def test_502_upstream_5xx(client: openai.OpenAI) -> None:
    with pytest.raises(openai.InternalServerError) as info:
        client.chat.completions.create(model="up503", messages=MESSAGES)
    assert info.value.status_code == 502
    assert_openai_error({"error": info.value.body}, 502)
    _assert_upstream_error_headers(info.value.response, "up503")


def test_429_upstream_rate_limited(client: openai.OpenAI) -> None:
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(model="limited", messages=MESSAGES)
    assert info.value.status_code == 429
    assert_openai_error({"error": info.value.body}, 429)


def test_503_no_healthy_target(client: openai.OpenAI) -> None:
    with pytest.raises(openai.InternalServerError) as info:
        client.chat.completions.create(model="down", messages=MESSAGES)
    assert info.value.status_code == 503
    assert_openai_error({"error": info.value.body}, 503)
    _assert_upstream_error_headers(info.value.response, "down")


def test_504_upstream_timeout(client: openai.OpenAI) -> None:
    started = time.monotonic()
    with pytest.raises(openai.InternalServerError) as info:
        client.chat.completions.create(model="slow", messages=MESSAGES)
    elapsed = time.monotonic() - started
    assert info.value.status_code == 504
    assert_openai_error({"error": info.value.body}, 504)
    _assert_upstream_error_headers(info.value.response, "slow")
    # The model's 500ms per-attempt timeout fired; the 3s upstream delay was not awaited.
    assert elapsed < 2.5, f"took {elapsed:.2f}s"


def test_504_upstream_timeout_streamed(client: openai.OpenAI) -> None:
    # For streams the timeout bounds the time to first byte.
    with pytest.raises(openai.InternalServerError) as info:
        list(client.chat.completions.create(model="slow", messages=MESSAGES, stream=True))
    assert info.value.status_code == 504


# --------------------------------------------------------------------------- secrets


def test_provider_secret_never_in_any_answer(gateway: Gateway) -> None:
    requests = [
        ("POST", "/v1/chat/completions", {"model": "chat", "messages": MESSAGES}),
        ("POST", "/v1/chat/completions", {"model": "chat", "messages": MESSAGES, "stream": True}),
        ("POST", "/v1/chat/completions", {"model": "cut", "messages": MESSAGES, "stream": True}),
        ("POST", "/v1/chat/completions", {"model": "bad", "messages": MESSAGES}),
        ("POST", "/v1/chat/completions", {"model": "up503", "messages": MESSAGES}),
        ("POST", "/v1/chat/completions", {"model": "down", "messages": MESSAGES}),
        ("POST", "/v1/chat/completions", {"model": "badkey", "messages": MESSAGES}),
        ("POST", "/v1/chat/completions", {"model": "azchat", "messages": MESSAGES}),
        ("POST", "/v1/embeddings", {"model": "emb", "input": "hi"}),
        ("GET", "/v1/models", None),
    ]
    with gateway.http() as http:
        for method, path, body in requests:
            resp = http.request(method, path, json=body)
            assert_no_secret(resp)
            assert "sk-wrong-upstream-secret" not in resp.text
            for value in resp.headers.values():
                assert "sk-wrong-upstream-secret" not in value


def test_upstream_rejecting_provider_key_is_502(client: openai.OpenAI) -> None:
    # The upstream refuses the gateway's own credential: that is the gateway's
    # configuration problem ("upstream answered badly"), not the client's key
    # (401 means the client's key is missing or unknown), and it is never echoed.
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model="badkey", messages=MESSAGES)
    assert info.value.status_code == 502, info.value.body
    assert "sk-wrong-upstream-secret" not in json.dumps(info.value.body)
    assert_openai_error({"error": info.value.body}, info.value.status_code)
