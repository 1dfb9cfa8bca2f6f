//! The event parsers on streams recorded from the real CLIs against the fake
//! (`tests/fixtures/agent-events/`, rewritten with `REFINERY_RECORD_FIXTURES=1`).

use pretty_assertions::assert_eq;
use refinery_llm::{AgentCli, AgentEvent, Cost, EventParser, Usage};

use crate::agents::fixtures_dir;

fn parse(cli: AgentCli, scenario: &str) -> Vec<AgentEvent> {
    let path = fixtures_dir().join(format!("{}-{scenario}.jsonl", cli.program()));
    let text = fs_err::read_to_string(path).unwrap();
    let mut parser = EventParser::new(cli);
    text.lines()
        .flat_map(|line| parser.parse_line(line))
        .collect()
}

fn tool_names(events: &[AgentEvent]) -> Vec<String> {
    events
        .iter()
        .filter_map(|event| match event {
            AgentEvent::ToolUse { name, .. } => Some(name.clone()),
            _ => None,
        })
        .collect()
}

fn texts(events: &[AgentEvent]) -> String {
    events
        .iter()
        .filter_map(|event| match event {
            AgentEvent::Text { text } => Some(text.as_str()),
            _ => None,
        })
        .collect()
}

fn result(events: &[AgentEvent]) -> Option<(String, Option<Usage>, Cost, bool)> {
    events.iter().rev().find_map(|event| match event {
        AgentEvent::Result {
            text,
            usage,
            cost,
            is_error,
            ..
        } => Some((text.clone(), *usage, *cost, *is_error)),
        _ => None,
    })
}

fn summed_usage(events: &[AgentEvent]) -> Option<Usage> {
    events
        .iter()
        .fold(None, |sum: Option<Usage>, event| match event {
            AgentEvent::Usage { usage } => {
                let mut sum = sum.unwrap_or_default();
                sum.add(*usage);
                Some(sum)
            }
            _ => sum,
        })
}

fn fatal_errors(events: &[AgentEvent]) -> Vec<String> {
    events
        .iter()
        .filter_map(|event| match event {
            AgentEvent::Error {
                message,
                fatal: true,
            } => Some(message.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn write_file_runs() {
    let usage = Usage {
        input_tokens: 2200,
        output_tokens: 80,
        cached_input_tokens: 400,
    };
    // cli, tool the scripted model called, usage from the result event, from step events
    let cases = [
        (AgentCli::Claude, "Write", Some(usage), None),
        (AgentCli::Codex, "command_execution", None, Some(usage)),
        (AgentCli::Gemini, "write_file", Some(usage), None),
        (AgentCli::Copilot, "create", None, None),
    ];
    for (cli, tool, result_usage, step_usage) in cases {
        let events = parse(cli, "write-file");
        assert!(
            matches!(
                events.first(),
                Some(AgentEvent::Started {
                    session_id: Some(_),
                    ..
                })
            ) || cli == AgentCli::Copilot,
            "{cli:?}: {events:#?}"
        );
        assert_eq!(tool_names(&events), [tool], "{cli:?}");
        let results: Vec<bool> = events
            .iter()
            .filter_map(|event| match event {
                AgentEvent::ToolResult { is_error, .. } => Some(*is_error),
                _ => None,
            })
            .collect();
        assert_eq!(results, [false], "{cli:?}");
        assert_eq!(texts(&events), "Created hello.txt as asked.", "{cli:?}");
        assert_eq!(summed_usage(&events), step_usage, "{cli:?}");
        assert!(fatal_errors(&events).is_empty(), "{cli:?}");
        if cli == AgentCli::Codex {
            assert_eq!(result(&events), None);
        } else {
            let (text, usage, cost, is_error) = result(&events).unwrap();
            assert!(!is_error, "{cli:?}");
            assert_eq!(usage, result_usage, "{cli:?}");
            assert_eq!(text, "Created hello.txt as asked.", "{cli:?}");
            match cli {
                AgentCli::Claude => assert!(matches!(cost, Cost::Usd(cost) if cost > 0.0)),
                _ => assert_eq!(cost, Cost::Unknown, "{cli:?}"),
            }
        }
    }
}

#[test]
fn api_error_runs() {
    for cli in AgentCli::ALL {
        let events = parse(cli, "api-error");
        let errors = fatal_errors(&events);
        let result_error = result(&events)
            .filter(|(_, _, _, is_error)| *is_error)
            .map(|(text, ..)| text);
        let message = errors.last().cloned().or(result_error).unwrap_or_default();
        assert!(
            message.contains("injected status 400"),
            "{cli:?}: {message:?} from {events:#?}"
        );
        assert!(tool_names(&events).is_empty(), "{cli:?}");
    }
}

#[test]
fn garbage_lines_are_ignored() {
    for cli in AgentCli::ALL {
        let mut parser = EventParser::new(cli);
        for line in [
            "",
            "not json",
            "{broken",
            "[1,2]",
            "{\"type\":\"something.new\"}",
            "{\"no_type\":true}",
        ] {
            assert_eq!(
                parser.parse_line(line),
                Vec::<AgentEvent>::new(),
                "{cli:?}: {line}"
            );
        }
    }
}
