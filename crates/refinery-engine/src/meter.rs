//! The meter: money, tokens and time spent by a run, and the gate every model call passes.
//!
//! A budget is only honest if it is checked *before* a call, against the most that call could
//! cost. Each call therefore reserves an upper bound ([`Meter::reserve`]) and settles its real
//! cost afterwards; calls that run in parallel see each other's reservations, so two judges
//! cannot each squeeze under the budget and cross it together. The yes/no is the core's
//! [`refinery_core::rounds::can_afford`].
//!
//! Runs of one process can also share a budget ([`BudgetPool`], used by `refinery batch`):
//! every reservation is then taken from the pool as well, under the same rule, and settled
//! there too, so one run cannot start a call the shared budget cannot cover. A call the pool
//! refuses only because other runs' calls are in flight waits for them to settle rather than
//! stopping its run while the budget still has room for it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use refinery_core::rounds::{LoopLimits, can_afford};
use refinery_llm::{Cost, Usage};
use serde::{Deserialize, Serialize};

use crate::error::Halt;

/// Totals so far, as saved in `run.json` and shown in progress lines.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Spend {
    /// Known cost in USD.
    pub usd: f64,
    /// Calls whose cost is unknown (their usage still counts in the tokens).
    pub unknown_cost_calls: u32,
    /// Input tokens.
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// Model calls and agent processes.
    pub calls: u32,
}

#[derive(Debug)]
struct State {
    spend: Spend,
    reserved: f64,
}

/// The longest a call waits for other runs' calls to settle before the pool's refusal stands
/// (longer than any one call's default timeout).
const POOL_WAIT_LIMIT: Duration = Duration::from_mins(30);

/// Shared by every call of a run.
#[derive(Debug)]
pub struct Meter {
    limits: LoopLimits,
    started: Instant,
    elapsed_before: Duration,
    state: Mutex<State>,
    pool: Option<Arc<dyn BudgetPool>>,
    /// How long a call may wait for the pool ([`POOL_WAIT_LIMIT`]).
    pool_wait: Duration,
}

/// An amount held back for a call in flight.
#[derive(Debug)]
#[must_use = "settle the reservation with the call's real cost"]
pub struct Reservation {
    usd: f64,
    pool: Option<PoolHold>,
}

/// A budget several runs of one process share (a batch's `--cost-budget`).
///
/// Implementors hold amounts for calls in flight and refuse a hold that could take spent plus
/// held past the budget ([`can_afford`]'s rule); they never call back into a [`Meter`].
pub trait BudgetPool: Send + Sync + std::fmt::Debug {
    /// Holds `usd` (a call's upper bound) or refuses the call. `None` (a cost nobody can
    /// bound) is refused.
    fn hold(&self, usd: Option<f64>) -> Result<PoolHold, Halt>;
    /// What is left: the budget less what was spent and what is held.
    fn left(&self) -> f64;
    /// Releases `hold` and records what the call spent (`None`: unknown, so the hold is
    /// counted in full).
    fn release(&self, hold: PoolHold, spent_usd: Option<f64>);
    /// What would be left if every hold in flight were released unspent: a refused call that
    /// would fit then is worth waiting for, one that would not is refused for good.
    fn left_once_settled(&self) -> f64;
    /// Notified after every release.
    fn releases(&self) -> Arc<tokio::sync::Notify>;
}

/// An amount a [`BudgetPool`] holds for one call.
#[derive(Debug)]
pub struct PoolHold {
    /// The pool's own number for the hold.
    pub id: u64,
    /// The amount held.
    pub usd: f64,
}

impl Reservation {
    /// The amount reserved (the call's cap).
    pub fn usd(&self) -> f64 {
        self.usd
    }
}

impl Meter {
    /// A meter continuing from `spend` and `elapsed_before` (both zero for a new run).
    pub fn new(limits: LoopLimits, spend: Spend, elapsed_before: Duration) -> Self {
        Self {
            limits,
            started: Instant::now(),
            elapsed_before,
            state: Mutex::new(State {
                spend,
                reserved: 0.0,
            }),
            pool: None,
            pool_wait: POOL_WAIT_LIMIT,
        }
    }

    /// Takes every later reservation from `pool` as well (a budget shared with other runs).
    pub fn share(&mut self, pool: Arc<dyn BudgetPool>) {
        self.pool = Some(pool);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A poisoned meter only means another call panicked mid-update; the numbers are
        // still the best we have.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The caps.
    pub fn limits(&self) -> &LoopLimits {
        &self.limits
    }

    /// Wall-clock time of the run, earlier sessions of a resumed run included.
    pub fn elapsed(&self) -> Duration {
        self.elapsed_before + self.started.elapsed()
    }

    /// Time left before the time budget, `None` without one.
    pub fn time_left(&self) -> Option<Duration> {
        self.limits
            .time_budget
            .map(|budget| budget.saturating_sub(self.elapsed()))
    }

    /// Fails once the time budget is used up.
    pub fn check_time(&self) -> Result<(), Halt> {
        match self.time_left() {
            Some(left) if left.is_zero() => Err(Halt::TimeBudget),
            _ => Ok(()),
        }
    }

    /// The totals so far.
    pub fn spend(&self) -> Spend {
        self.lock().spend
    }

    /// Reserves `estimate_usd` (an upper bound of the call's cost) or refuses the call.
    /// Without a cost budget every call is allowed and nothing is held.
    pub fn reserve(&self, estimate_usd: Option<f64>) -> Result<Reservation, Halt> {
        self.check_time()?;
        let pool = match &self.pool {
            Some(pool) => Some(pool.hold(estimate_usd)?),
            None => None,
        };
        let mut state = self.lock();
        if self.limits.cost_budget_usd.is_none() {
            return Ok(Reservation { usd: 0.0, pool });
        }
        if !can_afford(&self.limits, state.spend.usd + state.reserved, estimate_usd) {
            drop(state);
            self.release_pool(pool, Some(0.0));
            return Err(Halt::CostBudget);
        }
        let usd = estimate_usd.unwrap_or(0.0);
        state.reserved += usd;
        Ok(Reservation { usd, pool })
    }

    fn release_pool(&self, hold: Option<PoolHold>, spent_usd: Option<f64>) {
        if let (Some(pool), Some(hold)) = (&self.pool, hold) {
            pool.release(hold, spent_usd);
        }
    }

    /// Reserves `share` of what is left of the budget (the smaller of this run's and a shared
    /// pool's), for a call whose own cap we set (claude's `--max-budget-usd`). `Ok(None)`
    /// without any cost budget.
    pub fn reserve_share(&self, share: f64) -> Result<Option<Reservation>, Halt> {
        self.check_time()?;
        let mut state = self.lock();
        let own_left = self
            .limits
            .cost_budget_usd
            .map(|budget| budget - state.spend.usd - state.reserved);
        let pool_left = self.pool.as_ref().map(|pool| pool.left());
        let left = match (own_left, pool_left) {
            (None, None) => return Ok(None),
            (Some(left), None) | (None, Some(left)) => left,
            (Some(own), Some(pool)) => own.min(pool),
        };
        let usd = left * share.clamp(0.0, 1.0);
        // Below a cent no agent turn fits; stopping is more honest than a doomed start.
        if usd < 0.01 {
            return Err(Halt::CostBudget);
        }
        let pool = match &self.pool {
            Some(pool) => Some(pool.hold(Some(usd))?),
            None => None,
        };
        state.reserved += usd;
        Ok(Some(Reservation { usd, pool }))
    }

    /// [`Meter::reserve`], but a call the shared pool refuses only because of other runs'
    /// calls in flight waits for them to settle (their holds are upper bounds; most of each is
    /// given back) instead of stopping this run while the budget still has room for it.
    pub async fn reserve_waiting(&self, estimate_usd: Option<f64>) -> Result<Reservation, Halt> {
        self.wait_for_pool(
            |meter| meter.reserve(estimate_usd),
            |left| estimate_usd.is_some_and(|usd| usd <= left),
        )
        .await
    }

    /// [`Meter::reserve_share`], waiting like [`Meter::reserve_waiting`].
    pub async fn reserve_share_waiting(&self, share: f64) -> Result<Option<Reservation>, Halt> {
        self.wait_for_pool(
            |meter| meter.reserve_share(share),
            |left| left * share.clamp(0.0, 1.0) >= 0.01,
        )
        .await
    }

    /// Tries `attempt` until it succeeds, fails for another reason than the cost budget, or
    /// would not fit the pool even with nothing in flight (`fits_when_settled` of what would
    /// be left then). Each wait ends at the pool's next release, or after a second at most.
    async fn wait_for_pool<T>(
        &self,
        attempt: impl Fn(&Self) -> Result<T, Halt>,
        fits_when_settled: impl Fn(f64) -> bool,
    ) -> Result<T, Halt> {
        // A hold that is never released (a bug, or a call that outlives every timeout) must
        // not park this run for ever: after this long the refusal stands.
        let give_up = Instant::now() + self.pool_wait;
        loop {
            let Some(pool) = &self.pool else {
                return attempt(self);
            };
            let releases = pool.releases();
            let released = releases.notified();
            tokio::pin!(released);
            // Registered before the attempt, so a release between the two is not missed.
            released.as_mut().enable();
            match attempt(self) {
                Err(Halt::CostBudget)
                    if fits_when_settled(pool.left_once_settled()) && Instant::now() < give_up =>
                {
                    let _ = tokio::time::timeout(Duration::from_secs(1), released).await;
                }
                other => return other,
            }
        }
    }

    /// Records a finished call and releases its reservation.
    pub fn settle(&self, reservation: Option<Reservation>, usage: Option<Usage>, cost: Cost) {
        let mut state = self.lock();
        if let Some(reservation) = reservation {
            state.reserved = (state.reserved - reservation.usd).max(0.0);
            let spent = match cost {
                Cost::Usd(usd) => Some(usd),
                Cost::Unknown => None,
            };
            self.release_pool(reservation.pool, spent);
        }
        state.spend.calls += 1;
        match cost {
            Cost::Usd(usd) => state.spend.usd += usd,
            Cost::Unknown => state.spend.unknown_cost_calls += 1,
        }
        if let Some(usage) = usage {
            state.spend.input_tokens += usage.input_tokens;
            state.spend.output_tokens += usage.output_tokens;
        }
    }
}

/// The plain [`BudgetPool`]: one total in USD for every run that shares it, with what earlier
/// sessions already spent counted from the start (a resumed batch).
#[derive(Debug)]
pub struct SharedBudget {
    limits: LoopLimits,
    state: Mutex<PoolState>,
    released: Arc<tokio::sync::Notify>,
}

#[derive(Debug, Default)]
struct PoolState {
    spent: f64,
    held: f64,
    next_id: u64,
}

impl SharedBudget {
    /// A pool of `budget_usd`, of which `spent_usd` is already gone.
    pub fn new(budget_usd: f64, spent_usd: f64) -> Self {
        Self {
            limits: LoopLimits {
                cost_budget_usd: Some(budget_usd),
                ..LoopLimits::default()
            },
            state: Mutex::new(PoolState {
                spent: spent_usd,
                ..PoolState::default()
            }),
            released: Arc::new(tokio::sync::Notify::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PoolState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// What the runs sharing the pool have spent (an unknown cost counts at its hold).
    pub fn spent(&self) -> f64 {
        self.lock().spent
    }
}

impl BudgetPool for SharedBudget {
    fn hold(&self, usd: Option<f64>) -> Result<PoolHold, Halt> {
        let mut state = self.lock();
        if !can_afford(&self.limits, state.spent + state.held, usd) {
            return Err(Halt::CostBudget);
        }
        let usd = usd.unwrap_or(0.0);
        state.held += usd;
        state.next_id += 1;
        Ok(PoolHold {
            id: state.next_id,
            usd,
        })
    }

    fn left(&self) -> f64 {
        let state = self.lock();
        self.limits.cost_budget_usd.unwrap_or(0.0) - state.spent - state.held
    }

    fn release(&self, hold: PoolHold, spent_usd: Option<f64>) {
        {
            let mut state = self.lock();
            state.held = (state.held - hold.usd).max(0.0);
            state.spent += spent_usd.unwrap_or(hold.usd);
        }
        self.released.notify_waiters();
    }

    fn left_once_settled(&self) -> f64 {
        self.limits.cost_budget_usd.unwrap_or(0.0) - self.lock().spent
    }

    fn releases(&self) -> Arc<tokio::sync::Notify> {
        self.released.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(budget: Option<f64>) -> LoopLimits {
        LoopLimits {
            cost_budget_usd: budget,
            ..LoopLimits::default()
        }
    }

    #[test]
    fn parallel_reservations_cannot_cross_the_budget_together() {
        let meter = Meter::new(limits(Some(1.0)), Spend::default(), Duration::ZERO);
        let first = meter.reserve(Some(0.6)).unwrap();
        assert_eq!(meter.reserve(Some(0.6)).unwrap_err(), Halt::CostBudget);
        meter.settle(Some(first), None, Cost::Usd(0.1));
        let second = meter.reserve(Some(0.6)).unwrap();
        meter.settle(Some(second), None, Cost::Usd(0.6));
        assert!((meter.spend().usd - 0.7).abs() < 1e-9);
        assert_eq!(meter.reserve(Some(0.31)).unwrap_err(), Halt::CostBudget);
        assert!(meter.reserve(Some(0.3)).is_ok());
    }

    #[test]
    fn without_a_budget_everything_is_allowed_and_unknown_costs_are_counted() {
        let meter = Meter::new(limits(None), Spend::default(), Duration::ZERO);
        let reservation = meter.reserve(None).unwrap();
        meter.settle(Some(reservation), None, Cost::Unknown);
        assert_eq!(meter.spend().unknown_cost_calls, 1);
        assert!(meter.reserve_share(0.5).unwrap().is_none());
    }

    #[test]
    fn an_unknown_estimate_is_refused_under_a_budget() {
        let meter = Meter::new(limits(Some(5.0)), Spend::default(), Duration::ZERO);
        assert_eq!(meter.reserve(None).unwrap_err(), Halt::CostBudget);
    }

    #[test]
    fn shares_split_what_is_left() {
        let meter = Meter::new(
            limits(Some(1.0)),
            Spend {
                usd: 0.5,
                ..Spend::default()
            },
            Duration::ZERO,
        );
        let half = meter.reserve_share(0.5).unwrap().unwrap();
        assert!((half.usd() - 0.25).abs() < 1e-9);
        let rest = meter.reserve_share(1.0).unwrap().unwrap();
        assert!((rest.usd() - 0.25).abs() < 1e-9);
        assert_eq!(meter.reserve_share(1.0).unwrap_err(), Halt::CostBudget);
    }

    #[test]
    fn a_used_up_time_budget_halts() {
        let meter = Meter::new(
            LoopLimits {
                time_budget: Some(Duration::from_secs(10)),
                ..LoopLimits::default()
            },
            Spend::default(),
            Duration::from_secs(11),
        );
        assert_eq!(meter.check_time(), Err(Halt::TimeBudget));
        assert_eq!(meter.reserve(Some(0.0)).unwrap_err(), Halt::TimeBudget);
    }

    #[test]
    fn meters_sharing_a_pool_cannot_cross_it_together() {
        let pool = Arc::new(SharedBudget::new(1.0, 0.2));
        let mut first = Meter::new(limits(Some(1.0)), Spend::default(), Duration::ZERO);
        let mut second = Meter::new(limits(None), Spend::default(), Duration::ZERO);
        first.share(pool.clone());
        second.share(pool.clone());
        // Each meter alone could afford 0.5; together with the 0.2 already spent they cannot.
        let held = first.reserve(Some(0.5)).unwrap();
        assert_eq!(second.reserve(Some(0.5)).unwrap_err(), Halt::CostBudget);
        // A cost nobody can bound is refused by the pool even without a run budget.
        assert_eq!(second.reserve(None).unwrap_err(), Halt::CostBudget);
        first.settle(Some(held), None, Cost::Usd(0.1));
        assert!((pool.spent() - 0.3).abs() < 1e-9);
        let held = second.reserve(Some(0.7)).unwrap();
        assert!(pool.left().abs() < 1e-9);
        // An unknown cost is counted at its full hold.
        second.settle(Some(held), None, Cost::Unknown);
        assert!((pool.spent() - 1.0).abs() < 1e-9);
        assert_eq!(first.reserve_share(1.0).unwrap_err(), Halt::CostBudget);
        assert_eq!(first.reserve(Some(0.01)).unwrap_err(), Halt::CostBudget);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_call_the_pool_could_cover_once_others_settle_waits_for_them() {
        let pool = Arc::new(SharedBudget::new(1.0, 0.0));
        let mut first = Meter::new(limits(None), Spend::default(), Duration::ZERO);
        let mut second = Meter::new(limits(None), Spend::default(), Duration::ZERO);
        first.share(pool.clone());
        second.share(pool.clone());
        let first = Arc::new(first);
        let held = first.reserve(Some(0.8)).unwrap();
        // 0.5 does not fit beside the 0.8 in flight, but would once it settles: it waits.
        let waiting = tokio::spawn(async move { second.reserve_waiting(Some(0.5)).await });
        // Time for it to try (and, refused, to wait rather than give up).
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!waiting.is_finished());
        first.settle(Some(held), None, Cost::Usd(0.3));
        let second = tokio::time::timeout(Duration::from_secs(30), waiting)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert!((pool.left() - 0.2).abs() < 1e-9);
        first.settle(Some(second), None, Cost::Usd(0.5));
        // What would not fit even with nothing in flight is refused at once.
        assert_eq!(
            first.reserve_waiting(Some(0.3)).await.unwrap_err(),
            Halt::CostBudget
        );
        let rest = first.reserve_share_waiting(1.0).await.unwrap().unwrap();
        assert!((rest.usd() - 0.2).abs() < 1e-9);
        first.settle(Some(rest), None, Cost::Usd(0.0));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_hold_that_is_never_released_stops_the_wait_at_its_limit() {
        let pool = Arc::new(SharedBudget::new(1.0, 0.0));
        let mut first = Meter::new(limits(None), Spend::default(), Duration::ZERO);
        let mut second = Meter::new(limits(None), Spend::default(), Duration::ZERO);
        first.share(pool.clone());
        second.share(pool.clone());
        second.pool_wait = Duration::from_millis(300);
        let _leaked = first.reserve(Some(0.8)).unwrap();
        let waited =
            tokio::time::timeout(Duration::from_secs(30), second.reserve_waiting(Some(0.5)))
                .await
                .expect("the wait ends at its limit");
        assert_eq!(waited.unwrap_err(), Halt::CostBudget);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_waiting_call_is_refused_when_what_settles_leaves_too_little() {
        let pool = Arc::new(SharedBudget::new(1.0, 0.0));
        let mut first = Meter::new(limits(None), Spend::default(), Duration::ZERO);
        let mut second = Meter::new(limits(None), Spend::default(), Duration::ZERO);
        first.share(pool.clone());
        second.share(pool.clone());
        let held = first.reserve(Some(0.8)).unwrap();
        let waiting = tokio::spawn(async move { second.reserve_waiting(Some(0.5)).await });
        tokio::task::yield_now().await;
        // The call in flight spent most of its hold: the waiting one no longer fits.
        first.settle(Some(held), None, Cost::Usd(0.7));
        let refused = tokio::time::timeout(Duration::from_secs(30), waiting)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(refused.unwrap_err(), Halt::CostBudget);
        assert!((pool.spent() - 0.7).abs() < 1e-9);
    }
}
