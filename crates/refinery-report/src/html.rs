//! The page: one HTML file with its CSS, script and chart inline.
//!
//! maud escapes every interpolated value, and every value that comes from the session is a
//! scrubbed [`Text`]; the only unescaped strings are our own stylesheet and script. A
//! Content-Security-Policy allows exactly those two (by hash) and nothing else: no request can
//! leave the page, and markup that slipped into model text could not run or load anything.

use std::fmt::Write as _;

use base64::Engine as _;
use maud::{DOCTYPE, Markup, PreEscaped, html};
use sha2::{Digest as _, Sha256};

use crate::chart;
use crate::diff::{DiffBody, FileChange};
use crate::files::SpendFile;
use crate::format::{bytes, duration_ms, money, tokens};
use crate::model::{
    Decision, JudgeView, PhaseCost, RoundCost, RoundVerdict, RoundView, Series, SessionView,
    StepView,
};
use crate::scrub::Text;

const STYLE: &str = include_str!("../assets/report.css");
const SCRIPT: &str = include_str!("../assets/report.js");

fn csp_hash(source: &str) -> String {
    let digest = Sha256::digest(source.as_bytes());
    format!(
        "'sha256-{}'",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

/// The whole page.
pub(crate) fn page(view: &SessionView) -> String {
    let policy = format!(
        "default-src 'none'; style-src {}; script-src {}; base-uri 'none'; form-action 'none'",
        csp_hash(STYLE),
        csp_hash(SCRIPT)
    );
    let title = view
        .task
        .as_ref()
        .filter(|task| !task.is_blank())
        .unwrap_or(&view.label);
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta http-equiv="Content-Security-Policy" content=(policy);
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="referrer" content="no-referrer";
                meta name="generator" content=(concat!("refinery ", env!("CARGO_PKG_VERSION")));
                title { "Refinery report · " (view.id) }
                style { (PreEscaped(STYLE)) }
            }
            body {
                (header(view, title))
                main {
                    (summary(view))
                    (task_and_criteria(view))
                    (scores(view))
                    (rounds(view))
                    (learnings(view))
                    (deliverable(view))
                    (notes(view))
                }
                footer {
                    "Written by refinery " (env!("CARGO_PKG_VERSION")) " from the files of session " code { (view.id) }
                    ". Self-contained: it loads nothing from anywhere. Secrets found in the session's text are shown as [REDACTED]."
                }
                script { (PreEscaped(SCRIPT)) }
            }
        }
    }
    .into_string()
}

fn header(view: &SessionView, title: &Text) -> Markup {
    html! {
        header {
            h1 { "Refinery report" }
            p.subtitle { (first_line(title)) }
            p.status {
                span class=(format!("badge {}", view.status.tone.class())) id="status" { (view.status.headline) }
            }
            @if let Some(detail) = &view.status.detail {
                pre { (detail) }
            }
            dl.meta {
                dt { "Session" } dd { code { (view.id) } }
                dt { "Started" } dd { (view.created_at) }
                dt { "Driven by" } dd { (view.driver.label()) }
                dt { "Pass mark" } dd { "every criterion " (view.cutoff) " or more" }
            }
            nav.toc {
                a href="#summary" { "Summary" }
                a href="#task" { "Task and criteria" }
                a href="#scores" { "Scores" }
                a href="#rounds" { "Rounds" }
                @if view.learnings.is_some() { a href="#learnings" { "Learnings" } }
                a href="#deliverable" { "Deliverable" }
            }
            div #controls hidden {
                button #expand-all type="button" { "Expand all" }
                button #collapse-all type="button" { "Collapse all" }
            }
        }
    }
}

fn first_line(text: &Text) -> String {
    let line = text.as_str().lines().next().unwrap_or_default();
    let short: String = line.chars().take(160).collect();
    if short.len() < line.len() {
        format!("{short}…")
    } else {
        short
    }
}

fn spend_line(spend: &SpendFile) -> String {
    let mut text = format!(
        "{} · {} in / {} out tokens · {} call{}",
        money(spend.usd),
        tokens(spend.input_tokens),
        tokens(spend.output_tokens),
        spend.calls,
        if spend.calls == 1 { "" } else { "s" }
    );
    if spend.unknown_cost_calls > 0 {
        let _ = write!(text, " ({} of unknown cost)", spend.unknown_cost_calls);
    }
    text
}

fn summary(view: &SessionView) -> Markup {
    let last_scored = view
        .rounds
        .iter()
        .rev()
        .find(|round| !round.scores.is_empty());
    html! {
        section #summary {
            h2 { "Summary" }
            div.cards {
                div.card {
                    div.label { "Rounds" }
                    div.value { (view.rounds.len()) }
                }
                div.card {
                    div.label { "Last scores" }
                    @if let Some(round) = last_scored {
                        div.value {
                            @for criterion in &view.series {
                                @if let Some(score) = round.scores.get(&criterion.key) {
                                    span.mono { (criterion.shown) " " (score) } " "
                                }
                            }
                        }
                        div.muted { "round " (round.round) " → " (round.verdict.label()) }
                    } @else {
                        div.value { "none" }
                    }
                }
                div.card {
                    div.label { "Cost" }
                    @if let Some(spend) = &view.totals.spend {
                        div.value { (money(spend.usd)) }
                        div.muted { (spend_line(spend)) }
                    } @else {
                        div.value { "not measured" }
                        div.muted { "the driver reports no spending" }
                    }
                }
                div.card {
                    div.label { "Time" }
                    @match (view.totals.active_ms, view.totals.wall_ms) {
                        (Some(active), _) => {
                            div.value { (duration_ms(i64::try_from(active).unwrap_or(i64::MAX))) }
                            div.muted { "active time" }
                        }
                        (None, Some(wall)) => {
                            div.value { (duration_ms(wall)) }
                            div.muted { "first to last record" }
                        }
                        (None, None) => { div.value { "unknown" } }
                    }
                }
            }
            @if let Some(location) = &view.deliverable.location {
                p { strong { "Deliverable: " } (location) }
            }
        }
    }
}

fn task_and_criteria(view: &SessionView) -> Markup {
    html! {
        section #task {
            h2 { "Task and criteria" }
            @match &view.task {
                Some(task) => pre.task { (task) },
                None => p.muted { "The driver did not record the task; the session's label is “" (view.label) "”." },
            }
            @if !view.settings.is_empty() {
                dl.meta {
                    @for (name, value) in &view.settings {
                        dt { (name) } dd { code { (value) } }
                    }
                }
            }
            @if view.criteria.is_empty() {
                p.muted { "No criteria were stored." }
            } @else {
                @if let Some(source) = view.criteria_source {
                    p.muted { "Criteria " (source) "." }
                }
                div.scroll {
                    table #criteria {
                        thead { tr { th { "ID" } th { "Tier" } th { "Criterion" } } }
                        tbody {
                            @for criterion in &view.criteria {
                                tr {
                                    td.mono { (criterion.id) }
                                    td { (criterion.tier) }
                                    td {
                                        (criterion.text)
                                        @if !criterion.anti_patterns.is_empty() {
                                            div.anti {
                                                "Anti-patterns: "
                                                @for (index, pattern) in criterion.anti_patterns.iter().enumerate() {
                                                    @if index > 0 { "; " }
                                                    (pattern)
                                                }
                                            }
                                        }
                                        @if let Some(verify) = &criterion.verify_by {
                                            div.anti { "Check: " (verify) }
                                        }
                                        @if criterion.rationale.is_some() || !criterion.anchors.is_empty() {
                                            details {
                                                summary { "Why and score anchors" }
                                                @if let Some(rationale) = &criterion.rationale { p { (rationale) } }
                                                @if !criterion.anchors.is_empty() {
                                                    ul { @for (score, text) in &criterion.anchors { li { strong { (score) } ": " (text) } } }
                                                }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn scores(view: &SessionView) -> Markup {
    html! {
        section #scores {
            h2 { "Scores" }
            @match chart::chart(view) {
                Some(chart) => {
                    figure {
                        (chart)
                        figcaption {
                            ul.legend {
                                @for (index, series) in view.series.iter().enumerate() {
                                    @let id = &series.shown;
                                    li data-legend=(id) tabindex="0" {
                                        svg.swatch viewBox="0 0 12 12" aria-hidden="true" { rect width="12" height="12" rx="2" fill=(chart::color(index)) {} }
                                        span.mono { (id) }
                                        @if let Some(criterion) = view.criteria.iter().find(|criterion| criterion.id == *id) {
                                            span { (first_line(&criterion.text)) }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
                None => p.muted { "No round has been scored." },
            }
            (score_table(view))
        }
    }
}

fn score_table(view: &SessionView) -> Markup {
    html! {
        @if !view.rounds.is_empty() {
            div.scroll {
                table #score-table {
                    thead {
                        tr {
                            th { "Criterion" }
                            @for round in &view.rounds { th.num { "R" (round.round) } }
                        }
                    }
                    tbody {
                        @for series in &view.series {
                            @let id = &series.key;
                            tr {
                                td.mono { (series.shown) }
                                @for (index, round) in view.rounds.iter().enumerate() {
                                    @match round.scores.get(id) {
                                        Some(score) => {
                                            td.num.pass[*score >= view.cutoff].fail[*score < view.cutoff] {
                                                (score)
                                                @if let Some(before) = index.checked_sub(1).and_then(|previous| view.rounds[previous].scores.get(id)) {
                                                    @let delta = i16::from(*score) - i16::from(*before);
                                                    " " span.delta { (delta_text(delta)) }
                                                }
                                            }
                                        }
                                        None => td.num.none { "–" },
                                    }
                                }
                            }
                        }
                        tr {
                            td { "verdict" }
                            @for round in &view.rounds { td.num { (round.verdict.label()) } }
                        }
                    }
                }
            }
        }
    }
}

/// `+2`, `±0`, `-1`.
fn delta_text(delta: i16) -> String {
    match delta.cmp(&0) {
        std::cmp::Ordering::Greater => format!("+{delta}"),
        std::cmp::Ordering::Equal => "±0".to_owned(),
        std::cmp::Ordering::Less => delta.to_string(),
    }
}

fn rounds(view: &SessionView) -> Markup {
    html! {
        section #rounds {
            h2 { "Rounds" }
            @if let Some(setup) = &view.totals.setup {
                p.muted { "Before round 1, " (setup.label) ": " (phase_numbers(setup)) "." }
            }
            @if view.rounds.is_empty() {
                p.muted { "No round was submitted." }
            }
            @for round in &view.rounds {
                (round_article(view, round))
            }
        }
    }
}

fn round_article(view: &SessionView, round: &RoundView) -> Markup {
    html! {
        article.round id=(format!("round-{}", round.round)) {
            h3 {
                "Round " (round.round)
                span class=(format!("badge {}", round.verdict.tone().class())) { (round.verdict.label()) }
            }
            (why(round))
            (checks(round))
            (judgement(view, round))
            (cost(&round.cost))
            (changes(round))
            @if round.builder_summary.is_some() || round.lessons.is_some() {
                (builder_notes(round))
            }
        }
    }
}

fn why(round: &RoundView) -> Markup {
    html! {
        div.verdict-why {
            @if let RoundVerdict::Unscored(reason) = &round.verdict {
                p { "The evaluation was unusable, so the round counts as iterate and no scores were invented: " (reason) }
            }
            @if let Some(explanation) = &round.explanation { p { (explanation) } }
            @if !round.failing.is_empty() {
                p { "Below the pass mark: "
                    @for (index, id) in round.failing.iter().enumerate() {
                        @if index > 0 { ", " }
                        span.mono { (id) }
                        @if let Some(score) = round.scores.get(id.as_str()) { " (" (score) ")" }
                    }
                }
            }
            @if !round.plateaued.is_empty() {
                p { "Plateau (gained at most one point in each of the last two rounds): "
                    @for (index, (id, series)) in round.plateaued.iter().enumerate() {
                        @if index > 0 { "; " }
                        span.mono { (id) } " " (series.iter().map(ToString::to_string).collect::<Vec<_>>().join(" → "))
                    }
                }
            }
            @match &round.decision {
                Some(Decision::Converged) => p { strong { "Next: " } "converged; the loop ended here." },
                Some(Decision::Continue { change_approach_for }) if change_approach_for.is_empty() => p { strong { "Next: " } "another round." },
                Some(Decision::Continue { change_approach_for }) => p { strong { "Next: " } "another round, with a forced change of approach for "
                    @for (index, id) in change_approach_for.iter().enumerate() { @if index > 0 { ", " } span.mono { (id) } } "." },
                Some(Decision::Stop(reason)) => p { strong { "Next: " } "stop: " (reason) "." },
                None => {},
            }
            @if !round.plan.is_empty() {
                h4 { "Improvement plan for the next round" }
                (step_list(&round.plan))
                @if let Some(vision) = &round.plan_vision { p { strong { "Vision: " } (vision) } }
            }
        }
    }
}

fn step_list(steps: &[StepView]) -> Markup {
    html! {
        ol {
            @for step in steps {
                li { span.mono { (step.criterion) } " " span.muted { "(" (step.impact) ")" } " " (step.change) }
            }
        }
    }
}

fn checks(round: &RoundView) -> Markup {
    html! {
        @if !round.verify.is_empty() {
            h4 { "Checks" @if round.fix_attempted { " " span.muted { "(after one fix attempt)" } } }
            div.scroll {
                table.verify {
                    thead { tr { th { "Command" } th { "Result" } th.num { "Time" } } }
                    tbody {
                        @for check in &round.verify {
                            tr {
                                td {
                                    code { (check.command) }
                                    @if !check.output.is_blank() {
                                        details { summary { "output" } pre { (check.output) } }
                                    }
                                }
                                td class=(if check.passed { "pass" } else { "fail" }) {
                                    @if check.passed { "passed" } @else if check.timed_out { "timed out" } @else {
                                        "failed (exit " (check.exit_code.map_or_else(|| "none".to_owned(), |code| code.to_string())) ")"
                                    }
                                }
                                td.num { (duration_ms(i64::try_from(check.duration_ms).unwrap_or(i64::MAX))) }
                            }
                        }
                    }
                }
            }
        }
        @if let Some(guard) = &round.regression {
            h4 { "Regression guard" }
            p {
                @match guard.action.as_str() {
                    "accepted" => "No criterion got worse than in the previous round (compared blind, in both orders).",
                    "repaired" => "Worse in both blind orders, then repaired by the builder: ",
                    "reverted" => "Still worse after one repair, so the workspace went back to the previous round's files: ",
                    "guard_unusable" => "The guard's output was unusable; the round was submitted unchecked.",
                    _ => { (guard.action) }
                }
                @for (index, id) in guard.regressed.iter().enumerate() { @if index > 0 { ", " } span.mono { (id) } }
            }
            @if !guard.reasoning.is_blank() {
                details { summary { "The guard's reasoning" } pre { (guard.reasoning) } }
            }
        }
    }
}

fn judgement(view: &SessionView, round: &RoundView) -> Markup {
    let ids: Vec<&Series> = view
        .series
        .iter()
        .filter(|id| round.scores.contains_key(&id.key) || round.evidence.contains_key(&id.key))
        .collect();
    html! {
        @if !ids.is_empty() {
            h4 { "Evidence" @if round.judges.len() > 1 { " " span.muted { "(the panel's combined scores: the lower median per criterion)" } } }
            div.scroll {
                table.evidence {
                    thead { tr { th { "Criterion" } th.num { "Score" } th { "Why and evidence" } } }
                    tbody {
                        @for id in &ids {
                            tr {
                                td.mono { (id.shown) }
                                @match round.scores.get(&id.key) {
                                    Some(score) => td.num.pass[*score >= view.cutoff].fail[*score < view.cutoff] { (score) },
                                    None => td.num.none { "–" },
                                }
                                td {
                                    @if let Some(reasoning) = round.reasoning.get(&id.key) { p { (reasoning) } }
                                    @if let Some(items) = round.evidence.get(&id.key).filter(|items| !items.is_empty()) {
                                        ul { @for item in items { li { (item) } } }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        @if round.judges.len() > 1 { (panel(view, round, &round.judges)) }
        @if let Some(critique) = &round.critique {
            h4 { "Critique" }
            pre { (critique) }
        }
        @if !round.improvement_spec.is_empty() {
            h4 { "What to change next" }
            (step_list(&round.improvement_spec))
        }
        @if !round.preserve.is_empty() {
            h4 { "What to keep" }
            ul { @for item in &round.preserve { li { (item) } } }
        }
        @if let Some((path, content)) = &round.report_file {
            h4 { "Evaluator's report" }
            p.mono { (path) }
            @if let Some(content) = content {
                details { summary { "Show the report" } pre { (content) } }
            }
        }
    }
}

fn panel(view: &SessionView, round: &RoundView, judges: &[JudgeView]) -> Markup {
    let ids: Vec<&Series> = view
        .series
        .iter()
        .filter(|id| {
            judges
                .iter()
                .any(|judge| judge.scores.contains_key(&id.key))
        })
        .collect();
    html! {
        h4 { "Judges" }
        div.scroll {
            table.panel {
                thead {
                    tr {
                        th { "Judge" }
                        @for id in &ids { th.num { (id.shown) } }
                    }
                }
                tbody {
                    @for judge in judges {
                        tr {
                            td.mono { (judge.name) }
                            @if let Some(problem) = &judge.problem {
                                td colspan=(ids.len().max(1)) class="fail" { "unusable: " (problem) }
                            } @else {
                                @for id in &ids {
                                    @match judge.scores.get(&id.key) {
                                        Some(score) => td.num.pass[*score >= view.cutoff].fail[*score < view.cutoff] { (score) },
                                        None => td.num.none { "–" },
                                    }
                                }
                            }
                        }
                    }
                    tr.spread {
                        td { "spread" }
                        @for id in &ids {
                            @let values: Vec<u8> = judges.iter().filter_map(|judge| judge.scores.get(&id.key).copied()).collect();
                            td.num {
                                @match (values.iter().min(), values.iter().max()) {
                                    (Some(low), Some(high)) if low == high => { (low) }
                                    (Some(low), Some(high)) => { (low) "–" (high) " " span.delta { "(" (high - low) ")" } }
                                    _ => "–",
                                }
                            }
                        }
                    }
                    tr {
                        td { "decides" }
                        @for id in &ids {
                            td.num { (round.scores.get(&id.key).map_or_else(|| "–".to_owned(), ToString::to_string)) }
                        }
                    }
                }
            }
        }
        @for judge in judges {
            @if judge.critique.is_some() || !judge.evidence.is_empty() {
                details {
                    summary { "What " span.mono { (judge.name) } " said" }
                    @if let Some(critique) = &judge.critique { pre { (critique) } }
                    @for series in &view.series {
                        @if let Some(items) = judge.evidence.get(&series.key).filter(|items| !items.is_empty()) {
                            p { span.mono { (series.shown) } }
                            ul { @for item in items { li { (item) } } }
                        }
                    }
                }
            }
        }
    }
}

fn phase_numbers(phase: &PhaseCost) -> String {
    let mut parts = Vec::new();
    if let Some(wall) = phase.wall_ms {
        parts.push(duration_ms(wall));
    }
    if let Some(spend) = &phase.spend {
        parts.push(spend_line(spend));
    }
    if parts.is_empty() {
        "not recorded".to_owned()
    } else {
        parts.join(" · ")
    }
}

fn cost(cost: &RoundCost) -> Markup {
    html! {
        h4 { "Time and cost" @if cost.coarse_times { " " span.muted { "(times from the journal, to the second; spending not measured)" } } }
        div.scroll {
            table.cost {
                thead { tr { th { "Phase" } th.num { "Time" } th.num { "Cost" } th.num { "Tokens in / out" } th.num { "Calls" } } }
                tbody {
                    @for phase in &cost.phases {
                        tr { (cost_row(phase.label.as_str(), phase.wall_ms, phase.spend.as_ref())) }
                    }
                    tr.total {
                        (cost_row("whole round", cost.wall_ms, cost.spend.as_ref()))
                    }
                }
            }
        }
        @if let Some(builder) = &cost.builder {
            p.muted {
                "Builder: " (builder.tool_calls) " tool call" (if builder.tool_calls == 1 { "" } else { "s" })
                @if !builder.by_tool.is_empty() {
                    " ("
                    @for (index, (tool, count)) in builder.by_tool.iter().enumerate() {
                        @if index > 0 { ", " }
                        (tool) " " (count)
                    }
                    ")"
                }
                ", " (builder.tool_errors) " failed, " (builder.repeated_calls) " repeated, "
                (tokens(builder.input_tokens)) " in / " (tokens(builder.output_tokens)) " out tokens, "
                (duration_ms(i64::try_from(builder.duration_ms).unwrap_or(i64::MAX)))
            }
        }
    }
}

fn cost_row(label: &str, wall_ms: Option<i64>, spend: Option<&SpendFile>) -> Markup {
    html! {
        td { (label) }
        td.num { (wall_ms.map_or_else(|| "–".to_owned(), duration_ms)) }
        td.num { (spend.map_or_else(|| "–".to_owned(), |spend| money(spend.usd))) }
        td.num { (spend.map_or_else(|| "–".to_owned(), |spend| format!("{} / {}", tokens(spend.input_tokens), tokens(spend.output_tokens)))) }
        td.num { (spend.map_or_else(|| "–".to_owned(), |spend| spend.calls.to_string())) }
    }
}

fn changes(round: &RoundView) -> Markup {
    html! {
        @if round.submitted.is_some() || !round.changes.is_empty() {
            h4 { "Files changed" span.muted { " (against " (round.changes_against) ")" } }
            @if let Some((files, size)) = round.submitted {
                p.muted { "Snapshot: " (files) " file" (if files == 1 { "" } else { "s" }) ", " (bytes(size)) "." }
            }
            @if round.changes.is_empty() {
                p.muted { "No file changed." }
            }
            @for change in &round.changes {
                (file_change(change))
            }
        }
    }
}

fn file_change(change: &FileChange) -> Markup {
    let sizes = match (change.old_size, change.new_size) {
        (Some(old), Some(new)) => format!("{} → {}", bytes(old), bytes(new)),
        (None, Some(new)) => bytes(new),
        (Some(old), None) => bytes(old),
        (None, None) => String::new(),
    };
    html! {
        details.file-change {
            summary { span.mono { (change.path) } " " span.muted { (change.kind.label()) ", " (sizes) } }
            @match &change.body {
                DiffBody::Unified { text, truncated } => {
                    pre.diff {
                        @for line in text.as_str().lines() {
                            span class=(diff_class(line)) { (line) } "\n"
                        }
                    }
                    @if *truncated { p.muted { "The diff was cut here to keep the report small." } }
                }
                DiffBody::Omitted(reason) => p.muted { "Not shown: " (reason) "." },
            }
        }
    }
}

fn diff_class(line: &str) -> &'static str {
    if line.starts_with("+++") || line.starts_with("---") {
        "file"
    } else if line.starts_with('+') {
        "add"
    } else if line.starts_with('-') {
        "del"
    } else if line.starts_with("@@") {
        "hunk"
    } else {
        "ctx"
    }
}

fn builder_notes(round: &RoundView) -> Markup {
    html! {
        details {
            summary { "Builder's summary and lessons" }
            @if let Some(summary) = &round.builder_summary { pre { (summary) } }
            @if let Some(lessons) = &round.lessons {
                @for (title, items) in [("Keep doing", &lessons.keep_doing), ("Stop doing", &lessons.stop_doing), ("Critical errors", &lessons.critical_errors)] {
                    @if !items.is_empty() {
                        p { strong { (title) } }
                        ul { @for item in items { li { (item) } } }
                    }
                }
            }
        }
    }
}

fn learnings(view: &SessionView) -> Markup {
    html! {
        @if let Some(learnings) = &view.learnings {
            section #learnings {
                h2 { "Learnings" }
                pre { (learnings) }
            }
        }
    }
}

fn deliverable(view: &SessionView) -> Markup {
    let deliverable = &view.deliverable;
    html! {
        section #deliverable {
            h2 { "Deliverable" }
            @if let Some(location) = &deliverable.location { p { (location) } }
            @if let Some(restore) = &deliverable.restore {
                p { "Any round's files come back byte-identical with " code { (restore) } "." }
            }
            @if !deliverable.files.is_empty() {
                details {
                    summary { (deliverable.files.len() + deliverable.more_files) " file" (if deliverable.files.len() + deliverable.more_files == 1 { "" } else { "s" }) " in the last snapshot" }
                    ul {
                        @for (path, size) in &deliverable.files { li { span.mono { (path) } " " span.muted { (bytes(*size)) } } }
                        @if deliverable.more_files > 0 { li.muted { "and " (deliverable.more_files) " more" } }
                    }
                }
            }
        }
    }
}

fn notes(view: &SessionView) -> Markup {
    html! {
        @if !view.notes.is_empty() {
            section #notes {
                h2 { "Left out" }
                p { "Some of the session's files could not be read, so the report shows less about them:" }
                ul { @for note in &view.notes { li { (note) } } }
            }
        }
    }
}
