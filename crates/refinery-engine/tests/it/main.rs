//! Integration tests of refinery-engine through its public API.
#![expect(
    clippy::unwrap_used,
    reason = "a test should fail loudly at the first surprise"
)]

mod schemas;
