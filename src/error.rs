//! The one error type of librstar and its mapping to C status codes.
//!
//! Every fallible public function returns [`Result<T>`]. Each variant carries the
//! file, tensor, field or line it concerns so a message alone tells the user what
//! to fix. The C ABI maps variants to [`Status`] codes with [`Error::status`].

use std::path::PathBuf;

/// Result alias used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Status codes shared by the C ABI (`rstar_status`). 0 is success.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok = 0,
    InvalidArgument = 1,
    Io = 2,
    Format = 3,
    Unsupported = 4,
    Tokenizer = 5,
    Exec = 6,
    Cancelled = 7,
    OutOfMemory = 8,
    Device = 9,
    Internal = 100,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be opened, read, mapped or written.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file exists but its contents are malformed (JSON, safetensors header, GGUF, JSONL line...).
    #[error("{}: {msg}", path.display())]
    Format { path: PathBuf, msg: String },
    /// A config field is missing or has a wrong type/value.
    #[error("{}: field `{field}`: {msg}", path.display())]
    Config {
        path: PathBuf,
        field: String,
        msg: String,
    },
    /// A tensor is missing, has the wrong shape or an unsupported dtype.
    #[error("{}: tensor `{tensor}`: {msg}", path.display())]
    Tensor {
        path: PathBuf,
        tensor: String,
        msg: String,
    },
    /// An architecture or feature we do not implement.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// Tokenizer load/encode/decode or chat-template failure.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// A pinned asset could not be fetched from its package registry (see `assets`).
    #[error("download: {0}")]
    Download(String),
    /// A caller passed a bad value (CLI argument, C parameter, API misuse).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The Python executor could not be started or failed as a whole (not a failing snippet).
    #[error("executor: {0}")]
    Exec(String),
    /// A required sandbox layer could not be set up: the executor refuses to run code (opt into
    /// weaker isolation with `SandboxMode::Weak` / `--sandbox=weak`).
    #[error("sandbox layer `{layer}` is not active, refusing to run code: {reason}")]
    Sandbox { layer: String, reason: String },
    /// The caller's callback asked to stop.
    #[error("cancelled")]
    Cancelled,
    /// A memory budget (KV cache, workspace) cannot hold the request.
    #[error("out of memory: {0}")]
    OutOfMemory(String),
    /// A compute device (CUDA) is unavailable or failed.
    #[error("device: {0}")]
    Device(String),
    /// A bug in librstar; please report it.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// The C status code for this error.
    pub fn status(&self) -> Status {
        match self {
            Error::Io { .. } | Error::Download(_) => Status::Io,
            Error::Format { .. } | Error::Config { .. } | Error::Tensor { .. } => Status::Format,
            Error::Unsupported(_) => Status::Unsupported,
            Error::Tokenizer(_) => Status::Tokenizer,
            Error::InvalidArgument(_) => Status::InvalidArgument,
            Error::Exec(_) | Error::Sandbox { .. } => Status::Exec,
            Error::Cancelled => Status::Cancelled,
            Error::OutOfMemory(_) => Status::OutOfMemory,
            Error::Device(_) => Status::Device,
            Error::Internal(_) => Status::Internal,
        }
    }

    /// Helper: wrap an io error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// Helper: a malformed-file error.
    pub fn format(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        Error::Format {
            path: path.into(),
            msg: msg.into(),
        }
    }

    /// Helper: a bad config field.
    pub fn config(
        path: impl Into<PathBuf>,
        field: impl Into<String>,
        msg: impl Into<String>,
    ) -> Self {
        Error::Config {
            path: path.into(),
            field: field.into(),
            msg: msg.into(),
        }
    }

    /// Helper: a bad tensor.
    pub fn tensor(
        path: impl Into<PathBuf>,
        tensor: impl Into<String>,
        msg: impl Into<String>,
    ) -> Self {
        Error::Tensor {
            path: path.into(),
            tensor: tensor.into(),
            msg: msg.into(),
        }
    }
}
