//! Which model, version and targets serve a request: resolving the requested name (with
//! `@version` or `x-switchyard-version`, and `provider/model` direct routes), and the order in
//! which a version's targets are tried.
//!
//! Pure decisions over the configuration; no IO.

use std::sync::Arc;

use std::sync::atomic::Ordering::Relaxed;

use http::HeaderValue;

use crate::config::{Config, Model, Strategy, Target, Version};
use crate::error::{Error, Kind};

/// The version chosen for a request.
pub struct Route {
    /// The public model name (without `@version`).
    pub model: String,
    pub model_header: HeaderValue,
    pub version: Arc<Version>,
}

/// Step 3 of the pipeline: requested name → model → version.
pub fn resolve(config: &Config, requested: &str, pinned: Option<&str>) -> Result<Route, Error> {
    let (name, at_version) = match requested.rsplit_once('@') {
        Some((n, v)) if !n.is_empty() && !v.is_empty() => (n, Some(v)),
        _ => (requested, None),
    };
    let pinned = at_version.or(pinned.filter(|v| !v.is_empty()));
    if let Some(model) = config.model(name) {
        let version = pick_version(&model, pinned)?;
        return Ok(Route {
            model: model.name.clone(),
            model_header: model.name_header.clone(),
            version,
        });
    }
    if let Some((provider, upstream)) = config.direct(name) {
        let version = Version {
            name: "default".into(),
            name_header: HeaderValue::from_static("default"),
            targets: vec![Target {
                provider: provider.clone(),
                model: upstream.to_string(),
                model_header: crate::config::header_value(upstream),
                weight: 1,
                price: None,
                stats: Default::default(),
            }],
            routing: Strategy::Weighted,
            retries: 1,
            timeout: config.server.request_timeout,
            fallbacks: Vec::new(),
            price: None,
            cursor: Default::default(),
        };
        return Ok(Route {
            model: name.to_string(),
            model_header: crate::config::header_value(name),
            version: Arc::new(version),
        });
    }
    let hint = crate::config::closest(name, config.models.keys().map(String::as_str))
        .map(|c| format!(" Did you mean '{c}'?"))
        .unwrap_or_default();
    Err(Error::new(
        Kind::NotFound,
        format!("The model '{name}' does not exist or is not served by this gateway.{hint}"),
    ))
}

fn pick_version(model: &Model, pinned: Option<&str>) -> Result<Arc<Version>, Error> {
    let name = pinned.unwrap_or(&model.stable);
    model.versions.get(name).cloned().ok_or_else(|| {
        Error::new(
            Kind::NotFound,
            format!("The model '{}' has no version '{name}'.", model.name),
        )
    })
}

/// The order in which this version's targets are tried: the first is the strategy's choice,
/// the rest are the failover order.
pub fn order(version: &Version) -> Vec<usize> {
    let n = version.targets.len();
    let mut idx: Vec<usize> = (0..n).collect();
    if n <= 1 {
        return idx;
    }
    match version.routing {
        Strategy::RoundRobin => {
            let start = version
                .cursor
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                % n;
            idx.rotate_left(start);
        }
        Strategy::Cost => {
            // Cheapest first (input + output price); ties keep the weighted order.
            weighted_shuffle(&version.targets, &mut idx);
            let price = |i: &usize| {
                let p = version.targets[*i]
                    .price
                    .or(version.price)
                    .unwrap_or_default();
                p.input + p.output
            };
            idx.sort_by(|a, b| price(a).total_cmp(&price(b)));
        }
        Strategy::Weighted => weighted_shuffle(&version.targets, &mut idx),
        Strategy::LeastBusy => {
            // Fewest in flight first; ties broken at random.
            fastrand::shuffle(&mut idx);
            idx.sort_by_key(|&i| version.targets[i].stats.in_flight.load(Relaxed));
        }
        Strategy::Latency => {
            // Power of two choices on the latency average; untried targets count as fastest.
            let a = fastrand::usize(0..n);
            let b = (a + 1 + fastrand::usize(0..n - 1)) % n;
            let ewma = |i: usize| version.targets[i].stats.ewma_us.load(Relaxed);
            let best = if ewma(b) < ewma(a) { b } else { a };
            weighted_shuffle(&version.targets, &mut idx);
            if let Some(pos) = idx.iter().position(|&i| i == best) {
                idx[..=pos].rotate_right(1);
            }
        }
    }
    idx
}

/// A weighted random permutation: each position drawn by weight among the targets left.
/// Targets of weight 0 come last, in their configured order (failover only).
fn weighted_shuffle(targets: &[Target], idx: &mut [usize]) {
    let mut total: u64 = idx.iter().map(|&i| u64::from(targets[i].weight)).sum();
    for pos in 0..idx.len() {
        if total == 0 {
            break;
        }
        let mut r = fastrand::u64(0..total);
        let mut chosen = pos;
        for (k, &i) in idx.iter().enumerate().skip(pos) {
            let w = u64::from(targets[i].weight);
            if r < w {
                chosen = k;
                break;
            }
            r -= w;
        }
        idx.swap(pos, chosen);
        total -= u64::from(targets[idx[pos]].weight);
    }
}

#[cfg(test)]
mod tests;
