"""Translation, black-box, with the official SDKs (issue 4, point 5).

* The `anthropic` SDK against `/v1/messages` for models served by OpenAI-format, Gemini and
  Bedrock upstreams (and by an Anthropic upstream, the native baseline): text, streaming,
  tool use streamed and not, tool results, count_tokens, errors.
* The `openai` SDK against `/v1/chat/completions` for models served by Anthropic, Gemini and
  Bedrock upstreams: text, streaming with usage, tool calls streamed and not.
* Streamed and buffered usage agree for every upstream, through both SDKs.

The upstream is the repository's mock provider (`translation_helpers` says how it answers);
`/_mock/stats` shows which upstream endpoint each call reached.
"""

from __future__ import annotations

import json
from typing import Any, Iterator

import anthropic
import openai
import pytest

from conftest import Gateway, MockProvider
from translation_helpers import (
    ALL_MODELS,
    ANTHROPIC_TOOL,
    COMPLETION_TOKENS,
    NOT_ANTHROPIC,
    NOT_OPENAI,
    OPENAI_TOOL,
    PROMPT_TOKENS,
    REPLY,
    SYSTEM,
    TOOL_NAME,
    TOOL_PROMPT_TOKENS,
    TOOL_QUESTION,
    TOOL_REPLY,
    UPSTREAMS,
    USER,
    anthropic_content,
    anthropic_round_trip_messages,
    anthropic_stream,
    anthropic_text_stream,
    anthropic_usage_counts,
    assert_upstream_path,
    check_anthropic_event_grammar,
    expected_cost,
    openai_round_trip_messages,
    openai_stream,
    openai_usage_counts,
    plausible_created,
    words,
)

GATEWAY_CONFIG = """\
listen: 127.0.0.1:0
auth: none
providers:
  oa: { type: openai, base_url: "$mock_url/v1", api_key: sk-upstream-secret }
  an: { type: anthropic, base_url: "$mock_url", api_key: sk-upstream-secret }
  ge: { type: gemini, base_url: "$mock_url", api_key: sk-upstream-secret }
  br: { type: bedrock, base_url: "$mock_url", region: us-east-1, access_key_id: sk-upstream-secret, secret_access_key: s3cr3t }
models:
  gpt:    { targets: [{ provider: oa, model: gpt-4o-mini }], price: { input: 1, output: 2 } }
  claude: { targets: [{ provider: an, model: claude-3-5-haiku-latest }], price: { input: 1, output: 2 } }
  gemini: { targets: [{ provider: ge, model: gemini-2.0-flash }], price: { input: 1, output: 2 } }
  nova:   { targets: [{ provider: br, model: "amazon.nova-pro-v1:0" }], price: { input: 1, output: 2 } }
"""

MAX_TOKENS = 256
TEXT_PARAMS: dict[str, Any] = {
    "max_tokens": MAX_TOKENS,
    "system": SYSTEM,
    "messages": [{"role": "user", "content": USER}],
}
TOOL_PARAMS: dict[str, Any] = {
    "max_tokens": MAX_TOKENS,
    "tools": [ANTHROPIC_TOOL],
    "messages": [{"role": "user", "content": TOOL_QUESTION}],
}
OPENAI_TEXT_MESSAGES = [
    {"role": "system", "content": SYSTEM},
    {"role": "user", "content": USER},
]
OPENAI_TOOL_MESSAGES = [{"role": "user", "content": TOOL_QUESTION}]


@pytest.fixture
def claude_sdk(gateway: Gateway) -> Iterator[anthropic.Anthropic]:
    """The official Anthropic SDK pointed at the gateway (`auth: none`), no SDK retries."""
    client = anthropic.Anthropic(base_url=gateway.url, api_key="x", max_retries=0, timeout=30.0)
    yield client
    client.close()


@pytest.fixture
def openai_sdk(gateway: Gateway) -> Iterator[openai.OpenAI]:
    """The official OpenAI SDK pointed at the gateway's /v1 (`auth: none`), no SDK retries."""
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="x", max_retries=0, timeout=30.0)
    yield client
    client.close()


# =========================================================================== anthropic SDK


def _check_text_message(message: Any, model: str) -> None:
    assert message.type == "message"
    assert message.role == "assistant"
    assert anthropic_content(message) == [{"type": "text", "text": REPLY}], message
    assert message.stop_reason == "end_turn", message
    assert message.stop_sequence is None
    usage = anthropic_usage_counts(message.usage)
    assert usage["input_tokens"] == PROMPT_TOKENS, (model, message.usage)
    assert usage["output_tokens"] == COMPLETION_TOKENS, (model, message.usage)
    assert usage["cache_read_input_tokens"] == 0
    assert usage["cache_creation_input_tokens"] == 0


def _check_tool_use_message(message: Any, model: str) -> None:
    assert anthropic_content(message) == [
        {"type": "tool_use", "name": TOOL_NAME, "input": {"input": TOOL_QUESTION}}
    ], message
    block = message.content[0]
    assert isinstance(block.id, str) and block.id, f"tool_use block without id: {block!r}"
    assert message.stop_reason == "tool_use", message
    usage = anthropic_usage_counts(message.usage)
    assert usage["input_tokens"] == TOOL_PROMPT_TOKENS, (model, message.usage)
    assert usage["output_tokens"] > 0, (model, message.usage)


@pytest.mark.parametrize("model", ALL_MODELS)
def test_anthropic_create_text(
    claude_sdk: anthropic.Anthropic,
    mock_provider: MockProvider,
    model: str,
) -> None:
    message = claude_sdk.messages.create(model=model, **TEXT_PARAMS)
    assert_upstream_path(mock_provider.url, model, streamed=False)
    _check_text_message(message, model)


@pytest.mark.parametrize("model", ALL_MODELS)
def test_anthropic_stream_text(
    claude_sdk: anthropic.Anthropic,
    mock_provider: MockProvider,
    model: str,
) -> None:
    text, final = anthropic_text_stream(claude_sdk, model=model, **TEXT_PARAMS)
    assert_upstream_path(mock_provider.url, model, streamed=True)
    assert text == REPLY
    _check_text_message(final, model)


@pytest.mark.parametrize("model", ALL_MODELS)
def test_anthropic_stream_text_events(claude_sdk: anthropic.Anthropic, model: str) -> None:
    result = anthropic_stream(claude_sdk, model=model, **TEXT_PARAMS)
    check_anthropic_event_grammar(result.kinds)
    assert result.text == REPLY
    starts = [e for e in result.events if e.type == "content_block_start"]
    assert [s.content_block.type for s in starts] == ["text"], starts
    deltas = [e for e in result.events if e.type == "content_block_delta"]
    assert all(d.delta.type == "text_delta" for d in deltas), deltas
    assert len(deltas) > 1, f"the answer was not streamed in pieces: {deltas}"
    message_delta = [e for e in result.events if e.type == "message_delta"][0]
    assert message_delta.delta.stop_reason == "end_turn"
    _check_text_message(result.final, model)


@pytest.mark.parametrize("model", ALL_MODELS)
def test_anthropic_create_tool_use(
    claude_sdk: anthropic.Anthropic,
    mock_provider: MockProvider,
    model: str,
) -> None:
    message = claude_sdk.messages.create(model=model, **TOOL_PARAMS)
    assert_upstream_path(mock_provider.url, model, streamed=False)
    _check_tool_use_message(message, model)


@pytest.mark.parametrize("model", ALL_MODELS)
def test_anthropic_stream_tool_use(
    claude_sdk: anthropic.Anthropic,
    mock_provider: MockProvider,
    model: str,
) -> None:
    result = anthropic_stream(claude_sdk, model=model, **TOOL_PARAMS)
    assert_upstream_path(mock_provider.url, model, streamed=True)
    check_anthropic_event_grammar(result.kinds)
    assert result.text == "", f"text streamed alongside the tool call: {result.text!r}"
    starts = [e for e in result.events if e.type == "content_block_start"]
    assert len(starts) == 1, starts
    block = starts[0].content_block
    assert block.type == "tool_use" and block.name == TOOL_NAME and block.id, block
    # As Anthropic streams it: the block starts with an empty input, which arrives as JSON deltas.
    assert block.input == {}, block
    deltas = [e for e in result.events if e.type == "content_block_delta"]
    assert deltas and all(d.delta.type == "input_json_delta" for d in deltas), deltas
    assert json.loads(result.tool_json[starts[0].index]) == {"input": TOOL_QUESTION}
    message_delta = [e for e in result.events if e.type == "message_delta"][0]
    assert message_delta.delta.stop_reason == "tool_use"
    _check_tool_use_message(result.final, model)
    assert result.final.content[0].id == block.id


@pytest.mark.parametrize("model", ALL_MODELS)
@pytest.mark.parametrize("streamed", [False, True], ids=["buffered", "streamed"])
def test_anthropic_tool_result_round_trip(
    claude_sdk: anthropic.Anthropic,
    model: str,
    streamed: bool,
) -> None:
    params = {
        "model": model,
        "max_tokens": MAX_TOKENS,
        "tools": [ANTHROPIC_TOOL],
        "messages": anthropic_round_trip_messages(),
    }
    if streamed:
        text, message = anthropic_text_stream(claude_sdk, **params)
        assert text == TOOL_REPLY
    else:
        message = claude_sdk.messages.create(**params)
    assert anthropic_content(message) == [{"type": "text", "text": TOOL_REPLY}], message
    assert message.stop_reason == "end_turn"
    assert message.usage.output_tokens == words(TOOL_REPLY)


@pytest.mark.parametrize("model", NOT_ANTHROPIC)
def test_anthropic_translated_answer_matches_native(
    claude_sdk: anthropic.Anthropic,
    model: str,
) -> None:
    """The issue's "done": through /v1/messages, a translated model answers as the native
    Anthropic upstream (`claude`) does: same blocks, stop reasons, usage, event kinds."""
    for params in (TEXT_PARAMS, TOOL_PARAMS):
        native = claude_sdk.messages.create(model="claude", **params)
        translated = claude_sdk.messages.create(model=model, **params)
        assert anthropic_content(translated) == anthropic_content(native)
        assert translated.stop_reason == native.stop_reason
        assert translated.stop_sequence == native.stop_sequence
        assert anthropic_usage_counts(translated.usage) == anthropic_usage_counts(native.usage)

        native_s = anthropic_stream(claude_sdk, model="claude", **params)
        translated_s = anthropic_stream(claude_sdk, model=model, **params)
        assert translated_s.collapsed_kinds() == native_s.collapsed_kinds()
        assert translated_s.text == native_s.text
        assert anthropic_content(translated_s.final) == anthropic_content(native_s.final)
        assert translated_s.final.stop_reason == native_s.final.stop_reason
        assert anthropic_usage_counts(translated_s.final.usage) == anthropic_usage_counts(
            native_s.final.usage
        )


def test_anthropic_count_tokens(claude_sdk: anthropic.Anthropic) -> None:
    counted = claude_sdk.messages.count_tokens(
        model="claude", messages=[{"role": "user", "content": "one two three"}]
    )
    assert counted.input_tokens == 3


def test_anthropic_count_tokens_matches_usage(claude_sdk: anthropic.Anthropic) -> None:
    """System prompt and tools are counted too, as the real call's input_tokens."""
    params = {
        "system": SYSTEM,
        "tools": [ANTHROPIC_TOOL],
        "messages": [{"role": "user", "content": TOOL_QUESTION}],
    }
    counted = claude_sdk.messages.count_tokens(model="claude", **params)
    message = claude_sdk.messages.create(model="claude", max_tokens=MAX_TOKENS, **params)
    assert counted.input_tokens == words(SYSTEM) + TOOL_PROMPT_TOKENS
    assert counted.input_tokens == message.usage.input_tokens


@pytest.mark.parametrize("model", NOT_ANTHROPIC)
def test_anthropic_count_tokens_any_model(claude_sdk: anthropic.Anthropic, model: str) -> None:
    """count_tokens answers for every model of every provider (an estimate off Anthropic)."""
    counted = claude_sdk.messages.count_tokens(
        model=model, messages=[{"role": "user", "content": "one two three"}]
    )
    assert isinstance(counted.input_tokens, int) and counted.input_tokens > 0, counted


def _check_anthropic_error(exc: anthropic.APIStatusError, status: int, error_type: str) -> str:
    assert exc.status_code == status
    body = exc.body
    assert isinstance(body, dict) and body.get("type") == "error", f"not an Anthropic error: {body!r}"
    err = body.get("error")
    assert isinstance(err, dict) and err.get("type") == error_type, body
    assert isinstance(err.get("message"), str) and err["message"], body
    assert "sk-upstream-secret" not in json.dumps(body)
    return err["message"]


def test_anthropic_unknown_model_is_not_found(claude_sdk: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.NotFoundError) as info:
        claude_sdk.messages.create(model="no-such-model", **TEXT_PARAMS)
    _check_anthropic_error(info.value, 404, "not_found_error")


def test_anthropic_unknown_model_is_not_found_streamed(claude_sdk: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.NotFoundError) as info:
        anthropic_text_stream(claude_sdk, model="no-such-model", **TEXT_PARAMS)
    _check_anthropic_error(info.value, 404, "not_found_error")


@pytest.mark.parametrize("model", ALL_MODELS)
def test_anthropic_missing_max_tokens_is_bad_request(
    claude_sdk: anthropic.Anthropic,
    model: str,
) -> None:
    # `messages.create` refuses to send without max_tokens, so post the raw body through
    # the same SDK client (its error mapping included).
    with pytest.raises(anthropic.BadRequestError) as info:
        claude_sdk.post(
            "/v1/messages",
            body={"model": model, "messages": [{"role": "user", "content": USER}]},
            cast_to=anthropic.types.Message,
        )
    message = _check_anthropic_error(info.value, 400, "invalid_request_error")
    assert "max_tokens" in message, message


@pytest.mark.parametrize(
    "messages",
    [[], [{"role": "bot", "content": "hi"}], "hi"],
    ids=["empty", "bad-role", "not-a-list"],
)
def test_anthropic_malformed_messages_is_bad_request(
    claude_sdk: anthropic.Anthropic,
    messages: Any,
) -> None:
    with pytest.raises(anthropic.BadRequestError) as info:
        claude_sdk.messages.create(model="gpt", max_tokens=MAX_TOKENS, messages=messages)
    message = _check_anthropic_error(info.value, 400, "invalid_request_error")
    assert "messages" in message, message


@pytest.mark.parametrize("model", ALL_MODELS)
def test_anthropic_message_envelope(claude_sdk: anthropic.Anthropic, model: str) -> None:
    """Every Message has an id and names its model, streamed or not."""
    message = claude_sdk.messages.create(model=model, **TEXT_PARAMS)
    assert message.id, f"{model}: Message.id is empty: {message!r}"
    assert message.model, f"{model}: Message.model is empty: {message!r}"
    result = anthropic_stream(claude_sdk, model=model, **TEXT_PARAMS)
    start = result.events[0]
    assert start.type == "message_start"
    assert start.message.id, f"{model}: message_start has an empty id: {start!r}"
    assert start.message.model, f"{model}: message_start has an empty model: {start!r}"


def test_anthropic_stream_message_start_keeps_upstream_input_usage(
    claude_sdk: anthropic.Anthropic,
) -> None:
    """An Anthropic upstream reports the input tokens in `message_start` (clients read the
    context size there, and the cache-write TTL breakdown only exists there); the gateway
    must pass them on, not zero them."""
    result = anthropic_stream(claude_sdk, model="claude", **TEXT_PARAMS)
    start = result.events[0]
    assert start.type == "message_start"
    assert start.message.usage.input_tokens == PROMPT_TOKENS, start.message.usage


# =========================================================================== openai SDK


def _check_openai_text_usage(usage: Any) -> None:
    counts = openai_usage_counts(usage)
    assert counts["prompt_tokens"] == PROMPT_TOKENS, usage
    assert counts["completion_tokens"] == COMPLETION_TOKENS, usage
    assert counts["total_tokens"] == PROMPT_TOKENS + COMPLETION_TOKENS, usage
    assert counts["cost"] == pytest.approx(expected_cost(PROMPT_TOKENS, COMPLETION_TOKENS), rel=1e-6)


def _usage_chunk_report(result: Any) -> str:
    """Where the usage chunks are in the stream, and what they say."""
    return "; ".join(
        f"chunk {i}/{len(result.chunks) - 1}: prompt={c.usage.prompt_tokens} "
        f"completion={c.usage.completion_tokens} choices={len(c.choices)}"
        for i, c in enumerate(result.chunks)
        if c.usage is not None
    )


@pytest.mark.parametrize("model", NOT_OPENAI)
def test_openai_chat(openai_sdk: openai.OpenAI, mock_provider: MockProvider, model: str) -> None:
    completion = openai_sdk.chat.completions.create(model=model, messages=OPENAI_TEXT_MESSAGES)
    assert_upstream_path(mock_provider.url, model, streamed=False)
    assert completion.object == "chat.completion"
    assert len(completion.choices) == 1
    choice = completion.choices[0]
    assert choice.index == 0
    assert choice.message.role == "assistant"
    assert choice.message.content == REPLY
    assert not choice.message.tool_calls
    assert choice.finish_reason == "stop"
    _check_openai_text_usage(completion.usage)


@pytest.mark.parametrize("model", NOT_OPENAI)
def test_openai_stream_with_usage(
    openai_sdk: openai.OpenAI,
    mock_provider: MockProvider,
    model: str,
) -> None:
    result = openai_stream(
        openai_sdk,
        model=model,
        messages=OPENAI_TEXT_MESSAGES,
        stream_options={"include_usage": True},
    )
    assert_upstream_path(mock_provider.url, model, streamed=True)
    assert all(c.object == "chat.completion.chunk" for c in result.chunks)
    assert len({c.id for c in result.chunks}) == 1, "chunks of one stream carry different ids"
    assert result.roles == ["assistant"], result.roles
    assert result.text == REPLY
    assert result.finish_reasons == ["stop"]
    assert not result.tool_calls
    text_chunks = [c for c in result.chunks if c.choices and c.choices[0].delta.content]
    assert len(text_chunks) > 1, "the answer was not streamed in pieces"
    # OpenAI's include_usage contract: one usage chunk, the last, with no choices.
    assert len(result.usage_chunks) == 1, _usage_chunk_report(result)
    last = result.chunks[-1]
    assert last.usage is not None and last.choices == [], last
    _check_openai_text_usage(last.usage)
    buffered = openai_sdk.chat.completions.create(model=model, messages=OPENAI_TEXT_MESSAGES)
    assert openai_usage_counts(last.usage) == openai_usage_counts(buffered.usage)


@pytest.mark.parametrize("model", NOT_OPENAI)
def test_openai_stream_without_usage(openai_sdk: openai.OpenAI, model: str) -> None:
    result = openai_stream(openai_sdk, model=model, messages=OPENAI_TEXT_MESSAGES)
    assert result.text == REPLY
    assert result.finish_reasons == ["stop"]
    assert not result.usage_chunks, "usage sent without stream_options.include_usage"


@pytest.mark.parametrize("model", NOT_OPENAI)
def test_openai_tool_call(
    openai_sdk: openai.OpenAI,
    mock_provider: MockProvider,
    model: str,
) -> None:
    completion = openai_sdk.chat.completions.create(
        model=model, messages=OPENAI_TOOL_MESSAGES, tools=[OPENAI_TOOL]
    )
    assert_upstream_path(mock_provider.url, model, streamed=False)
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert not choice.message.content, choice.message
    calls = choice.message.tool_calls
    assert calls and len(calls) == 1, calls
    call = calls[0]
    assert call.id and call.type == "function", call
    assert call.function.name == TOOL_NAME
    assert json.loads(call.function.arguments) == {"input": TOOL_QUESTION}
    counts = openai_usage_counts(completion.usage)
    assert counts["prompt_tokens"] == TOOL_PROMPT_TOKENS, completion.usage
    assert counts["completion_tokens"] > 0
    assert counts["cost"] == pytest.approx(
        expected_cost(counts["prompt_tokens"], counts["completion_tokens"]), rel=1e-6
    )


@pytest.mark.parametrize("model", NOT_OPENAI)
def test_openai_tool_call_streamed(
    openai_sdk: openai.OpenAI,
    mock_provider: MockProvider,
    model: str,
) -> None:
    result = openai_stream(
        openai_sdk,
        model=model,
        messages=OPENAI_TOOL_MESSAGES,
        tools=[OPENAI_TOOL],
        stream_options={"include_usage": True},
    )
    assert_upstream_path(mock_provider.url, model, streamed=True)
    assert result.finish_reasons == ["tool_calls"]
    assert result.text == ""
    assert list(result.tool_calls) == [0], result.tool_calls
    call = result.tool_calls[0]
    # The id and name come once, in the first delta of the call; the arguments in fragments.
    assert len(call["ids"]) == 1 and call["ids"][0], call
    assert call["type"] == "function", call
    assert call["name"] == TOOL_NAME, call
    assert json.loads(call["arguments"]) == {"input": TOOL_QUESTION}, call
    assert len(result.usage_chunks) == 1, _usage_chunk_report(result)
    usage = result.usage_chunks[-1].usage
    assert usage.prompt_tokens == TOOL_PROMPT_TOKENS, usage
    buffered = openai_sdk.chat.completions.create(
        model=model, messages=OPENAI_TOOL_MESSAGES, tools=[OPENAI_TOOL]
    )
    assert openai_usage_counts(usage) == openai_usage_counts(buffered.usage)
    buffered_args = json.loads(buffered.choices[0].message.tool_calls[0].function.arguments)
    assert json.loads(call["arguments"]) == buffered_args


@pytest.mark.parametrize("model", NOT_OPENAI)
@pytest.mark.parametrize("streamed", [False, True], ids=["buffered", "streamed"])
def test_openai_tool_result_round_trip(
    openai_sdk: openai.OpenAI,
    model: str,
    streamed: bool,
) -> None:
    params = {"model": model, "messages": openai_round_trip_messages(), "tools": [OPENAI_TOOL]}
    if streamed:
        result = openai_stream(openai_sdk, **params)
        assert result.text == TOOL_REPLY
        assert result.finish_reasons == ["stop"]
    else:
        completion = openai_sdk.chat.completions.create(**params)
        assert completion.choices[0].message.content == TOOL_REPLY
        assert completion.choices[0].finish_reason == "stop"


@pytest.mark.parametrize("model", NOT_OPENAI)
def test_openai_completion_envelope(openai_sdk: openai.OpenAI, model: str) -> None:
    """`id`, `model` and `created` (a Unix time) are filled in, streamed or not."""
    completion = openai_sdk.chat.completions.create(model=model, messages=OPENAI_TEXT_MESSAGES)
    problems = []
    if not completion.id:
        problems.append(f"id={completion.id!r}")
    if completion.model != UPSTREAMS[model].upstream_model:
        problems.append(f"model={completion.model!r}")
    if not plausible_created(completion.created):
        problems.append(f"created={completion.created!r}")
    result = openai_stream(openai_sdk, model=model, messages=OPENAI_TEXT_MESSAGES)
    first = result.chunks[0]
    if not first.id:
        problems.append(f"chunk id={first.id!r}")
    if first.model != UPSTREAMS[model].upstream_model:
        problems.append(f"chunk model={first.model!r}")
    if not plausible_created(first.created):
        problems.append(f"chunk created={first.created!r}")
    assert not problems, f"{model}: " + ", ".join(problems)


# =========================================================================== usage agreement


@pytest.mark.parametrize("model", ALL_MODELS)
@pytest.mark.parametrize("case", ["text", "tools"])
def test_openai_usage_streamed_equals_buffered(
    openai_sdk: openai.OpenAI,
    model: str,
    case: str,
) -> None:
    params: dict[str, Any] = (
        {"messages": OPENAI_TEXT_MESSAGES}
        if case == "text"
        else {"messages": OPENAI_TOOL_MESSAGES, "tools": [OPENAI_TOOL]}
    )
    buffered = openai_sdk.chat.completions.create(model=model, **params)
    result = openai_stream(openai_sdk, model=model, stream_options={"include_usage": True}, **params)
    assert result.usage_chunks, "no usage chunk"
    final = result.chunks[-1]
    assert final.usage is not None, "the last chunk carries no usage"
    assert openai_usage_counts(final.usage) == openai_usage_counts(buffered.usage)
    expected_prompt = PROMPT_TOKENS if case == "text" else TOOL_PROMPT_TOKENS
    assert final.usage.prompt_tokens == expected_prompt


CACHED_PARAMS: dict[str, Any] = {
    "max_tokens": MAX_TOKENS,
    # Two cache breakpoints: the mock reports the prompt up to the first as read from the
    # cache, from there to the second as written to it (5-minute TTL), the rest as input.
    "system": [
        {
            "type": "text",
            "text": "You are a terse assistant who answers briefly.",
            "cache_control": {"type": "ephemeral"},
        }
    ],
    "messages": [
        {
            "role": "user",
            "content": [
                {
                    "type": "text",
                    "text": "Here is a long document about cats",
                    "cache_control": {"type": "ephemeral"},
                }
            ],
        },
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": USER},
    ],
}


@pytest.mark.parametrize(
    "model,case",
    [(m, c) for m in ALL_MODELS for c in ("text", "tools")] + [("claude", "cached")],
)
def test_anthropic_usage_streamed_equals_buffered(
    claude_sdk: anthropic.Anthropic,
    model: str,
    case: str,
) -> None:
    params = {"text": TEXT_PARAMS, "tools": TOOL_PARAMS, "cached": CACHED_PARAMS}[case]
    buffered = claude_sdk.messages.create(model=model, **params)
    result = anthropic_stream(claude_sdk, model=model, **params)
    buffered_counts = anthropic_usage_counts(buffered.usage)
    assert anthropic_usage_counts(result.final.usage) == buffered_counts
    # The last message_delta carries the final cumulative counts.
    delta = [e for e in result.events if e.type == "message_delta"][-1]
    assert delta.usage.output_tokens == buffered_counts["output_tokens"]
    if case == "cached":
        assert buffered_counts["cache_read_input_tokens"] > 0, buffered.usage
        assert buffered_counts["cache_creation_input_tokens"] > 0, buffered.usage
