//! A total cost budget split over tasks that run on separate machines.
//!
//! `refinery batch` shares one budget pool between the tasks of one process, so a task can
//! never start a call the rest of the budget cannot cover. A CI matrix runs each task on its
//! own machine, where no pool can be shared: the only way to keep the total is to give each
//! task a fixed share up front and let each machine enforce its own. The share is rounded
//! down to a hundredth of a cent, so the shares never add up to more than the total; what a
//! cheap task leaves unspent is not passed on to the others.

/// The smallest amount a share is counted in: a hundredth of a cent.
const UNITS_PER_USD: f64 = 10_000.0;

/// Each of `tasks` tasks' share of `total_usd`, rounded down to a hundredth of a cent, or
/// `None` when there is no task, the total is not a positive amount, or the share would be
/// zero (a zero budget would stop every task before its first call).
#[must_use]
pub fn per_task_share(total_usd: f64, tasks: usize) -> Option<f64> {
    if tasks == 0 || !total_usd.is_finite() || total_usd <= 0.0 {
        return None;
    }
    let total_units = (total_usd * UNITS_PER_USD).floor();
    if total_units > u64::MAX as f64 {
        return None;
    }
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "a finite, positive value below u64::MAX, already floored"
    )]
    let units = total_units as u64;
    let share = units / tasks as u64;
    #[allow(
        clippy::cast_precision_loss,
        reason = "shares are far below 2^52 hundredths of a cent"
    )]
    let usd = share as f64 / UNITS_PER_USD;
    (share > 0).then_some(usd)
}

#[cfg(test)]
mod tests {
    use super::per_task_share;

    #[test]
    fn shares_round_down_and_never_add_up_to_more_than_the_total() {
        let table: [(f64, usize, Option<f64>); 11] = [
            (10.0, 1, Some(10.0)),
            (10.0, 2, Some(5.0)),
            (10.0, 3, Some(3.3333)),
            (1.0, 7, Some(0.1428)),
            (0.29, 1, Some(0.29)),
            (0.1, 3, Some(0.0333)),
            (0.0003, 4, None),
            (0.0, 3, None),
            (-1.0, 3, None),
            (f64::NAN, 3, None),
            (5.0, 0, None),
        ];
        for (total, tasks, expected) in table {
            let share = per_task_share(total, tasks);
            assert_eq!(share, expected, "{total} over {tasks}");
            if let Some(share) = share {
                assert!(
                    share * tasks as f64 <= total + 1e-12,
                    "{total} over {tasks}"
                );
                assert!(share > 0.0);
            }
        }
        assert_eq!(per_task_share(f64::INFINITY, 2), None);
    }
}
