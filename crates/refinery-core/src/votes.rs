//! Multi-model runs (`refinery run`): answers, votes, staleness, consensus, and the winner when
//! the rounds run out.
//!
//! Several agents answer the same task; each then judges every current answer (anonymized by
//! the engine) and either votes for one or improves on one. The rules here decide, from what
//! was recorded, who must act next and whether there is a winner. They are MassGen's step-mode
//! rules made strict:
//!
//! - A vote records what its voter was **shown** ([`Seen`], taken when the voter was asked,
//!   not when it answered). It is **stale** once any agent has a newer answer than the one the
//!   voter saw; a stale voter is asked again.
//! - **Self-votes do not count**: a vote for the voter's own answer is kept on record but
//!   neither for nor against anything.
//! - **Consensus**: every live agent has a vote, every vote is fresh, and one answer holds the
//!   votes of more than half of the live agents other than its author, while no other answer
//!   does. (Counting against each answer's own electorate keeps two self-voters and one real
//!   vote from passing as agreement; requiring the majority to be unique keeps two agents who
//!   each prefer the other's answer from both "winning".)
//! - **At the cap** (or when fewer than two agents are left) the plurality of counted votes
//!   wins; a tie goes to the higher criteria score ([`criteria_total`]: per criterion the lower
//!   median of the other agents' scores, summed), then to the agent given first on the command
//!   line.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::checklist;

/// An agent of a run: its place in the order the models were given (0-based). That order is
/// also the last tie-break.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Agent(pub usize);

impl fmt::Display for Agent {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        // People count from one.
        write!(formatter, "model {}", self.0 + 1)
    }
}

/// One revision of one agent's answer (revisions count from 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AnswerId {
    /// Whose answer.
    pub agent: Agent,
    /// Which of its answers.
    pub revision: u32,
}

impl fmt::Display for AnswerId {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}'s answer {}", self.agent, self.revision)
    }
}

/// What a voter was shown: the revision of each agent's answer current when it was asked.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Seen(pub BTreeMap<Agent, u32>);

impl Seen {
    /// The revision of `agent`'s answer the voter saw (0: none).
    pub fn revision_of(&self, agent: Agent) -> u32 {
        self.0.get(&agent).copied().unwrap_or(0)
    }
}

/// A vote as recorded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vote {
    /// Who voted.
    pub voter: Agent,
    /// What it was shown when asked.
    pub seen: Seen,
    /// The answer it voted for (one it was shown).
    pub choice: AnswerId,
}

impl Vote {
    /// Whether the voter voted for its own answer.
    pub fn is_self_vote(&self) -> bool {
        self.choice.agent == self.voter
    }
}

/// Where a run stands between rounds: the answers, who is still taking part, the votes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Standing {
    /// Each agent's latest answer revision; agents without an answer are absent.
    pub current: BTreeMap<Agent, u32>,
    /// Agents still taking part (an agent whose backend failed or whose replies stayed
    /// unusable is dropped; its answer stays a candidate).
    pub live: BTreeSet<Agent>,
    /// Each agent's vote, when its latest action was a vote (a new answer clears it).
    pub votes: BTreeMap<Agent, Vote>,
}

/// How an answer fares in a tally.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnswerCount {
    /// The answer (a current revision).
    pub answer: AnswerId,
    /// Counted votes for it: live voters other than its author, fresh or stale.
    pub votes: usize,
    /// Of those, the fresh ones.
    pub fresh: usize,
    /// How many votes it could get: the live agents other than its author.
    pub eligible: usize,
}

/// The votes as they stand, for the record and the consensus rule.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    /// Every current answer, in agent order.
    pub answers: Vec<AnswerCount>,
    /// Live agents whose vote is for their own answer (not counted).
    pub self_votes: Vec<Agent>,
    /// Live agents whose vote is stale (asked again next round).
    pub stale: Vec<Agent>,
    /// Live agents without a vote (they answered last, or have not acted yet).
    pub waiting: Vec<Agent>,
}

/// How the winner was chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "by", rename_all = "snake_case")]
pub enum WinBy {
    /// Every live agent agreed as the consensus rule requires.
    Consensus,
    /// The most counted votes when no consensus was reached.
    Plurality {
        /// What settled a tie for the most votes, if there was one.
        tie_break: Option<TieBreak>,
    },
}

/// What settled a tie at the cap.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TieBreak {
    /// The higher criteria score given by the other agents.
    CriteriaScore,
    /// The agent given first on the command line (scores tied too, or were missing).
    ModelOrder,
}

/// The chosen answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Winner {
    /// The answer.
    pub answer: AnswerId,
    /// Its counted votes.
    pub votes: usize,
    /// How many votes it could have had.
    pub eligible: usize,
    /// How it won.
    #[serde(flatten)]
    pub by: WinBy,
}

/// Why a run decides by plurality instead of going on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoConsensus {
    /// `--max-rounds` rounds ran.
    MaxRounds,
    /// Fewer than two agents are left to vote.
    TooFewAgents,
    /// Every live agent voted on the current answers and no answer has a majority: another
    /// round would ask no one (votes are only asked again when they go stale).
    Split,
    /// A budget stopped the run part-way.
    Budget,
}

/// What follows a round.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "next", rename_all = "snake_case")]
pub enum RunStep {
    /// Another round: these agents act in it.
    Continue {
        /// Live agents with no vote or a stale one.
        to_act: Vec<Agent>,
    },
    /// The run is decided.
    Decided {
        /// The winner.
        winner: Winner,
        /// Why not by consensus, when not.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        without_consensus: Option<NoConsensus>,
    },
    /// No answer exists to choose from (every agent failed before answering).
    NoAnswer,
}

impl Standing {
    /// The answer revisions a voter asked now would be shown.
    pub fn seen_now(&self) -> Seen {
        Seen(self.current.clone())
    }

    /// The current answers, in agent order.
    pub fn current_answers(&self) -> Vec<AnswerId> {
        self.current
            .iter()
            .map(|(agent, revision)| AnswerId {
                agent: *agent,
                revision: *revision,
            })
            .collect()
    }

    /// Whether `vote` was made before a newer answer from any agent.
    pub fn is_stale(&self, vote: &Vote) -> bool {
        self.current
            .iter()
            .any(|(agent, revision)| *revision > vote.seen.revision_of(*agent))
    }

    /// Live agents that must act next round: no vote yet, or a stale one.
    pub fn to_act(&self) -> Vec<Agent> {
        self.live
            .iter()
            .copied()
            .filter(|agent| self.votes.get(agent).is_none_or(|vote| self.is_stale(vote)))
            .collect()
    }

    /// Records a new answer by `agent`: its revision advances and its vote, if any, lapses
    /// (its latest action is now an answer, not a judgment of the others).
    pub fn record_answer(&mut self, agent: Agent) -> AnswerId {
        let revision = self.current.get(&agent).map_or(1, |revision| revision + 1);
        self.current.insert(agent, revision);
        self.votes.remove(&agent);
        AnswerId { agent, revision }
    }

    /// The live votes that count for a current answer (not self-votes, not for a replaced
    /// revision), with whether each is fresh.
    fn counted(&self) -> impl Iterator<Item = (&Vote, bool)> {
        self.votes.values().filter_map(|vote| {
            let live = self.live.contains(&vote.voter);
            let current = self.current.get(&vote.choice.agent) == Some(&vote.choice.revision);
            (live && current && !vote.is_self_vote()).then(|| (vote, !self.is_stale(vote)))
        })
    }

    /// The votes as they stand.
    pub fn tally(&self) -> Tally {
        let answers = self
            .current_answers()
            .into_iter()
            .map(|answer| {
                let mut count = AnswerCount {
                    answer,
                    votes: 0,
                    fresh: 0,
                    eligible: self
                        .live
                        .iter()
                        .filter(|agent| **agent != answer.agent)
                        .count(),
                };
                for (vote, fresh) in self.counted() {
                    if vote.choice == answer {
                        count.votes += 1;
                        count.fresh += usize::from(fresh);
                    }
                }
                count
            })
            .collect();
        let live_votes = || {
            self.votes
                .values()
                .filter(|vote| self.live.contains(&vote.voter))
        };
        Tally {
            answers,
            self_votes: live_votes()
                .filter(|vote| vote.is_self_vote())
                .map(|vote| vote.voter)
                .collect(),
            stale: live_votes()
                .filter(|vote| self.is_stale(vote))
                .map(|vote| vote.voter)
                .collect(),
            waiting: self
                .live
                .iter()
                .copied()
                .filter(|agent| !self.votes.contains_key(agent))
                .collect(),
        }
    }

    /// The consensus winner, if the rule (see the module doc) is met.
    pub fn consensus(&self) -> Option<Winner> {
        let tally = self.tally();
        if self.live.is_empty() || !tally.waiting.is_empty() || !tally.stale.is_empty() {
            return None;
        }
        let mut majorities = tally
            .answers
            .iter()
            .filter(|count| count.eligible > 0 && count.fresh * 2 > count.eligible);
        let winner = majorities.next()?;
        if majorities.next().is_some() {
            return None;
        }
        Some(Winner {
            answer: winner.answer,
            votes: winner.fresh,
            eligible: winner.eligible,
            by: WinBy::Consensus,
        })
    }

    /// The winner without consensus: the most counted votes, then the higher criteria score
    /// (`scores`: [`criteria_total`] per answer; a missing score ranks lowest), then the agent
    /// given first. `None` only when there is no answer at all.
    pub fn plurality(&self, scores: &BTreeMap<AnswerId, u32>) -> Option<Winner> {
        let tally = self.tally();
        let most = tally.answers.iter().map(|count| count.votes).max()?;
        let tied: Vec<&AnswerCount> = tally
            .answers
            .iter()
            .filter(|count| count.votes == most)
            .collect();
        let best_score = tied
            .iter()
            .map(|count| scores.get(&count.answer).copied())
            .max()
            .flatten();
        let top: Vec<&AnswerCount> = tied
            .iter()
            .copied()
            .filter(|count| scores.get(&count.answer).copied() == best_score)
            .collect();
        let tie_break = match (tied.len(), top.len()) {
            (1, _) => None,
            (_, 1) => Some(TieBreak::CriteriaScore),
            _ => Some(TieBreak::ModelOrder),
        };
        // `answers` is in agent order, so the first of the top is the agent given first.
        let winner = top.first()?;
        Some(Winner {
            answer: winner.answer,
            votes: winner.votes,
            eligible: winner.eligible,
            by: WinBy::Plurality { tie_break },
        })
    }

    /// What follows round `round` of at most `max_rounds`.
    pub fn next_step(
        &self,
        round: u32,
        max_rounds: u32,
        scores: &BTreeMap<AnswerId, u32>,
    ) -> RunStep {
        if let Some(winner) = self.consensus() {
            return RunStep::Decided {
                winner,
                without_consensus: None,
            };
        }
        let reason = if round >= max_rounds {
            NoConsensus::MaxRounds
        } else if self.live.len() < 2 {
            NoConsensus::TooFewAgents
        } else {
            let to_act = self.to_act();
            if to_act.is_empty() {
                NoConsensus::Split
            } else {
                return RunStep::Continue { to_act };
            }
        };
        match self.plurality(scores) {
            Some(winner) => RunStep::Decided {
                winner,
                without_consensus: Some(reason),
            },
            None => RunStep::NoAnswer,
        }
    }
}

/// An answer's criteria score from the judgments of it (each a score per criterion): per
/// criterion the lower median ([`checklist::panel_score`]), summed over the criteria. The
/// caller passes only other agents' judgments, so no author scores its own answer. `None`
/// without judgments.
pub fn criteria_total(judgments: &[&BTreeMap<String, u8>]) -> Option<u32> {
    let criteria: BTreeSet<&String> = judgments.iter().flat_map(|scores| scores.keys()).collect();
    if criteria.is_empty() {
        return None;
    }
    criteria
        .into_iter()
        .map(|criterion| {
            let scores: Vec<u8> = judgments
                .iter()
                .filter_map(|scores| scores.get(criterion).copied())
                .collect();
            checklist::panel_score(&scores).map(u32::from)
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    fn id(agent: usize, revision: u32) -> AnswerId {
        AnswerId {
            agent: Agent(agent),
            revision,
        }
    }

    /// A standing with `answers` (agent, revision), every one of `live` live, and `votes`
    /// (voter, choice, what it saw as revisions per agent in agent order).
    fn standing(
        answers: &[(usize, u32)],
        live: &[usize],
        votes: &[(usize, (usize, u32), &[u32])],
    ) -> Standing {
        Standing {
            current: answers
                .iter()
                .map(|(agent, revision)| (Agent(*agent), *revision))
                .collect(),
            live: live.iter().map(|agent| Agent(*agent)).collect(),
            votes: votes
                .iter()
                .map(|(voter, (agent, revision), seen)| {
                    let seen = Seen(
                        seen.iter()
                            .enumerate()
                            .filter(|(_, revision)| **revision > 0)
                            .map(|(agent, revision)| (Agent(agent), *revision))
                            .collect(),
                    );
                    (
                        Agent(*voter),
                        Vote {
                            voter: Agent(*voter),
                            seen,
                            choice: id(*agent, *revision),
                        },
                    )
                })
                .collect(),
        }
    }

    const ALL: &[usize] = &[0, 1, 2];
    const ROUND_ONE: &[(usize, u32)] = &[(0, 1), (1, 1), (2, 1)];
    const SEEN_ALL: &[u32] = &[1, 1, 1];

    #[test]
    fn consensus_table() {
        type Case<'a> = (
            &'a str,
            &'a [(usize, u32)],
            &'a [usize],
            &'a [(usize, (usize, u32), &'a [u32])],
            Option<(AnswerId, usize, usize)>,
        );
        let cases: &[Case] = &[
            (
                "everyone for agent 1: its author's self-vote is neither for nor against",
                ROUND_ONE,
                ALL,
                &[
                    (0, (1, 1), SEEN_ALL),
                    (1, (1, 1), SEEN_ALL),
                    (2, (1, 1), SEEN_ALL),
                ],
                Some((id(1, 1), 2, 2)),
            ),
            (
                "two of the other two is a majority",
                ROUND_ONE,
                ALL,
                &[
                    (0, (2, 1), SEEN_ALL),
                    (1, (2, 1), SEEN_ALL),
                    (2, (0, 1), SEEN_ALL),
                ],
                Some((id(2, 1), 2, 2)),
            ),
            (
                "a cycle has no majority",
                ROUND_ONE,
                ALL,
                &[
                    (0, (1, 1), SEEN_ALL),
                    (1, (2, 1), SEEN_ALL),
                    (2, (0, 1), SEEN_ALL),
                ],
                None,
            ),
            (
                "two self-votes and one real vote are not agreement",
                ROUND_ONE,
                ALL,
                &[
                    (0, (0, 1), SEEN_ALL),
                    (1, (1, 1), SEEN_ALL),
                    (2, (0, 1), SEEN_ALL),
                ],
                None,
            ),
            (
                "an agent that has not voted blocks consensus",
                ROUND_ONE,
                ALL,
                &[(0, (1, 1), SEEN_ALL), (2, (1, 1), SEEN_ALL)],
                None,
            ),
            (
                "a stale vote blocks consensus even when the rest agree",
                &[(0, 1), (1, 1), (2, 2)],
                ALL,
                &[
                    (0, (1, 1), SEEN_ALL),
                    (1, (0, 1), &[1, 1, 2]),
                    (2, (1, 1), &[1, 1, 2]),
                ],
                None,
            ),
            (
                "fresh votes after an improvement",
                &[(0, 1), (1, 1), (2, 2)],
                ALL,
                &[
                    (0, (2, 2), &[1, 1, 2]),
                    (1, (2, 2), &[1, 1, 2]),
                    (2, (2, 2), &[1, 1, 2]),
                ],
                Some((id(2, 2), 2, 2)),
            ),
            (
                "two agents who each prefer the other's answer do not both win",
                &[(0, 1), (1, 1)],
                &[0, 1],
                &[(0, (1, 1), &[1, 1]), (1, (0, 1), &[1, 1])],
                None,
            ),
            (
                "two agents: the other's vote is all the votes its answer can get",
                &[(0, 1), (1, 1)],
                &[0, 1],
                &[(0, (1, 1), &[1, 1]), (1, (1, 1), &[1, 1])],
                Some((id(1, 1), 1, 1)),
            ),
            (
                "a dropped agent's answer can still win; its vote no longer counts",
                ROUND_ONE,
                &[0, 1],
                &[
                    (0, (2, 1), SEEN_ALL),
                    (1, (2, 1), SEEN_ALL),
                    (2, (0, 1), SEEN_ALL),
                ],
                Some((id(2, 1), 2, 2)),
            ),
            (
                "four agents split two and two: no unique majority",
                &[(0, 1), (1, 1), (2, 1), (3, 1)],
                &[0, 1, 2, 3],
                &[
                    (0, (1, 1), &[1, 1, 1, 1]),
                    (1, (0, 1), &[1, 1, 1, 1]),
                    (2, (0, 1), &[1, 1, 1, 1]),
                    (3, (1, 1), &[1, 1, 1, 1]),
                ],
                None,
            ),
            ("nobody left", ROUND_ONE, &[], &[], None),
        ];
        for (name, answers, live, votes, expected) in cases {
            let got = standing(answers, live, votes).consensus();
            let expected = expected.map(|(answer, votes, eligible)| Winner {
                answer,
                votes,
                eligible,
                by: WinBy::Consensus,
            });
            assert_eq!(got, expected, "{name}");
        }
    }

    #[test]
    fn staleness_uses_what_the_voter_was_shown() {
        // The MassGen example: round 1 three answers; agents 0 and 1 vote for 1 while agent 2
        // answers again. Their votes saw agent 2's first answer, so both are stale and both,
        // with agent 2 (whose latest action is an answer), act in the next round.
        let mut standing = standing(
            ROUND_ONE,
            ALL,
            &[(0, (1, 1), &[1, 1, 1]), (1, (1, 1), &[1, 1, 1])],
        );
        assert_eq!(standing.to_act(), vec![Agent(2)]);
        let answer = standing.record_answer(Agent(2));
        assert_eq!(answer, id(2, 2));
        assert_eq!(standing.to_act(), vec![Agent(0), Agent(1), Agent(2)]);
        let tally = standing.tally();
        assert_eq!(tally.stale, vec![Agent(0), Agent(1)]);
        assert_eq!(tally.waiting, vec![Agent(2)]);
        // A vote that saw the new answer is fresh; one for a replaced answer counts for nothing.
        let vote = |voter: usize, choice| Vote {
            voter: Agent(voter),
            seen: standing.seen_now(),
            choice,
        };
        let fresh = vote(0, id(2, 2));
        assert!(!standing.is_stale(&fresh));
        standing.votes.insert(Agent(0), fresh);
        standing.votes.insert(
            Agent(1),
            Vote {
                voter: Agent(1),
                seen: Seen([(Agent(0), 1), (Agent(1), 1), (Agent(2), 1)].into()),
                choice: id(2, 1),
            },
        );
        let counts: Vec<(AnswerId, usize, usize)> = standing
            .tally()
            .answers
            .iter()
            .map(|count| (count.answer, count.votes, count.fresh))
            .collect();
        assert_eq!(
            counts,
            vec![(id(0, 1), 0, 0), (id(1, 1), 0, 0), (id(2, 2), 1, 1)]
        );
        // A dropped agent no longer has to act.
        standing.live.remove(&Agent(1));
        assert_eq!(standing.to_act(), vec![Agent(2)]);
    }

    /// A plurality case: name, votes `(voter, (agent, revision), seen)`, criteria totals,
    /// and the expected `(winner agent, votes, tie break)`.
    type PluralityCase<'a> = (
        &'a str,
        &'a [(usize, (usize, u32), &'a [u32])],
        BTreeMap<AnswerId, u32>,
        (usize, usize, Option<TieBreak>),
    );

    #[test]
    fn plurality_table() {
        let scores = |list: &[(usize, u32)]| -> BTreeMap<AnswerId, u32> {
            list.iter()
                .map(|(agent, score)| (id(*agent, 1), *score))
                .collect()
        };
        let cases: Vec<PluralityCase> = vec![
            (
                "most votes wins",
                &[
                    (0, (1, 1), SEEN_ALL),
                    (1, (2, 1), SEEN_ALL),
                    (2, (1, 1), SEEN_ALL),
                ],
                scores(&[(2, 30)]),
                (1, 2, None),
            ),
            (
                "a three-way tie goes to the higher criteria score",
                &[
                    (0, (1, 1), SEEN_ALL),
                    (1, (2, 1), SEEN_ALL),
                    (2, (0, 1), SEEN_ALL),
                ],
                scores(&[(0, 20), (1, 24), (2, 22)]),
                (1, 1, Some(TieBreak::CriteriaScore)),
            ),
            (
                "tied scores go to the model given first",
                &[
                    (0, (1, 1), SEEN_ALL),
                    (1, (2, 1), SEEN_ALL),
                    (2, (0, 1), SEEN_ALL),
                ],
                scores(&[(0, 24), (1, 20), (2, 24)]),
                (0, 1, Some(TieBreak::ModelOrder)),
            ),
            (
                "a scored answer beats an unscored one",
                &[
                    (0, (1, 1), SEEN_ALL),
                    (1, (2, 1), SEEN_ALL),
                    (2, (0, 1), SEEN_ALL),
                ],
                scores(&[(2, 1)]),
                (2, 1, Some(TieBreak::CriteriaScore)),
            ),
            (
                // Counting the self-votes would make agent 0 the winner with two votes.
                "self-votes are not counted",
                &[
                    (0, (0, 1), SEEN_ALL),
                    (1, (0, 1), SEEN_ALL),
                    (2, (1, 1), SEEN_ALL),
                ],
                scores(&[(0, 10), (1, 25)]),
                (1, 1, Some(TieBreak::CriteriaScore)),
            ),
            (
                "no votes at all: scores, then model order",
                &[],
                scores(&[]),
                (0, 0, Some(TieBreak::ModelOrder)),
            ),
        ];
        for (name, votes, scores, (agent, count, tie_break)) in cases {
            let winner = standing(ROUND_ONE, ALL, votes).plurality(&scores).unwrap();
            assert_eq!(winner.answer, id(agent, 1), "{name}");
            assert_eq!(winner.votes, count, "{name}");
            assert_eq!(winner.by, WinBy::Plurality { tie_break }, "{name}");
        }
        assert_eq!(Standing::default().plurality(&BTreeMap::new()), None);
    }

    #[test]
    fn the_next_step() {
        let none = BTreeMap::new();
        let agreed = standing(
            ROUND_ONE,
            ALL,
            &[
                (0, (1, 1), &[1, 1, 1]),
                (1, (0, 1), &[1, 1, 1]),
                (2, (1, 1), &[1, 1, 1]),
            ],
        );
        assert!(matches!(
            agreed.next_step(1, 5, &none),
            RunStep::Decided {
                without_consensus: None,
                ..
            }
        ));
        let split = standing(
            ROUND_ONE,
            ALL,
            &[
                (0, (1, 1), &[1, 1, 1]),
                (1, (2, 1), &[1, 1, 1]),
                (2, (0, 1), &[1, 1, 1]),
            ],
        );
        assert!(matches!(
            split.next_step(2, 5, &none),
            RunStep::Decided {
                without_consensus: Some(NoConsensus::Split),
                ..
            }
        ));
        let mut improved = split.clone();
        improved.record_answer(Agent(2));
        assert_eq!(
            improved.next_step(2, 5, &none),
            RunStep::Continue {
                to_act: vec![Agent(0), Agent(1), Agent(2)]
            }
        );
        assert!(matches!(
            split.next_step(5, 5, &none),
            RunStep::Decided {
                without_consensus: Some(NoConsensus::MaxRounds),
                ..
            }
        ));
        // One agent left, voting for its own answer: no consensus can come of more rounds.
        let alone = standing(ROUND_ONE, &[0], &[(0, (0, 1), SEEN_ALL)]);
        assert!(matches!(
            alone.next_step(2, 5, &none),
            RunStep::Decided {
                without_consensus: Some(NoConsensus::TooFewAgents),
                ..
            }
        ));
        let empty = Standing::default();
        assert_eq!(empty.next_step(1, 5, &none), RunStep::NoAnswer);
    }

    #[test]
    fn criteria_totals_are_lower_medians_summed() {
        let judge = |pairs: &[(&str, u8)]| -> BTreeMap<String, u8> {
            pairs
                .iter()
                .map(|(id, score)| ((*id).to_owned(), *score))
                .collect()
        };
        let a = judge(&[("E1", 9), ("E2", 4)]);
        let b = judge(&[("E1", 5), ("E2", 8)]);
        let c = judge(&[("E1", 7), ("E2", 6)]);
        assert_eq!(criteria_total(&[&a]), Some(13));
        assert_eq!(criteria_total(&[&a, &b]), Some(5 + 4));
        assert_eq!(criteria_total(&[&a, &b, &c]), Some(7 + 6));
        assert_eq!(criteria_total(&[]), None);
    }
}
