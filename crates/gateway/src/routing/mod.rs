//! Which model, version and targets serve a request: resolving the requested name (`@version`,
//! `x-switchyard-version`, `:floor`/`:nitro`, `provider/model` direct routes), which targets can
//! serve it (capabilities, context window, the client's provider preferences), and the order in
//! which they are tried (the routing strategy).
//!
//! Pure decisions over the configuration and the targets' live state; no IO.

pub mod health;

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use http::HeaderValue;
use providers::openai::peek::{self, ProviderPrefs};

use crate::config::{Config, Model, Name, Strategy, Target, Version};
use crate::error::{Error, Kind};

/// The version chosen for a request.
pub struct Route {
    /// The public model name (without `@version` or suffix).
    pub model: Name,
    pub model_header: HeaderValue,
    pub version: Arc<Version>,
    /// `:floor` (cheapest first) or `:nitro` (fastest first).
    pub sort: Option<Sort>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sort {
    Price,
    Latency,
}

/// Step 4 of the pipeline: requested name → model → version.
pub fn resolve(config: &Config, requested: &str, pinned: Option<&str>) -> Result<Route, Error> {
    let (requested, sort) = match requested.rsplit_once(':') {
        Some((n, "floor")) => (n, Some(Sort::Price)),
        Some((n, "nitro")) => (n, Some(Sort::Latency)),
        _ => (requested, None),
    };
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
            sort,
        });
    }
    if let Some((provider, upstream)) = config.direct(name) {
        let known = config.direct_target(provider, upstream);
        let version = Version {
            name: Name::Borrowed("default"),
            name_header: HeaderValue::from_static("default"),
            targets: vec![Target {
                provider: provider.clone(),
                model: Name::Owned(upstream.to_owned()),
                model_header: crate::config::header_value(upstream),
                weight: 1,
                price: known.price,
                price_source: known.price_source,
                rpm: None,
                tpm: None,
                max_concurrency: None,
                context_window: None,
                capabilities: None,
                stats: known.stats,
            }],
            routing: Strategy::Weighted,
            retries: 1,
            timeout: config.server.request_timeout,
            fallbacks: Vec::new(),
            price: None,
            context_window: None,
            hedge_after: None,
            cursor: Default::default(),
        };
        return Ok(Route {
            model: Name::Owned(name.to_owned()),
            model_header: crate::config::header_value(name),
            version: Arc::new(version),
            sort,
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

/// What a request needs from a target.
#[derive(Debug, Clone, Copy, Default)]
pub struct Needs {
    pub tools: bool,
    pub json_schema: bool,
    pub vision: bool,
    /// Estimated prompt tokens.
    pub tokens: u64,
    /// OpenRouter's `require_parameters`: only targets that declare the capabilities.
    pub declared: bool,
}

impl Needs {
    pub fn of(p: &peek::Request<'_>, body_len: usize) -> Needs {
        Needs {
            tools: p.has_tools,
            json_schema: p.json_schema,
            vision: p.has_images,
            // About four bytes of JSON per token; a real tokenizer comes with admission.
            tokens: (body_len / 4) as u64,
            declared: p
                .provider
                .as_ref()
                .and_then(|p| p.require_parameters)
                .unwrap_or(false),
        }
    }

    fn met_by(&self, t: &Target) -> bool {
        match t.capabilities {
            None => !self.declared || !(self.tools || self.json_schema || self.vision),
            Some(c) => {
                (!self.tools || c.tools)
                    && (!self.json_schema || c.json_schema)
                    && (!self.vision || c.vision)
            }
        }
    }

    fn missing(&self) -> &'static str {
        match (self.tools, self.json_schema, self.vision) {
            (true, _, _) => "tools",
            (_, true, _) => "json_schema response_format",
            _ => "images",
        }
    }
}

/// Why no target of a version can take a request.
#[derive(Debug)]
pub enum Unservable {
    /// No target supports a feature the request uses (400).
    Capability(Error),
    /// The prompt is larger than every target's context window.
    ContextTooLong(Error),
    /// The client's provider preferences exclude every target (400).
    Excluded(Error),
}

impl Unservable {
    pub fn into_error(self) -> Error {
        match self {
            Unservable::Capability(e) | Unservable::ContextTooLong(e) | Unservable::Excluded(e) => {
                e
            }
        }
    }
}

/// Steps 7: the targets that can serve this request, in the order to try them. The first is the
/// strategy's choice; the rest are the failover order.
pub fn plan(
    route: &Route,
    needs: &Needs,
    prefs: Option<&ProviderPrefs>,
) -> Result<Vec<usize>, Unservable> {
    let version = &route.version;
    let capable: Vec<usize> = (0..version.targets.len())
        .filter(|&i| needs.met_by(&version.targets[i]))
        .collect();
    if capable.is_empty() {
        return Err(Unservable::Capability(Error::invalid(
            format!(
                "No target of model '{}' supports {}, which this request uses.",
                route.model,
                needs.missing()
            ),
            None,
        )));
    }
    let fits: Vec<usize> = capable
        .into_iter()
        .filter(|&i| {
            version.targets[i]
                .context_window
                .is_none_or(|w| needs.tokens <= w)
        })
        .collect();
    if fits.is_empty() {
        let mut e = Error::invalid(
            format!("The prompt (about {} tokens) exceeds the context window of every target of model '{}'.", needs.tokens, route.model),
            Some("messages"),
        );
        e.code = Some("context_length_exceeded".into());
        return Err(Unservable::ContextTooLong(e));
    }
    let allowed: Vec<usize> = fits
        .into_iter()
        .filter(|&i| prefs.is_none_or(|p| admits(p, &version.targets[i])))
        .collect();
    if allowed.is_empty() {
        return Err(Unservable::Excluded(Error::invalid(
            format!(
                "No target of model '{}' matches the request's provider preferences.",
                route.model
            ),
            Some("provider"),
        )));
    }
    let mut idx = allowed;
    let sort = prefs
        .and_then(|p| p.sort.as_deref())
        .and_then(|s| match s {
            "price" => Some(Sort::Price),
            "latency" | "throughput" => Some(Sort::Latency),
            _ => None,
        })
        .or(route.sort);
    match sort {
        Some(Sort::Price) => by_price(version, &mut idx),
        Some(Sort::Latency) => {
            weighted_shuffle(&version.targets, &mut idx);
            idx.sort_by_key(|&i| version.targets[i].stats.ewma_us.load(Relaxed));
        }
        None => order(version, &mut idx),
    }
    if let Some(p) = prefs.filter(|p| !p.order.is_empty()) {
        // Listed providers first, in the listed order; the rest keep the strategy's order.
        idx.sort_by_key(|&i| {
            p.order
                .iter()
                .position(|name| provider_is(&version.targets[i], name))
                .unwrap_or(usize::MAX)
        });
        if p.allow_fallbacks == Some(false) {
            idx.retain(|&i| {
                p.order
                    .iter()
                    .any(|name| provider_is(&version.targets[i], name))
            });
        }
    }
    Ok(idx)
}

/// A target is named by its provider's name in the configuration or its type (`openai`, `groq`).
fn provider_is(t: &Target, name: &str) -> bool {
    t.provider.name.eq_ignore_ascii_case(name)
        || t.provider.kind.type_name().eq_ignore_ascii_case(name)
}

fn admits(p: &ProviderPrefs, t: &Target) -> bool {
    if !p.only.is_empty() && !p.only.iter().any(|n| provider_is(t, n)) {
        return false;
    }
    if p.ignore.iter().any(|n| provider_is(t, n)) {
        return false;
    }
    if let Some(max) = p.max_price {
        // The target's resolved price (its own, its version's or the catalogue's). A target
        // without a price cannot be shown to be under the maximum.
        let Some(price) = t.price else { return false };
        if max.prompt.is_some_and(|m| price.input > m)
            || max.completion.is_some_and(|m| price.output > m)
        {
            return false;
        }
    }
    true
}

fn by_price(version: &Version, idx: &mut [usize]) {
    // Cheapest first (input + output price); ties keep the weighted order.
    weighted_shuffle(&version.targets, idx);
    let price = |i: &usize| {
        let p = version.targets[*i].price.unwrap_or_default();
        p.input + p.output
    };
    idx.sort_by(|a, b| price(a).total_cmp(&price(b)));
}

/// Orders `idx` (indexes into `version.targets`) by the version's routing strategy.
pub fn order(version: &Version, idx: &mut [usize]) {
    let n = idx.len();
    if n <= 1 {
        return;
    }
    match version.routing {
        Strategy::RoundRobin => {
            let start = version.cursor.fetch_add(1, Relaxed) % n;
            idx.rotate_left(start);
        }
        Strategy::Cost => by_price(version, idx),
        Strategy::Weighted => weighted_shuffle(&version.targets, idx),
        Strategy::LeastBusy => {
            // Fewest in flight first; ties broken at random.
            fastrand::shuffle(idx);
            idx.sort_by_key(|&i| version.targets[i].stats.in_flight.load(Relaxed));
        }
        Strategy::Latency => {
            // Power of two choices on the latency average; untried targets count as fastest.
            let a = fastrand::usize(0..n);
            let b = (a + 1 + fastrand::usize(0..n - 1)) % n;
            let ewma = |k: usize| version.targets[idx[k]].stats.ewma_us.load(Relaxed);
            let best = idx[if ewma(b) < ewma(a) { b } else { a }];
            weighted_shuffle(&version.targets, idx);
            if let Some(pos) = idx.iter().position(|&i| i == best) {
                idx[..=pos].rotate_right(1);
            }
        }
    }
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
