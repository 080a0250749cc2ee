use super::*;

fn env(name: &str) -> Option<String> {
    match name {
        "OPENAI_API_KEY" => Some("sk-test-1234567890".into()),
        _ => None,
    }
}

fn ok(text: &str) -> Config {
    match parse(text, "t.yaml", &env) {
        Ok(c) => c,
        Err(e) => panic!("expected valid config, got:\n{e}"),
    }
}

fn problems(text: &str) -> Error {
    match parse(text, "t.yaml", &env) {
        Ok(_) => panic!("expected an invalid config"),
        Err(e) => e,
    }
}

const BASE: &str = "
providers:
  openai: { type: openai, api_key: ${OPENAI_API_KEY} }
  local: { type: openai-compatible, base_url: http://127.0.0.1:8000/v1/ }
models:
  chat:
    targets:
      - { provider: openai, model: gpt-4o-mini, weight: 3 }
      - { provider: local, model: llama, weight: 1 }
    retries: 2
    timeout: 60s
    price: { input: 0.15, output: 0.60, cache_read: 0.075 }
";

#[test]
fn a_valid_file_gets_defaults_and_resolved_references() {
    let c = ok(BASE);
    assert_eq!(c.listen, "127.0.0.1:4000");
    assert_eq!(c.auth, Auth::Keys);
    assert_eq!(c.server.max_body_bytes, 10 * 1024 * 1024);
    let chat = c.model("chat").unwrap();
    let v = &chat.versions["default"];
    assert_eq!(chat.stable, "default");
    assert_eq!(v.targets.len(), 2);
    assert_eq!(v.targets[0].weight, 3);
    assert_eq!(v.retries, 2);
    assert_eq!(v.timeout, Duration::from_secs(60));
    assert_eq!(v.price.unwrap().cache_read, 0.075);
    assert_eq!(v.price.unwrap().cache_write, 0.15);
    assert_eq!(c.providers["local"].base_url, "http://127.0.0.1:8000/v1");
    assert_eq!(c.providers["openai"].base_url, "https://api.openai.com/v1");
}

#[test]
fn secrets_never_show_in_debug_output() {
    let c = ok(BASE);
    let dump = format!("{c:?}");
    assert!(!dump.contains("sk-test-1234567890"), "{dump}");
}

#[test]
fn unknown_key_names_path_line_and_suggestion() {
    let e = problems(
        "models:\n  chat:\n    targets: [{ provider: p, model: m }]\n    routng: latency\n",
    );
    assert_eq!(e.problems.len(), 1);
    let p = &e.problems[0];
    assert_eq!(p.line, Some(4), "{e}");
    assert!(p.path.starts_with("models.chat"), "{e}");
    assert!(p.message.contains("routng"), "{e}");
    assert!(p.message.contains("did you mean `routing`"), "{e}");
}

#[test]
fn unknown_provider_and_fallback_references_are_all_reported() {
    let e = problems(
        "providers:\n  openai: { type: openai, api_key: x }\nmodels:\n  a:\n    targets:\n      - { provider: opnai, model: m }\n    fallbacks: [bee]\n  b:\n    targets: [{ provider: openai, model: m }]\n",
    );
    let text = e.to_string();
    assert_eq!(e.problems.len(), 2, "{text}");
    assert!(text.contains("t.yaml:6: models.a.targets[0].provider: unknown provider 'opnai' (did you mean 'openai'?)"), "{text}");
    assert!(
        text.contains("t.yaml:7: models.a.fallbacks[0]: unknown model 'bee'"),
        "{text}"
    );
}

#[test]
fn bad_values_are_reported_with_lines() {
    let e =
        problems("server:\n  max_body_bytes: 10 parsecs\n  request_timeout: soon\nauth: maybe\n");
    let text = e.to_string();
    assert_eq!(e.problems.len(), 3, "{text}");
    assert!(text.contains("t.yaml:2: server.max_body_bytes"), "{text}");
    assert!(text.contains("t.yaml:3: server.request_timeout"), "{text}");
    assert!(text.contains("t.yaml:4: auth"), "{text}");
}

#[test]
fn wrong_types_are_reported() {
    let e =
        problems("models:\n  chat:\n    targets: [{ provider: p, model: m }]\n    retries: many\n");
    assert_eq!(e.problems[0].line, Some(4), "{e}");
    assert!(e.problems[0].path.contains("retries"), "{e}");
}

#[test]
fn env_interpolation_errors_name_the_variable() {
    let e = problems("admin_key: ${NOT_SET_ANYWHERE}\n");
    assert_eq!(e.problems[0].line, Some(1));
    assert!(e.to_string().contains("NOT_SET_ANYWHERE"));
    let c = ok("admin_key: ${NOT_SET_ANYWHERE:-fallback-admin}\n");
    assert_eq!(c.admin_key.unwrap().expose(), "fallback-admin");
}

#[test]
fn versions_and_rollout_references_are_checked() {
    let c = ok("providers:\n  p: { type: mock }\nmodels:\n  s:\n    versions:\n      v1: { targets: [{ provider: p, model: a }] }\n      v2: { targets: [{ provider: p, model: b }] }\n    rollout: { stable: v1 }\n");
    assert_eq!(c.model("s").unwrap().stable, "v1");
    let e = problems("providers:\n  p: { type: mock }\nmodels:\n  s:\n    versions:\n      v1: { targets: [{ provider: p, model: a }] }\n    rollout: { stable: v9 }\n");
    assert!(e.to_string().contains("unknown version 'v9'"), "{e}");
}

#[test]
fn azure_needs_its_api_version() {
    let e = problems(
        "providers:\n  az: { type: azure, base_url: https://x.openai.azure.com, api_key: k }\n",
    );
    assert!(e.to_string().contains("api_version"), "{e}");
}

#[test]
fn presets_need_only_a_key() {
    let c = ok("providers:\n  g: { type: groq, api_key: k }\n");
    assert_eq!(c.providers["g"].base_url, "https://api.groq.com/openai/v1");
}

#[test]
fn providers_from_env_registers_keyed_presets() {
    let c = ok("providers_from_env: true\n");
    assert!(c.providers.contains_key("openai"));
    assert!(!c.providers.contains_key("groq"));
    assert!(c.direct("openai/gpt-4o").is_some());
}

#[test]
fn the_quickstart_example_is_valid() {
    let text = include_str!("../../../../examples/quickstart.yaml");
    let c = ok(text);
    assert_eq!(c.auth, Auth::None);
    assert!(c.model("demo-chat").is_some());
}

#[test]
fn settings_not_enforced_yet_are_refused_not_ignored() {
    let e = problems("keys:\n  - { name: a, secret: sk-sy-0123456789abcdef, team: research }\n");
    assert!(
        e.to_string()
            .contains("keys[0].team: this setting is not supported"),
        "{e}"
    );
}

#[test]
fn config_keys_carry_limits_and_expiry() {
    let c = ok("keys:\n  - { name: a, secret: sk-sy-0123456789abcdef, rpm: 60, budget: 5, budget_period: 1d, expires_at: 2030-01-01 }\n");
    assert_eq!(c.keys[0].limits.rpm, Some(60));
    assert_eq!(c.keys[0].limits.budget.map(|b| b.usd), Some(5.0));
    assert_eq!(c.keys[0].expires_at, Some(1_893_456_000_000));
    assert!(problems(
        "keys:\n  - { name: a, secret: sk-sy-0123456789abcdef, budget_period: 1d }\n"
    )
    .to_string()
    .contains("budget_period needs a budget"));
}

#[test]
fn otlp_endpoint_is_accepted_with_headers_and_service_name() {
    let c = ok("telemetry:\n  otlp_endpoint: http://127.0.0.1:4318/\n  otlp_headers: { authorization: Bearer otlp-token-123 }\n");
    let o = c.telemetry.otlp.as_ref().unwrap();
    assert_eq!(o.endpoint, "http://127.0.0.1:4318");
    assert_eq!(o.traces_url.to_string(), "http://127.0.0.1:4318/v1/traces");
    assert_eq!(o.service_name, "switchyard");
    assert_eq!(o.headers[0].0, "authorization");
    assert!(o.headers[0].1.is_sensitive());
    assert!(!format!("{c:?}").contains("otlp-token-123"));
    // A full traces URL is used as is; https goes through the same client as providers.
    let c = ok("telemetry: { otlp_endpoint: \"https://otel.example.com/v1/traces\", service_name: gw-eu }\n");
    let o = c.telemetry.otlp.as_ref().unwrap();
    assert_eq!(
        o.traces_url.to_string(),
        "https://otel.example.com/v1/traces"
    );
    assert_eq!(o.service_name, "gw-eu");
    assert!(ok(BASE).telemetry.otlp.is_none());
}

#[test]
fn a_bad_otlp_endpoint_is_reported_clearly() {
    let e = problems("telemetry:\n  log_format: json\n  otlp_endpoint: collector:4318\n");
    assert_eq!(e.problems.len(), 1, "{e}");
    assert!(
        e.to_string().contains(
            "t.yaml:3: telemetry.otlp_endpoint: 'collector:4318' must be an http:// or https:// URL"
        ),
        "{e}"
    );
    let e = problems("telemetry:\n  otlp_endpoint: \"http://bad host:4318\"\n");
    assert!(
        e.to_string().contains(
            "t.yaml:2: telemetry.otlp_endpoint: 'http://bad host:4318' is not a valid URL"
        ),
        "{e}"
    );
    let e = problems("telemetry:\n  otlp_headers: { x-tenant: a }\n");
    assert!(
        e.to_string()
            .contains("telemetry.otlp_headers: otlp_headers needs otlp_endpoint"),
        "{e}"
    );
    let e = problems("telemetry:\n  otlp_endpont: http://127.0.0.1:4318\n");
    assert!(
        e.to_string().contains("did you mean `otlp_endpoint`"),
        "{e}"
    );
}

#[test]
fn each_target_price_is_resolved_when_the_configuration_is_built() {
    let c = ok("
providers:
  openai: { type: openai, api_key: ${OPENAI_API_KEY} }
  local: { type: openai-compatible, base_url: http://127.0.0.1:8000/v1 }
providers_from_env: true
models:
  chat:
    targets:
      - { provider: openai, model: gpt-4o-mini, price: { input: 9, output: 9 } }
      - { provider: openai, model: gpt-4o-mini-2024-07-18 }
      - { provider: local, model: gpt-4o-mini }
  versioned:
    versions:
      v1: { targets: [{ provider: openai, model: gpt-4o }], price: { input: 1, output: 2 } }
      v2: { targets: [{ provider: openai, model: gpt-4o }] }
    price: { input: 3, output: 4 }
    rollout: { stable: v1 }
");
    let targets = &c.model("chat").unwrap().versions["default"].targets;
    let got: Vec<_> = targets
        .iter()
        .map(|t| (t.price.map(|p| (p.input, p.output)), t.price_source))
        .collect();
    assert_eq!(
        got,
        vec![
            (Some((9.0, 9.0)), PriceSource::Target),
            (Some((0.15, 0.60)), PriceSource::Catalogue),
            (None, PriceSource::None),
        ]
    );
    // A version's own price, else the model's, wins over the catalogue.
    let v = &c.model("versioned").unwrap().versions;
    let price = |name: &str| {
        let t = &v[name].targets[0];
        (t.price.map(|p| (p.input, p.output)), t.price_source)
    };
    assert_eq!(price("v1"), (Some((1.0, 2.0)), PriceSource::Version));
    assert_eq!(price("v2"), (Some((3.0, 4.0)), PriceSource::Version));
    // `provider/model` direct routes: the catalogue too, worked out once and remembered.
    let openai = c.providers["openai"].clone();
    let first = c.direct_target(&openai, "gpt-4.1-mini");
    assert_eq!(first.price_source, PriceSource::Catalogue);
    assert_eq!(first.price.map(|p| p.output), Some(1.60));
    let again = c.direct_target(&openai, "gpt-4.1-mini");
    assert!(Arc::ptr_eq(&first.stats, &again.stats));
    assert_eq!(c.direct_target(&openai, "my-fine-tune").price, None);
}

/// The names a request's record and metrics repeat are borrowed from one copy kept for the
/// process: building the same configuration again (a reload) reuses it rather than keeping
/// another, and nothing about them is allocated per request.
#[test]
fn configuration_names_are_kept_once_and_borrowed() {
    let names = |c: &Config| {
        let chat = c.model("chat").unwrap();
        let v = chat.versions["default"].clone();
        let t = &v.targets[0];
        [
            chat.name.clone(),
            v.name.clone(),
            t.provider.name.clone(),
            t.model.clone(),
        ]
    };
    let (first, again) = (names(&ok(BASE)), names(&ok(BASE)));
    assert_eq!(
        first.iter().map(|n| &**n).collect::<Vec<_>>(),
        ["chat", "default", "openai", "gpt-4o-mini"]
    );
    for (a, b) in first.iter().zip(&again) {
        assert!(
            matches!((a, b), (Name::Borrowed(x), Name::Borrowed(y)) if std::ptr::eq(*x, *y)),
            "{a} is not kept once: {:p} vs {:p}",
            a.as_ptr(),
            b.as_ptr()
        );
    }
}
