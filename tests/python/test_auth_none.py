"""`auth: none` (dev mode): /v1 answers without a virtual key."""

from __future__ import annotations

import openai

from conftest import Gateway

GATEWAY_CONFIG = """\
listen: 127.0.0.1:0
auth: none
admin_key: test-admin-key
providers:
  up:   { type: openai, base_url: $mock_url/v1, api_key: sk-upstream-secret }
  demo: { type: mock }
models:
  chat:      { targets: [{ provider: up, model: gpt-4o-mini }] }
  demo-chat: { targets: [{ provider: demo, model: echo }] }
"""


def test_no_key_needed(gateway: Gateway) -> None:
    with gateway.http(api_key=None) as http:
        resp = http.post(
            "/v1/chat/completions",
            json={"model": "chat", "messages": [{"role": "user", "content": "hi there"}]},
        )
        assert resp.status_code == 200, resp.text
        assert resp.json()["choices"][0]["message"]["content"] == "echo: hi there"
        models = http.get("/v1/models")
        assert models.status_code == 200, models.text
        assert {"chat", "demo-chat"} <= {m["id"] for m in models.json()["data"]}


def test_sdk_with_any_key(gateway: Gateway) -> None:
    client = gateway.openai(api_key="anything")
    completion = client.chat.completions.create(
        model="demo-chat", messages=[{"role": "user", "content": "ping pong"}]
    )
    assert completion.choices[0].message.content == "echo: ping pong"


def test_unknown_model_is_404(gateway: Gateway) -> None:
    client = gateway.openai(api_key="anything")
    try:
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    except openai.NotFoundError as exc:
        assert exc.status_code == 404
    else:
        raise AssertionError("unknown model answered 200")
