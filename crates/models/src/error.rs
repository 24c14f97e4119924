//! The models crate's one error type. Loading errors name the file and the problem.

use std::path::{Path, PathBuf};

/// Every failure of the models crate.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A file could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A model file is corrupted, truncated or inconsistent.
    #[error("{}: {reason}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The file is valid but uses something this loader does not support.
    #[error("{}: unsupported {what}", path.display())]
    Unsupported {
        /// The file.
        path: PathBuf,
        /// What is unsupported (an architecture, a quantisation type…).
        what: String,
    },
    /// The tokenizer is missing or broken.
    #[error("tokenizer {}: {reason}", path.display())]
    Tokenizer {
        /// The tokenizer file (or the model file holding it).
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The chat template failed to render.
    #[error("chat template: {0}")]
    Template(String),
    /// The request is not valid for this model.
    #[error("invalid `{field}`: {reason}")]
    InvalidInput {
        /// The offending field.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The model's queue is full.
    #[error("the model is overloaded ({0} requests queued); retry shortly")]
    Overloaded(usize),
    /// The model thread has stopped.
    #[error("the model thread has stopped")]
    Stopped,
    /// A tensor operation failed.
    #[error("tensor operation failed: {0}")]
    Torch(String),
}

impl ModelError {
    /// An I/O error on `path`.
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io { path: path.to_path_buf(), source }
    }

    /// A format error on `path`.
    pub fn format(path: &Path, reason: impl Into<String>) -> Self {
        Self::Format { path: path.to_path_buf(), reason: reason.into() }
    }
}

impl From<tch::TchError> for ModelError {
    fn from(err: tch::TchError) -> Self {
        Self::Torch(err.to_string())
    }
}

/// Result alias of this crate.
pub type Result<T, E = ModelError> = std::result::Result<T, E>;
