use super::*;
use crate::config;

/// The strategy's order over all targets of a resolved route.
fn order_of(r: &Route) -> Vec<usize> {
    plan(r, &Needs::default(), None).unwrap()
}

fn cfg(text: &str) -> Config {
    config::parse(text, "t.yaml", &|_| None).unwrap()
}

const TEXT: &str = "
providers:
  a: { type: mock }
  b: { type: mock }
models:
  w:
    targets: [{ provider: a, model: x, weight: 3 }, { provider: b, model: y, weight: 1 }]
  rr:
    routing: round-robin
    targets: [{ provider: a, model: x }, { provider: b, model: y }]
  cheap:
    routing: cost
    targets:
      - { provider: a, model: x, price: { input: 5, output: 5 } }
      - { provider: b, model: y, price: { input: 1, output: 1 } }
  zero:
    targets: [{ provider: a, model: x, weight: 0 }, { provider: b, model: y, weight: 1 }]
  s:
    versions:
      v1: { targets: [{ provider: a, model: x }] }
      v2: { targets: [{ provider: b, model: y }] }
    rollout: { stable: v1 }
";

#[test]
fn weighted_order_follows_weights() {
    let c = cfg(TEXT);
    let r = resolve(&c, "w", None).unwrap();
    let n = 4000;
    let firsts = (0..n).filter(|_| order_of(&r)[0] == 0).count();
    let share = firsts as f64 / n as f64;
    // Expected 0.75; the binomial standard deviation is under 0.007, so this bound is > 5 sigma.
    assert!(
        (0.71..0.79).contains(&share),
        "share of the weight-3 target: {share}"
    );
    // Every order is a permutation.
    let mut o = order_of(&r);
    o.sort_unstable();
    assert_eq!(o, vec![0, 1]);
}

#[test]
fn weight_zero_targets_are_failover_only() {
    let c = cfg(TEXT);
    let r = resolve(&c, "zero", None).unwrap();
    for _ in 0..200 {
        assert_eq!(order_of(&r), vec![1, 0]);
    }
}

#[test]
fn round_robin_rotates() {
    let c = cfg(TEXT);
    let r = resolve(&c, "rr", None).unwrap();
    let firsts: Vec<usize> = (0..4).map(|_| order_of(&r)[0]).collect();
    assert_eq!(firsts, vec![0, 1, 0, 1]);
}

#[test]
fn cost_puts_the_cheapest_first() {
    let c = cfg(TEXT);
    let r = resolve(&c, "cheap", None).unwrap();
    for _ in 0..50 {
        assert_eq!(order_of(&r), vec![1, 0]);
    }
}

#[test]
fn versions_are_pinned_by_suffix_or_header() {
    let c = cfg(TEXT);
    assert_eq!(resolve(&c, "s", None).unwrap().version.name, "v1");
    assert_eq!(resolve(&c, "s@v2", None).unwrap().version.name, "v2");
    assert_eq!(resolve(&c, "s", Some("v2")).unwrap().version.name, "v2");
    assert_eq!(resolve(&c, "s@v2", None).unwrap().model, "s");
    let e = resolve(&c, "s@v9", None).err().unwrap();
    assert_eq!(e.kind, Kind::NotFound);
}

#[test]
fn unknown_models_are_404_with_a_hint() {
    let c = cfg(TEXT);
    let e = resolve(&c, "rrr", None).err().unwrap();
    assert_eq!(e.kind, Kind::NotFound);
    assert!(e.message.contains("Did you mean 'rr'?"), "{}", e.message);
    // Direct routes are off unless asked for.
    assert!(resolve(&c, "a/whatever", None).is_err());
}

#[test]
fn direct_routes_reach_a_provider_by_name() {
    let c = cfg("providers_from_env: true\nproviders:\n  local: { type: mock }\n");
    let r = resolve(&c, "local/llama3", None).unwrap();
    assert_eq!(r.version.targets[0].model, "llama3");
    assert_eq!(r.model, "local/llama3");
}
