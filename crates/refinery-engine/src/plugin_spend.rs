//! What a Claude Code-driven loop has spent, for the plugin's `cost_budget`.
//!
//! The tokens come from the Claude Code transcripts bound to the session
//! (`StateDir::loop_usage` in the core); this module prices them with the same price table
//! the CLI's `--cost-budget` uses (`refinery-llm`'s `prices.json`), cache writes included.
//! The MCP tools call [`measure`] before a new round and the core decides
//! (`refinery_core::budget::check`), failing closed when a model has no price.

use refinery_core::{MeasuredSpend, SessionId, StateDir};
use refinery_llm::{AnthropicUsage, Cost, PriceTable};

/// Prices the loop's usage so far.
pub fn measure(
    store: &StateDir,
    session: &SessionId,
    prices: &PriceTable,
) -> refinery_core::Result<MeasuredSpend> {
    let usage = store.loop_usage(session)?;
    let mut spend = MeasuredSpend {
        usd: 0.0,
        unpriced_models: std::collections::BTreeSet::default(),
        transcripts: usage.transcripts,
        problems: usage.problems,
    };
    for (model, tokens) in &usage.by_model {
        let billed = AnthropicUsage {
            input_tokens: tokens.input,
            output_tokens: tokens.output,
            cache_read_tokens: tokens.cache_read,
            cache_write_5m_tokens: tokens.cache_write_5m,
            cache_write_1h_tokens: tokens.cache_write_1h,
        };
        match prices.anthropic_cost(model, &billed) {
            Cost::Usd(usd) => spend.usd += usd,
            Cost::Unknown => {
                spend.unpriced_models.insert(model.clone());
            }
        }
    }
    Ok(spend)
}
