//! Recognising Claude Code's plan-approval dialog on a captured tmux screen.
//!
//! The dialog (Claude Code 2.1.330, with `showClearContextOnPlanAccept`) ends with
//! "Would you like to proceed?" followed by numbered options; the focused option is the row
//! starting with `❯`. Only when that row is option 1, "Yes, clear context …", may the watcher
//! press Enter: any other focused row would approve the plan *without* clearing the context
//! (or send feedback), which is the user's choice, not ours.

/// What the screen shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Dialog {
    /// No plan-approval dialog.
    Absent,
    /// The dialog, with "Yes, clear context" focused: pressing Enter is safe.
    ClearContextSelected,
    /// The dialog (or the simplified "Exit plan mode?" one) with another row focused.
    OtherSelected(String),
    /// The dialog's question is visible but no focused row could be found.
    Unrecognised,
}

const QUESTION: &str = "Would you like to proceed?";
const SIMPLIFIED_QUESTION: &str = "Exit plan mode?";
const CLEAR_CONTEXT: &str = "Yes, clear context";
const FOCUS_MARKER: char = '❯';

/// Classifies a screen captured with `tmux capture-pane -p -J`. Only the text after the last
/// question counts, so an old dialog left higher up (or the phrase inside a plan) is ignored.
pub(crate) fn classify(screen: &str) -> Dialog {
    let lines: Vec<&str> = screen.lines().collect();
    let question = lines
        .iter()
        .rposition(|line| line.contains(QUESTION) || line.trim() == SIMPLIFIED_QUESTION);
    let Some(question) = question else {
        return Dialog::Absent;
    };
    let focused = lines[question + 1..]
        .iter()
        .map(|line| line.trim_start())
        .find_map(|line| line.strip_prefix(FOCUS_MARKER));
    let Some(label) = focused else {
        return Dialog::Unrecognised;
    };
    let label = label.trim();
    let option = label
        .split_once(". ")
        .map_or(label, |(number, rest)| {
            if number.chars().all(|ch| ch.is_ascii_digit()) {
                rest
            } else {
                label
            }
        })
        .trim();
    if option.starts_with(CLEAR_CONTEXT) {
        Dialog::ClearContextSelected
    } else {
        Dialog::OtherSelected(label.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;
    use std::fmt::Write as _;

    /// The dialog as Claude Code 2.1.330 draws it in a 160x50 pane (see
    /// shared/reference/claude-code-and-mcp.md A10), with the focus on `focused` (1-based).
    fn plan_dialog(focused: usize) -> String {
        let options = [
            "1. Yes, clear context (0% used) and use auto mode",
            "2. Yes, and use auto mode",
            "3. Yes, manually approve edits",
            "4. Tell Claude what to change",
        ];
        let mut screen = String::from(
            " ▐▛███▜▌   Claude Code v2.1.330\n\n> /refinery:refine \"Build a landing page\"\n\n   Ready to code?\n   Here is Claude's plan:\n  ╌╌╌╌╌╌╌╌╌╌╌╌╌╌╌╌╌╌╌╌╌╌╌╌╌╌╌╌╌╌╌╌\n   Continue the Refinery loop. Run the Skill refinery:refine with arguments --continue 20261124_010000_landing-page\n  ╌╌╌╌╌╌╌╌╌╌╌╌╌╌╌╌╌╌╌╌╌╌╌╌╌╌╌╌╌╌╌╌\n   Claude has written up a plan and is ready to execute. Would you like to proceed?\n\n",
        );
        for (index, option) in options.iter().enumerate() {
            let marker = if index + 1 == focused { "❯" } else { " " };
            let _ = writeln!(screen, "   {marker} {option}");
        }
        screen.push_str("        shift+tab to approve with this feedback\n\n   ctrl+g to edit in Vim · ~/.claude/plans/make-a-plan-to-fluttering-spark.md\n");
        screen
    }

    /// Screens captured with `tmux capture-pane -p -J` from Claude Code 2.1.330 in a 200x50
    /// pane, against the loopback fake model, with `showClearContextOnPlanAccept`: the plan
    /// dialog with each option focused (Down pressed between captures), the screen right
    /// after "Yes, clear context" was chosen by `refinery tmux watch`, and an MCP tool
    /// permission prompt (blank lines removed).
    #[test]
    fn classifies_real_claude_code_screens() {
        let table = [
            (
                include_str!("screens/plan-dialog-focus-1.txt"),
                Dialog::ClearContextSelected,
            ),
            (
                include_str!("screens/plan-dialog-focus-2.txt"),
                Dialog::OtherSelected("2. Yes, and use auto mode".to_owned()),
            ),
            (
                include_str!("screens/plan-dialog-focus-3.txt"),
                Dialog::OtherSelected("3. Yes, manually approve edits".to_owned()),
            ),
            (
                include_str!("screens/plan-dialog-focus-4.txt"),
                Dialog::OtherSelected("4. Tell Claude what to change".to_owned()),
            ),
            (
                include_str!("screens/after-clear-context.txt"),
                Dialog::Absent,
            ),
        ];
        for (index, (screen, expected)) in table.into_iter().enumerate() {
            assert_eq!(classify(screen), expected, "screen {index}");
        }
    }

    #[test]
    fn classifies_dialog_variants() {
        let table: Vec<(&str, String, Dialog)> = vec![
            ("focus on clear context", plan_dialog(1), Dialog::ClearContextSelected),
            (
                "focus on keep-context auto mode",
                plan_dialog(2),
                Dialog::OtherSelected("2. Yes, and use auto mode".to_owned()),
            ),
            (
                "focus on manual approval",
                plan_dialog(3),
                Dialog::OtherSelected("3. Yes, manually approve edits".to_owned()),
            ),
            (
                "focus on feedback",
                plan_dialog(4),
                Dialog::OtherSelected("4. Tell Claude what to change".to_owned()),
            ),
            (
                "other mode wording",
                "Would you like to proceed?\n ❯ 1. Yes, clear context and bypass permissions\n   2. Yes, and bypass permissions\n".to_owned(),
                Dialog::ClearContextSelected,
            ),
            (
                "simplified dialog without a plan file",
                "Exit plan mode?\nClaude wants to exit plan mode\n❯ 1. Yes, and switch to default (ask each time) for this session\n  2. No\n".to_owned(),
                Dialog::OtherSelected("1. Yes, and switch to default (ask each time) for this session".to_owned()),
            ),
            (
                "question without a focused row (still drawing)",
                "   Claude has written up a plan and is ready to execute. Would you like to proceed?\n\n".to_owned(),
                Dialog::Unrecognised,
            ),
            (
                "ordinary conversation",
                "> build it\n⏺ Write(index.html)\n  ⎿  Wrote 42 lines\n\n> \n".to_owned(),
                Dialog::Absent,
            ),
            ("empty pane", String::new(), Dialog::Absent),
            (
                "a stale dialog above a newer one with another focus",
                format!("{}\n{}", plan_dialog(1), plan_dialog(2)),
                Dialog::OtherSelected("2. Yes, and use auto mode".to_owned()),
            ),
            (
                "the option text without its question (e.g. quoted in a plan)",
                "I will choose ❯ 1. Yes, clear context next time\n".to_owned(),
                Dialog::Absent,
            ),
        ];
        for (name, screen, expected) in table {
            assert_eq!(classify(&screen), expected, "{name}");
        }
    }
}
