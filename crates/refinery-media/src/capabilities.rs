//! What `refinery doctor` says about media: which backend can do which task with the keys
//! present, with which model, and how video frames are read.

use std::path::PathBuf;

use serde::Serialize;

use crate::config::MediaConfig;
use crate::kinds::{Backend, Task};

/// One backend × task pair.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MediaCapability {
    pub task: Task,
    pub backend: Backend,
    /// The model used unless a call names one.
    pub model: String,
    pub usable: bool,
    /// The key variable in use, or the one to set.
    pub key: &'static str,
}

/// The media part of the doctor's report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MediaReport {
    pub capabilities: Vec<MediaCapability>,
    /// ffmpeg, used to take frames from video for backends that only see images.
    pub ffmpeg: Option<PathBuf>,
}

impl MediaReport {
    pub fn new(config: &MediaConfig) -> Self {
        let mut capabilities = Vec::new();
        for task in Task::ALL {
            for backend in Backend::preference(task) {
                let Some(model) = config.model_for(*backend, task) else {
                    continue;
                };
                let usable = config.has_key(*backend);
                capabilities.push(MediaCapability {
                    task,
                    backend: *backend,
                    model,
                    usable,
                    key: config
                        .key_variable(*backend)
                        .unwrap_or(backend.provider().key_variables()[0]),
                });
            }
        }
        Self {
            capabilities,
            ffmpeg: config.ffmpeg().map(std::path::Path::to_path_buf),
        }
    }

    /// Tasks with at least one usable backend.
    pub fn usable_tasks(&self) -> Vec<Task> {
        Task::ALL
            .into_iter()
            .filter(|task| {
                self.capabilities
                    .iter()
                    .any(|capability| capability.task == *task && capability.usable)
            })
            .collect()
    }
}
