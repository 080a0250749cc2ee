//! The in-process backend, for a single replica: one mutex-guarded map of scopes. Never awaits;
//! the lock is held for well under a microsecond per call. Idle scopes are evicted every 1024
//! admissions, so memory follows the scopes in use, not every scope ever seen.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use hashbrown::HashMap;
use smallvec::SmallVec;

use super::period::Bounds;
use super::window::{self, Window};
use super::{
    usd, BudgetUsage, ConcurrencyUsage, Denied, Estimate, Headroom, Held, Kind, Limits, Period,
    Scope, Settlement, Ticket, Usage, WindowUsage, SOON,
};

/// How many admissions pass between two sweeps of idle scopes.
const SWEEP_EVERY: u32 = 1024;

#[derive(Default)]
pub(super) struct Memory {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    scopes: HashMap<Scope, ScopeState>,
    since_sweep: u32,
}

#[derive(Default)]
struct ScopeState {
    requests: Window,
    tokens: Window,
    in_flight: u64,
    /// Micro-USD reserved by admitted, unsettled requests.
    reserved: u64,
    /// Micro-USD spent, per budget period.
    spent: Vec<Spent>,
}

struct Spent {
    period: Period,
    bounds: Bounds,
    micros: u64,
}

impl Memory {
    pub(super) fn admit(
        &self,
        scopes: &[(Scope, Limits)],
        estimate: &Estimate,
    ) -> Result<(Ticket, Headroom), Denied> {
        let scopes = || super::limited(scopes);
        let now = estimate.now_ms;
        let mut state = self.lock();
        state.since_sweep += 1;
        if state.since_sweep >= SWEEP_EVERY {
            state.since_sweep = 0;
            state.scopes.retain(|_, s| !s.idle(now));
        }
        for (scope, limits) in scopes() {
            let s = state.scopes.entry_ref(scope).or_default();
            s.check(limits, estimate).map_err(|mut denied| {
                denied.scope = Some(scope.kind);
                denied
            })?;
        }
        let bucket = window::bucket(now);
        let mut headroom = Headroom::default();
        let mut held = SmallVec::new();
        for (scope, limits) in scopes() {
            let s = state.scopes.entry_ref(scope).or_default();
            if let Some(rpm) = limits.rpm {
                s.requests.add(bucket, 1);
                Headroom::tighten(&mut headroom.requests, s.requests.usage(rpm, now));
            }
            if let Some(tpm) = limits.tpm {
                s.tokens.add(bucket, estimate.tokens);
                Headroom::tighten(&mut headroom.tokens, s.tokens.usage(tpm, now));
            }
            if limits.holds_lease() {
                s.in_flight += 1;
            }
            if limits.budget.is_some() {
                s.reserved += estimate.cost;
            }
            held.push(Held::new(scope, limits, now));
        }
        let ticket = Ticket {
            member: String::new(),
            now_ms: now,
            tokens: estimate.tokens,
            cost: estimate.cost,
            held,
        };
        Ok((ticket, headroom))
    }

    pub(super) fn settle(&self, ticket: &Ticket, settlement: &Settlement) {
        let mut state = self.lock();
        let bucket = window::bucket(ticket.now_ms);
        for held in &ticket.held {
            let s = state.scopes.entry_ref(&held.scope).or_default();
            if held.tokens {
                s.tokens.replace(bucket, ticket.tokens, settlement.tokens);
            }
            if held.lease {
                s.in_flight = s.in_flight.saturating_sub(1);
            }
            if let Some((period, bounds)) = held.budget {
                s.reserved = s.reserved.saturating_sub(ticket.cost);
                *s.spent_mut(period, bounds) += settlement.cost;
            }
        }
    }

    pub(super) fn snapshot(&self, scope: &Scope, limits: &Limits, now: u64) -> Usage {
        let mut state = self.lock();
        let Some(s) = state.scopes.get_mut(scope) else {
            return ScopeState::default().usage(limits, now);
        };
        s.usage(limits, now)
    }

    pub(super) fn load_spend(&self, scope: &Scope, period: Period, bounds: Bounds, micros: u64) {
        let mut state = self.lock();
        let spent = state
            .scopes
            .entry_ref(scope)
            .or_default()
            .spent_mut(period, bounds);
        *spent = (*spent).max(micros);
    }

    pub(super) fn len(&self) -> usize {
        self.lock().scopes.len()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the counters half-updated in a way that
        // matters more than refusing every later request would, so carry on.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl ScopeState {
    fn check(&mut self, limits: &Limits, estimate: &Estimate) -> Result<(), Denied> {
        let now = estimate.now_ms;
        if let Some(rpm) = limits.rpm {
            let used = self.requests.used(now);
            if used + 1 > rpm {
                return Err(denied(
                    Kind::Rpm,
                    self.requests.retry_after(rpm, 1, now),
                    rpm,
                    used,
                ));
            }
        }
        if let Some(tpm) = limits.tpm {
            let used = self.tokens.used(now);
            let need = estimate.tokens.max(1);
            if used + need > tpm {
                return Err(denied(
                    Kind::Tpm,
                    self.tokens.retry_after(tpm, need, now),
                    tpm,
                    used,
                ));
            }
        }
        if let Some(max) = limits.max_concurrency {
            if self.in_flight + 1 > max {
                return Err(denied(Kind::Concurrency, Some(SOON), max, self.in_flight));
            }
        }
        if let Some(budget) = limits.budget {
            let limit = super::micros(budget.usd);
            let bounds = budget.period.bounds(now);
            let spent = self.spent(budget.period, bounds);
            let need = estimate.cost.max(1);
            if spent + self.reserved + need > limit {
                let retry = if spent + need > limit {
                    bounds
                        .end_ms
                        .map(|end| Duration::from_millis(end.saturating_sub(now)))
                } else {
                    Some(SOON)
                };
                return Err(denied(Kind::Budget, retry, limit, spent + self.reserved));
            }
        }
        Ok(())
    }

    fn usage(&mut self, limits: &Limits, now: u64) -> Usage {
        let budget = limits.budget.map(|budget| {
            let bounds = budget.period.bounds(now);
            let spent = usd(self.spent(budget.period, bounds));
            let reserved = usd(self.reserved);
            BudgetUsage {
                limit_usd: budget.usd,
                spent_usd: spent,
                reserved_usd: reserved,
                remaining_usd: (budget.usd - spent - reserved).max(0.0),
                period: budget.period,
                bounds,
            }
        });
        Usage {
            requests: limits.rpm.map(|rpm| self.requests.usage(rpm, now)),
            tokens: limits.tpm.map(|tpm| self.tokens.usage(tpm, now)),
            concurrency: limits.max_concurrency.map(|limit| ConcurrencyUsage {
                limit,
                in_flight: self.in_flight,
            }),
            budget,
        }
    }

    fn spent(&self, period: Period, bounds: Bounds) -> u64 {
        self.spent
            .iter()
            .find(|s| s.period == period && s.bounds == bounds)
            .map_or(0, |s| s.micros)
    }

    fn spent_mut(&mut self, period: Period, bounds: Bounds) -> &mut u64 {
        let i = match self
            .spent
            .iter()
            .position(|s| s.period == period && s.bounds == bounds)
        {
            Some(i) => i,
            None => {
                self.spent.push(Spent {
                    period,
                    bounds,
                    micros: 0,
                });
                self.spent.len() - 1
            }
        };
        &mut self.spent[i].micros
    }

    /// Nothing in flight, nothing counted in a window, no spend in a period still running.
    fn idle(&mut self, now: u64) -> bool {
        self.spent
            .retain(|s| s.bounds.end_ms.is_none_or(|end| end > now) && s.micros > 0);
        self.in_flight == 0
            && self.reserved == 0
            && self.requests.is_empty(now)
            && self.tokens.is_empty(now)
            && self.spent.is_empty()
    }
}

impl Window {
    fn usage(&mut self, limit: u64, now: u64) -> WindowUsage {
        let used = self.used(now);
        WindowUsage {
            limit,
            used,
            remaining: limit.saturating_sub(used),
            reset: self.reset(now),
        }
    }
}

fn denied(kind: Kind, retry_after: Option<Duration>, limit: u64, used: u64) -> Denied {
    Denied {
        scope: None,
        kind,
        retry_after,
        limit,
        remaining: limit.saturating_sub(used),
    }
}
