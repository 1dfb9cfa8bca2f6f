//! Votes between candidate answers and the winner rule.
//!
//! The rule is MassGen's (plurality; ties go to the candidate registered first; with no usable
//! votes the first candidate holding an answer wins) but computed here, deterministically, and
//! only votes for candidates that actually hold an answer count.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// One vote: who voted for which candidate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vote {
    /// The voter's id.
    pub voter: String,
    /// The candidate voted for.
    pub choice: String,
}

/// Picks the winning candidate, or `None` when no candidate holds an answer.
///
/// `registration_order` lists candidates in the order they joined; it breaks ties. Votes for
/// candidates without an answer are ignored; a voter's later vote replaces an earlier one.
pub fn select_winner(
    votes: &[Vote],
    registration_order: &[String],
    has_answer: &BTreeSet<String>,
) -> Option<String> {
    let mut latest: BTreeMap<&str, &str> = BTreeMap::new();
    for vote in votes {
        latest.insert(vote.voter.as_str(), vote.choice.as_str());
    }
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for choice in latest.values() {
        if has_answer.contains(*choice) {
            *counts.entry(choice).or_default() += 1;
        }
    }
    let rank = |candidate: &str| {
        registration_order
            .iter()
            .position(|id| id == candidate)
            .unwrap_or(usize::MAX)
    };
    if let Some(best) = counts.values().copied().max() {
        return counts
            .iter()
            .filter(|(_, count)| **count == best)
            .map(|(candidate, _)| *candidate)
            .min_by(|a, b| rank(a).cmp(&rank(b)).then_with(|| a.cmp(b)))
            .map(str::to_owned);
    }
    registration_order
        .iter()
        .find(|id| has_answer.contains(*id))
        .cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    type WinnerCase<'a> = (
        &'a [(&'a str, &'a str)],
        &'a BTreeSet<String>,
        Option<&'a str>,
    );

    fn votes(pairs: &[(&str, &str)]) -> Vec<Vote> {
        pairs
            .iter()
            .map(|(voter, choice)| Vote {
                voter: (*voter).into(),
                choice: (*choice).into(),
            })
            .collect()
    }

    fn ids(list: &[&str]) -> Vec<String> {
        list.iter().map(|id| (*id).to_owned()).collect()
    }

    #[test]
    fn winner_table() {
        let order = ids(&["a", "b", "c"]);
        let all: BTreeSet<String> = ids(&["a", "b", "c"]).into_iter().collect();
        let only_bc: BTreeSet<String> = ids(&["b", "c"]).into_iter().collect();
        let cases: &[WinnerCase] = &[
            // MassGen acceptance check 30, first half: plurality.
            (&[("a", "b"), ("b", "b"), ("c", "c")], &all, Some("b")),
            // Check 30, second half: a tie goes to the candidate registered first.
            (&[("a", "c"), ("b", "b")], &only_bc, Some("b")),
            (&[("a", "c"), ("b", "c"), ("c", "a")], &all, Some("c")),
            // Votes for candidates without an answer do not count.
            (&[("a", "a"), ("b", "a"), ("c", "c")], &only_bc, Some("c")),
            // No votes: the first candidate with an answer.
            (&[], &only_bc, Some("b")),
            (&[], &BTreeSet::new(), None),
            // A later vote by the same voter replaces the earlier one.
            (&[("a", "b"), ("a", "c")], &all, Some("c")),
        ];
        for (pairs, answered, expected) in cases {
            assert_eq!(
                select_winner(&votes(pairs), &order, answered).as_deref(),
                *expected,
                "{pairs:?}"
            );
        }
    }
}
