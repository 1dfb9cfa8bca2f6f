//! The meter: money, tokens and time spent by a run, and the gate every model call passes.
//!
//! A budget is only honest if it is checked *before* a call, against the most that call could
//! cost. Each call therefore reserves an upper bound ([`Meter::reserve`]) and settles its real
//! cost afterwards; calls that run in parallel see each other's reservations, so two judges
//! cannot each squeeze under the budget and cross it together. The yes/no is the core's
//! [`refinery_core::rounds::can_afford`].

use std::sync::Mutex;
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

/// Shared by every call of a run.
#[derive(Debug)]
pub struct Meter {
    limits: LoopLimits,
    started: Instant,
    elapsed_before: Duration,
    state: Mutex<State>,
}

/// An amount held back for a call in flight.
#[derive(Debug)]
#[must_use = "settle the reservation with the call's real cost"]
pub struct Reservation {
    usd: f64,
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
        }
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
        let mut state = self.lock();
        if self.limits.cost_budget_usd.is_none() {
            return Ok(Reservation { usd: 0.0 });
        }
        if !can_afford(&self.limits, state.spend.usd + state.reserved, estimate_usd) {
            return Err(Halt::CostBudget);
        }
        let usd = estimate_usd.unwrap_or(0.0);
        state.reserved += usd;
        Ok(Reservation { usd })
    }

    /// Reserves `share` of what is left of the budget, for a call whose own cap we set (claude's
    /// `--max-budget-usd`). `Ok(None)` without a cost budget.
    pub fn reserve_share(&self, share: f64) -> Result<Option<Reservation>, Halt> {
        self.check_time()?;
        let mut state = self.lock();
        let Some(budget) = self.limits.cost_budget_usd else {
            return Ok(None);
        };
        let left = budget - state.spend.usd - state.reserved;
        let usd = left * share.clamp(0.0, 1.0);
        // Below a cent no agent turn fits; stopping is more honest than a doomed start.
        if usd < 0.01 {
            return Err(Halt::CostBudget);
        }
        state.reserved += usd;
        Ok(Some(Reservation { usd }))
    }

    /// Records a finished call and releases its reservation.
    pub fn settle(&self, reservation: Option<Reservation>, usage: Option<Usage>, cost: Cost) {
        let mut state = self.lock();
        if let Some(reservation) = reservation {
            state.reserved = (state.reserved - reservation.usd).max(0.0);
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
}
