//! The pass-through hot path `providers::openai::peek`: `request` for each endpoint, the byte-level
//! `rewrite` of an accepted body, `usage` + `add_member`, and `error_message`.
//!
//! A rewritten body must still be accepted, with the new model, `include_usage` forced on when
//! asked, the gateway-only `models`/`provider` members gone and everything else as it was; a
//! body that `needs_rewrite` says is fine must come back byte for byte. Adding `cost` to a usage
//! object must leave valid JSON with the same usage.
#![no_main]

use libfuzzer_sys::fuzz_target;
use providers::openai::peek::{self, Endpoint};

fuzz_target!(|body: &[u8]| {
    for endpoint in [Endpoint::Chat, Endpoint::Completions, Endpoint::Embeddings] {
        let Ok(req) = peek::request(body, endpoint) else {
            continue;
        };
        let original = req.model.to_string();
        for (model, want_usage) in [
            (original.as_str(), false),
            (original.as_str(), true),
            ("fuzz/model \"x\"", true),
            ("m", false),
        ] {
            let out = req.rewrite(body, model, want_usage);
            if !req.needs_rewrite(model, want_usage) {
                assert_eq!(out, body, "a body needing no rewrite was changed");
            }
            let again = match peek::request(&out, endpoint) {
                Ok(again) => again,
                Err(e) => panic!(
                    "rewrite({model:?}, {want_usage}) made an invalid body: {}\nbefore: {}\nafter:  {}",
                    e.message,
                    String::from_utf8_lossy(body),
                    String::from_utf8_lossy(&out)
                ),
            };
            assert_eq!(again.model, model, "rewrite did not set the model");
            assert_eq!(again.stream, req.stream);
            assert_eq!(again.n, req.n);
            assert_eq!(again.user, req.user);
            assert_eq!(again.has_tools, req.has_tools);
            assert_eq!(again.has_response_format, req.has_response_format);
            assert_eq!(again.json_schema, req.json_schema);
            if req.stream && want_usage {
                assert!(again.include_usage, "rewrite did not turn include_usage on");
            } else {
                assert_eq!(again.include_usage, req.include_usage);
            }
            assert!(again.models.is_empty(), "rewrite left `models` in: {}", String::from_utf8_lossy(&out));
            assert!(again.provider.is_none(), "rewrite left `provider` in: {}", String::from_utf8_lossy(&out));
        }
    }

    if let Ok(Some((usage, span))) = peek::usage(body) {
        assert!(span.end <= body.len() && span.start < span.end, "usage span out of the body");
        let _ = (usage.cached_tokens(), usage.reasoning_tokens());
        let out = peek::add_member(body, span, "cost", b"0.5");
        // `usage` skips the members it does not read without checking their strings are UTF-8,
        // so only a body that is wholly valid JSON must stay so.
        let valid = serde_json::from_slice::<serde_json::Value>(body).is_ok();
        assert!(
            !valid || serde_json::from_slice::<serde_json::Value>(&out).is_ok(),
            "add_member made invalid JSON: {}",
            String::from_utf8_lossy(&out)
        );
        match peek::usage(&out) {
            Ok(Some((again, _))) => assert_eq!(again, usage, "add_member changed the usage"),
            other => panic!("usage lost by add_member: {other:?}"),
        }
    }
    let _ = peek::error_message(body);
});
