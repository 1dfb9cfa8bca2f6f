//! The score chart: every criterion's score per round as inline SVG, with the pass mark.
//!
//! SVG drawn on our side, so the chart needs no script, no font and no network, prints, and
//! scales to a phone. Each point carries `data-criterion`, `data-round` and `data-score`, and
//! each grid line its `data-score`, so a test can check the drawn position of every point
//! against the session's scores.

use maud::{Markup, html};

use crate::model::{RoundVerdict, SessionView};

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 300.0;
const LEFT: f64 = 40.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 14.0;
const BOTTOM: f64 = 40.0;
/// Space between the axes and the first and last rounds.
const INSET: f64 = 28.0;

/// Colours that stay apart for the common kinds of colour blindness (Okabe and Ito).
const PALETTE: [&str; 8] = [
    "#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#000000", "#b8a200",
];

/// The colour of the `index`th criterion.
pub(crate) fn color(index: usize) -> &'static str {
    PALETTE[index % PALETTE.len()]
}

fn y_of(score: f64) -> f64 {
    TOP + (10.0 - score) / 10.0 * (HEIGHT - TOP - BOTTOM)
}

fn x_of(index: usize, count: usize) -> f64 {
    let (start, end) = (LEFT + INSET, WIDTH - RIGHT - INSET);
    if count <= 1 {
        return f64::midpoint(start, end);
    }
    #[allow(clippy::cast_precision_loss, reason = "a handful of rounds")]
    let step = (end - start) / (count - 1) as f64;
    #[allow(clippy::cast_precision_loss, reason = "a handful of rounds")]
    let offset = index as f64 * step;
    start + offset
}

fn number(value: f64) -> String {
    format!("{value:.1}")
}

/// The chart, or `None` when no round was scored.
pub(crate) fn chart(view: &SessionView) -> Option<Markup> {
    let rounds = &view.rounds;
    if !rounds.iter().any(|round| !round.scores.is_empty()) {
        return None;
    }
    let count = rounds.len();
    let series_count = view.series.len();
    // Criteria with equal scores in a round sit side by side instead of on top of each other.
    #[allow(clippy::cast_precision_loss, reason = "a handful of criteria")]
    let nudge = |series: usize| (series as f64 - (series_count as f64 - 1.0) / 2.0) * 3.0;
    let cutoff = f64::from(view.cutoff);
    Some(html! {
        svg class="chart" viewBox=(format!("0 0 {WIDTH} {HEIGHT}")) role="img" aria-labelledby="chart-title" xmlns="http://www.w3.org/2000/svg" {
            title id="chart-title" { "Score of every criterion per round; the dashed line is the pass mark (" (view.cutoff) ")" }
            @for score in (0..=10u8).step_by(2) {
                line class="grid" data-score=(score) x1=(number(LEFT)) x2=(number(WIDTH - RIGHT)) y1=(number(y_of(f64::from(score)))) y2=(number(y_of(f64::from(score)))) {}
                text class="tick" x=(number(LEFT - 8.0)) y=(number(y_of(f64::from(score)) + 4.0)) text-anchor="end" { (score) }
            }
            @for (index, round) in rounds.iter().enumerate() {
                @if matches!(round.verdict, RoundVerdict::Unscored(_)) {
                    rect class="unscored" x=(number(x_of(index, count) - 14.0)) y=(number(TOP)) width="28" height=(number(HEIGHT - TOP - BOTTOM)) {
                        title { "Round " (round.round) ": unscored (the evaluation was unusable)" }
                    }
                }
                text class="round-label" x=(number(x_of(index, count))) y=(number(HEIGHT - BOTTOM + 18.0)) text-anchor="middle" { "R" (round.round) }
                @if matches!(round.verdict, RoundVerdict::Unscored(_)) {
                    text class="unscored-label" x=(number(x_of(index, count))) y=(number(HEIGHT - BOTTOM + 32.0)) text-anchor="middle" { "unscored" }
                }
            }
            line class="pass" data-score=(view.cutoff) x1=(number(LEFT)) x2=(number(WIDTH - RIGHT)) y1=(number(y_of(cutoff))) y2=(number(y_of(cutoff))) stroke-dasharray="6 4" {}
            text class="pass-label" x=(number(WIDTH - RIGHT)) y=(number(y_of(cutoff) - 5.0)) text-anchor="end" { "pass " (view.cutoff) }
            @for (series, criterion) in view.series.iter().enumerate() {
                @let id = &criterion.shown;
                g class="series" data-criterion=(id) {
                    @for segment in segments(view, &criterion.key) {
                        @if segment.len() > 1 {
                            polyline fill="none" stroke=(color(series)) stroke-width="2" points=(segment.iter().map(|(index, score)| format!("{},{}", number(x_of(*index, count) + nudge(series)), number(y_of(f64::from(*score))))).collect::<Vec<_>>().join(" ")) {}
                        }
                        @for (index, score) in &segment {
                            circle class="point" cx=(number(x_of(*index, count) + nudge(series))) cy=(number(y_of(f64::from(*score)))) r="4.5" fill=(color(series)) data-criterion=(id) data-round=(rounds[*index].round) data-score=(score) {
                                title { (id) " · round " (rounds[*index].round) ": " (score) }
                            }
                        }
                    }
                }
            }
        }
    })
}

/// The runs of consecutive scored rounds of criterion `id`, as (round index, score); an
/// unscored round breaks the line.
fn segments(view: &SessionView, id: &str) -> Vec<Vec<(usize, u8)>> {
    let mut segments: Vec<Vec<(usize, u8)>> = vec![Vec::new()];
    for (index, round) in view.rounds.iter().enumerate() {
        match round.scores.get(id) {
            Some(score) => {
                if let Some(last) = segments.last_mut() {
                    last.push((index, *score));
                }
            }
            None => segments.push(Vec::new()),
        }
    }
    segments.retain(|segment| !segment.is_empty());
    segments
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_map_onto_the_plot_and_rounds_spread_evenly() {
        assert!((y_of(10.0) - TOP).abs() < 1e-9);
        assert!((y_of(0.0) - (HEIGHT - BOTTOM)).abs() < 1e-9);
        assert!((x_of(0, 1) - x_of(0, 1)).abs() < 1e-9);
        assert!((x_of(0, 3) - (LEFT + INSET)).abs() < 1e-9);
        assert!((x_of(2, 3) - (WIDTH - RIGHT - INSET)).abs() < 1e-9);
    }
}
