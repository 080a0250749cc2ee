//! Who may call: every active virtual key (from the store and the configuration file) with its
//! team and limits, by the SHA-256 of its secret.
//!
//! Reads are lock-free (an immutable map behind `ArcSwap`); the map is rebuilt whole when the
//! store's key or team change counters move, polled every second, so a key created, changed or
//! revoked on any replica takes effect on every replica within about a second.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::config;
use crate::limits::{self, Budget, Period, Scope};

/// A caller's identity and what it may do.
#[derive(Debug)]
pub struct Principal {
    pub id: String,
    pub name: String,
    pub team_id: Option<String>,
    pub team_name: Option<String>,
    /// Glob patterns of allowed public models, key and team (both must allow); `None` = all.
    pub models: Option<Vec<String>>,
    pub team_models: Option<Vec<String>>,
    /// Unix milliseconds.
    pub expires_at: Option<i64>,
    /// The limits to admit against: the key's, then its team's (only those with any limit).
    pub scopes: Vec<(Scope, limits::Limits)>,
}

impl Principal {
    /// Whether a request or token window limits it: its answers carry `x-ratelimit-*` headers.
    pub fn has_windows(&self) -> bool {
        self.scopes
            .iter()
            .any(|(_, l)| l.rpm.is_some() || l.tpm.is_some())
    }

    pub fn allows(&self, model: &str) -> bool {
        let ok = |list: &Option<Vec<String>>| {
            list.as_ref()
                .is_none_or(|l| l.iter().any(|p| super::glob(p, model)))
        };
        ok(&self.models) && ok(&self.team_models)
    }
}

/// Keys by the SHA-256 of their secret. A digest is already uniformly spread, so its first
/// eight bytes are its hash: SipHash over the 32 bytes was ~270 instructions of every
/// authenticated request. (The map's keys are made by admins, not by whoever sends requests:
/// nobody can fill it with colliding entries.)
type ByHash = HashMap<[u8; 32], Arc<Principal>, std::hash::BuildHasherDefault<DigestHasher>>;

/// The hasher of [`ByHash`]: a digest's first eight bytes.
#[derive(Default)]
struct DigestHasher(u64);

impl std::hash::Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    /// An array hashes as its length (`write_usize`, ignored: it is always 32) and its bytes.
    fn write(&mut self, bytes: &[u8]) {
        let mut word = [0u8; 8];
        let n = bytes.len().min(8);
        word[..n].copy_from_slice(&bytes[..n]);
        self.0 ^= u64::from_le_bytes(word);
    }

    fn write_usize(&mut self, _: usize) {}
}

/// Every active key by the hash of its secret.
#[derive(Default)]
pub struct Directory {
    by_hash: ArcSwap<ByHash>,
    /// The store's change counters the map was built at.
    seen: std::sync::Mutex<(i64, i64)>,
}

impl Directory {
    /// The keys of the configuration file alone (no store).
    pub fn from_config(keys: &[config::Key]) -> Directory {
        let d = Directory::default();
        let map = keys
            .iter()
            .map(|k| {
                let scopes = scope(
                    limits::ScopeKind::Key,
                    &format!("cfg_{}", k.name),
                    &k.limits,
                );
                let p = Principal {
                    id: format!("cfg_{}", k.name),
                    name: k.name.clone(),
                    team_id: None,
                    team_name: None,
                    models: (!k.models.is_empty()).then(|| k.models.clone()),
                    team_models: None,
                    expires_at: k.expires_at,
                    scopes,
                };
                (k.hash, Arc::new(p))
            })
            .collect();
        d.by_hash.store(Arc::new(map));
        d
    }

    /// Every active key.
    pub fn principals(&self) -> Vec<Arc<Principal>> {
        self.by_hash.load().values().cloned().collect()
    }

    pub fn lookup(&self, hash: &[u8; 32]) -> Option<Arc<Principal>> {
        self.by_hash.load().get(hash).cloned()
    }

    /// Rebuilds the map from the store if any key or team changed since the last build.
    pub async fn refresh(&self, store: &store::Store) -> Result<bool, store::Error> {
        let versions = (
            store.keys().version().await?,
            store.teams().version().await?,
        );
        if *self.seen.lock().unwrap_or_else(|e| e.into_inner()) == versions {
            return Ok(false);
        }
        let keys = store.keys().list(&store::keys::Filter::default()).await?;
        let teams: HashMap<String, store::teams::Team> = store
            .teams()
            .list(false)
            .await?
            .into_iter()
            .map(|t| (t.id.clone(), t))
            .collect();
        let now = store::now_ms();
        let mut map = ByHash::with_capacity_and_hasher(keys.len(), Default::default());
        for k in keys.into_iter().filter(|k| k.is_active(now)) {
            let Some(hash) = decode_hash(&k.hash) else {
                continue;
            };
            let team = k.team_id.as_ref().and_then(|t| teams.get(t));
            if k.team_id.is_some() && team.is_none() {
                // The team was deleted: its keys stop working with it.
                continue;
            }
            let mut scopes = scope(limits::ScopeKind::Key, &k.id, &from_store(&k.limits));
            if let Some(t) = team {
                scopes.extend(scope(
                    limits::ScopeKind::Team,
                    &t.id,
                    &from_store(&t.limits),
                ));
            }
            map.insert(
                hash,
                Arc::new(Principal {
                    id: k.id.clone(),
                    name: k.name.clone(),
                    team_id: k.team_id.clone(),
                    team_name: team.map(|t| t.name.clone()),
                    models: k.limits.models.clone(),
                    team_models: team.and_then(|t| t.limits.models.clone()),
                    expires_at: k.expires_at,
                    scopes,
                }),
            );
        }
        // The tokenizer (~40 MiB) is loaded only once some key needs prompt counts.
        let counts = map.values().any(|p| {
            p.scopes
                .iter()
                .any(|(_, l)| l.tpm.is_some() || l.budget.is_some())
        });
        if counts {
            crate::tokens::warm_in_background();
        }
        self.by_hash.store(Arc::new(map));
        *self.seen.lock().unwrap_or_else(|e| e.into_inner()) = versions;
        Ok(true)
    }

    /// Polls the store every `every` until the process ends.
    pub async fn follow(self: Arc<Self>, store: store::Store, every: Duration) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = self.refresh(&store).await {
                tracing::warn!(error = %e, "could not refresh keys from the store; keeping the last known keys");
            }
        }
    }
}

fn scope(kind: limits::ScopeKind, id: &str, l: &limits::Limits) -> Vec<(Scope, limits::Limits)> {
    let any =
        l.rpm.is_some() || l.tpm.is_some() || l.max_concurrency.is_some() || l.budget.is_some();
    if !any {
        return Vec::new();
    }
    let scope = match kind {
        limits::ScopeKind::Key => Scope::key(id),
        limits::ScopeKind::Team => Scope::team(id),
    };
    vec![(scope, *l)]
}

/// The store's limits in the limiter's terms.
pub fn from_store(l: &store::limits::Limits) -> limits::Limits {
    limits::Limits {
        rpm: l.rpm,
        tpm: l.tpm,
        max_concurrency: l.max_concurrency,
        budget: l.budget_usd.map(|usd| Budget {
            usd,
            period: match l.budget_period {
                Some(store::limits::BudgetPeriod::Day) => Period::Day,
                Some(store::limits::BudgetPeriod::Week) => Period::Week,
                Some(store::limits::BudgetPeriod::ThirtyDays) => Period::ThirtyDays,
                Some(store::limits::BudgetPeriod::Month) => Period::Month,
                None => Period::Lifetime,
            },
        }),
    }
}

fn decode_hash(hex_hash: &str) -> Option<[u8; 32]> {
    let bytes = hex::decode(hex_hash).ok()?;
    bytes.try_into().ok()
}
