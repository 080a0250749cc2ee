"""Helpers for `test_translation_sdk.py`: the provider matrix, what the mock answers, and
the assembling of streams as an SDK user would do it.

The mock provider answers deterministically on every protocol it emulates:

* text: "echo: " + the last user text, stop reason end_turn / stop / STOP;
* with tools: a call of the first tool with arguments {"input": "<last user text>"};
* after a tool result: "tool said: <result>";
* tokens are whitespace-separated words: prompt = system + message texts (+1 per tool),
  completion = the words of the reply.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import httpx

# --------------------------------------------------------------------------- the matrix


@dataclass(frozen=True)
class Upstream:
    """One model alias of the test gateway and what the mock must see for it."""

    alias: str
    protocol: str  # openai | anthropic | gemini | bedrock
    upstream_model: str
    buffered_path: str  # suffix of the upstream path a non-streamed call must reach
    streamed_path: str  # ... and a streamed one


UPSTREAMS = {
    "gpt": Upstream("gpt", "openai", "gpt-4o-mini", "/v1/chat/completions", "/v1/chat/completions"),
    "claude": Upstream(
        "claude", "anthropic", "claude-3-5-haiku-latest", "/v1/messages", "/v1/messages"
    ),
    "gemini": Upstream(
        "gemini",
        "gemini",
        "gemini-2.0-flash",
        "/v1beta/models/gemini-2.0-flash:generateContent",
        "/v1beta/models/gemini-2.0-flash:streamGenerateContent",
    ),
    "nova": Upstream(
        "nova",
        "bedrock",
        "amazon.nova-pro-v1:0",
        "/model/amazon.nova-pro-v1%3A0/converse",
        "/model/amazon.nova-pro-v1%3A0/converse-stream",
    ),
}

ALL_MODELS = ["gpt", "claude", "gemini", "nova"]
# Models whose upstream speaks another protocol than the one the SDK speaks.
NOT_ANTHROPIC = ["gpt", "gemini", "nova"]
NOT_OPENAI = ["claude", "gemini", "nova"]

PRICE_IN, PRICE_OUT = 1.0, 2.0  # USD per million tokens, every model of the test config

# --------------------------------------------------------------------------- the conversation

SYSTEM = "You are terse."
USER = "Say hello world"
REPLY = "echo: " + USER

TOOL_QUESTION = "What is the weather in Paris"
TOOL_NAME = "get_weather"
TOOL_RESULT = "sunny and warm"
TOOL_REPLY = "tool said: " + TOOL_RESULT

_TOOL_SCHEMA = {
    "type": "object",
    "properties": {"input": {"type": "string"}},
    "required": ["input"],
}
ANTHROPIC_TOOL = {
    "name": TOOL_NAME,
    "description": "Weather of a city",
    "input_schema": _TOOL_SCHEMA,
}
OPENAI_TOOL = {
    "type": "function",
    "function": {
        "name": TOOL_NAME,
        "description": "Weather of a city",
        "parameters": _TOOL_SCHEMA,
    },
}


def words(text: str) -> int:
    return len(text.split())


PROMPT_TOKENS = words(SYSTEM) + words(USER)
COMPLETION_TOKENS = words(REPLY)
TOOL_PROMPT_TOKENS = words(TOOL_QUESTION) + 1  # one token per tool definition


def expected_cost(prompt_tokens: int, completion_tokens: int) -> float:
    return (prompt_tokens * PRICE_IN + completion_tokens * PRICE_OUT) / 1e6


def openai_round_trip_messages() -> list[dict[str, Any]]:
    return [
        {"role": "user", "content": TOOL_QUESTION},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": TOOL_NAME, "arguments": '{"input": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": TOOL_RESULT},
    ]


def anthropic_round_trip_messages() -> list[dict[str, Any]]:
    return [
        {"role": "user", "content": TOOL_QUESTION},
        {
            "role": "assistant",
            "content": [
                {"type": "tool_use", "id": "toolu_1", "name": TOOL_NAME, "input": {"input": "Paris"}}
            ],
        },
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": TOOL_RESULT}],
        },
    ]


# --------------------------------------------------------------------------- the mock's view


def mock_last_request(mock_url: str) -> dict[str, Any]:
    """The last request the mock received (`GET /_mock/stats`)."""
    with httpx.Client(timeout=5.0, trust_env=False) as http:
        resp = http.get(mock_url + "/_mock/stats")
        resp.raise_for_status()
        return dict(resp.json().get("last") or {})


def assert_upstream_path(mock_url: str, alias: str, streamed: bool) -> None:
    """The call really went to the upstream protocol of `alias`, streamed when it should."""
    up = UPSTREAMS[alias]
    expected = up.streamed_path if streamed else up.buffered_path
    last = mock_last_request(mock_url)
    path = str(last.get("path") or "")
    assert path.endswith(expected), (
        f"{alias}: upstream got {last.get('method')} {path}, expected ...{expected}"
    )
    body = last.get("body")
    if isinstance(body, str):
        try:
            body = json.loads(body)
        except ValueError:
            body = None
    if up.protocol in ("openai", "anthropic") and isinstance(body, dict):
        # These protocols say in the body whether they stream.
        assert bool(body.get("stream")) == streamed, f"{alias}: upstream body stream={body.get('stream')!r}"


# --------------------------------------------------------------------------- anthropic


def anthropic_usage_counts(usage: Any) -> dict[str, int]:
    """The token counts of an Anthropic `Usage`; absent counts are 0, the cache-write TTL
    breakdown included (absent means nothing was written)."""
    assert usage is not None, "no usage"
    cache_creation = getattr(usage, "cache_creation", None)
    return {
        "input_tokens": usage.input_tokens or 0,
        "output_tokens": usage.output_tokens or 0,
        "cache_read_input_tokens": usage.cache_read_input_tokens or 0,
        "cache_creation_input_tokens": usage.cache_creation_input_tokens or 0,
        "ephemeral_5m_input_tokens": getattr(cache_creation, "ephemeral_5m_input_tokens", 0) or 0,
        "ephemeral_1h_input_tokens": getattr(cache_creation, "ephemeral_1h_input_tokens", 0) or 0,
    }


def anthropic_content(message: Any) -> list[dict[str, Any]]:
    """A message's content blocks, reduced to what must survive translation (tool-use ids
    are the upstream's and differ between calls)."""
    out = []
    for block in message.content:
        if block.type == "text":
            out.append({"type": "text", "text": block.text})
        elif block.type == "tool_use":
            out.append({"type": "tool_use", "name": block.name, "input": block.input})
        else:
            out.append({"type": block.type})
    return out


@dataclass
class AnthropicStreamResult:
    events: list[Any]
    text: str
    final: Any
    tool_json: dict[int, str]  # concatenated input_json_delta per block index

    @property
    def kinds(self) -> list[str]:
        """The raw event kinds in order (SDK convenience events and `ping` left out)."""
        raw = {
            "message_start",
            "message_delta",
            "message_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
        }
        return [e.type for e in self.events if e.type in raw]

    def collapsed_kinds(self) -> list[str]:
        """`kinds` with runs of deltas collapsed: upstreams chunk differently."""
        out: list[str] = []
        for kind in self.kinds:
            if not (out and out[-1] == kind == "content_block_delta"):
                out.append(kind)
        return out


def anthropic_stream(client: Any, **params: Any) -> AnthropicStreamResult:
    """Runs `messages.stream(...)`, collecting the events, the `text_stream` text, the
    streamed tool-input JSON and `get_final_message()`."""
    with client.messages.stream(**params) as stream:
        events: list[Any] = []
        text_parts: list[str] = []
        tool_json: dict[int, str] = {}
        for event in stream:
            events.append(event)
            if event.type == "content_block_delta":
                if event.delta.type == "text_delta":
                    text_parts.append(event.delta.text)
                elif event.delta.type == "input_json_delta":
                    tool_json[event.index] = tool_json.get(event.index, "") + event.delta.partial_json
        final = stream.get_final_message()
    return AnthropicStreamResult(events, "".join(text_parts), final, tool_json)


def anthropic_text_stream(client: Any, **params: Any) -> tuple[str, Any]:
    """`"".join(stream.text_stream)` and `get_final_message()`, the documented way."""
    with client.messages.stream(**params) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    return text, final


def check_anthropic_event_grammar(kinds: list[str]) -> None:
    """message_start, then blocks (start, deltas, stop), then message_delta, message_stop."""
    assert kinds, "no events"
    assert kinds[0] == "message_start", kinds
    assert kinds[-1] == "message_stop", kinds
    assert kinds[-2] == "message_delta", kinds
    assert kinds.count("message_start") == 1 and kinds.count("message_stop") == 1, kinds
    open_block = False
    for kind in kinds[1:-2]:
        if kind == "content_block_start":
            assert not open_block, f"block started inside a block: {kinds}"
            open_block = True
        elif kind == "content_block_delta":
            assert open_block, f"delta outside a block: {kinds}"
        elif kind == "content_block_stop":
            assert open_block, f"stop outside a block: {kinds}"
            open_block = False
        else:
            raise AssertionError(f"unexpected {kind} between blocks: {kinds}")
    assert not open_block, f"a block was never stopped: {kinds}"


# --------------------------------------------------------------------------- openai


def openai_usage_counts(usage: Any) -> dict[str, Any]:
    """Token counts and cost of an OpenAI `CompletionUsage`; absent details are 0."""
    assert usage is not None, "no usage"
    prompt_details = usage.prompt_tokens_details
    completion_details = usage.completion_tokens_details
    extra = getattr(usage, "model_extra", None) or {}
    cost = extra.get("cost")
    assert isinstance(cost, (int, float)), f"usage.cost missing or not a number: {usage!r}"
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
        "cached_tokens": (getattr(prompt_details, "cached_tokens", None) or 0),
        "reasoning_tokens": (getattr(completion_details, "reasoning_tokens", None) or 0),
        "cost": round(float(cost), 12),
    }


@dataclass
class OpenAIStreamResult:
    chunks: list[Any]
    text: str
    finish_reasons: list[str]
    tool_calls: dict[int, dict[str, Any]]
    usage_chunks: list[Any]
    roles: list[str]


def openai_stream(client: Any, **params: Any) -> OpenAIStreamResult:
    """Runs a streamed chat completion and assembles it as a client would: text deltas,
    tool-call deltas by index (id, name, argument fragments), finish reasons, usage chunks."""
    stream = client.chat.completions.create(stream=True, **params)
    chunks: list[Any] = []
    text: list[str] = []
    finish: list[str] = []
    roles: list[str] = []
    calls: dict[int, dict[str, Any]] = {}
    usage_chunks: list[Any] = []
    with stream:
        for chunk in stream:
            chunks.append(chunk)
            if chunk.usage is not None:
                usage_chunks.append(chunk)
            for choice in chunk.choices:
                assert choice.index == 0, f"unexpected choice index {choice.index}"
                delta = choice.delta
                if delta.role:
                    roles.append(delta.role)
                if delta.content:
                    text.append(delta.content)
                for tc in delta.tool_calls or []:
                    call = calls.setdefault(
                        tc.index, {"ids": [], "type": None, "name": "", "arguments": ""}
                    )
                    if tc.id:
                        call["ids"].append(tc.id)
                    if tc.type:
                        call["type"] = tc.type
                    if tc.function is not None:
                        call["name"] += tc.function.name or ""
                        call["arguments"] += tc.function.arguments or ""
                if choice.finish_reason:
                    finish.append(choice.finish_reason)
    return OpenAIStreamResult(chunks, "".join(text), finish, calls, usage_chunks, roles)


def plausible_created(created: int, slack: float = 3600.0) -> bool:
    """`created` is a Unix timestamp in seconds of (about) now."""
    return abs(created - time.time()) <= slack
