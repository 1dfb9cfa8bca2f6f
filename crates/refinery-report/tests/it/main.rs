//! The report and the live status on sessions built through the core's own API (as the MCP
//! tools build them) plus the files `refinery refine` adds, written the way it writes them.
//! The binary's tests render reports of real runs in headless Chromium; these check the
//! structure, the escaping and the scrubbing of the HTML, and every driver's variant.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test should fail loudly at the first surprise"
)]

mod live;
mod report;
mod sessions;
