//! One error type for the library: every variant says what went wrong and with which input, so
//! the CLI and the page can show it as is.

use std::path::PathBuf;

/// Everything the engine can refuse or fail at. Each variant is of one [`ErrorKind`]; the
/// message names the input (file, flag, setting) and the number that failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A flag, option or request value outside what it accepts (names the flag and the value).
    #[error("invalid option: {0}")]
    Usage(String),
    /// A network configuration that cannot be built (group counts, multipliers, ...).
    #[error("invalid model config: {0}")]
    Config(String),
    /// A file that is not a checkpoint, or one whose container is damaged.
    #[error("not a readable checkpoint: {0}")]
    CheckpointFormat(String),
    /// A checkpoint that does not fit the network it is loaded into.
    #[error("checkpoint does not match the model: {0}")]
    CheckpointMismatch(String),
    /// An image file that cannot be decoded or is outside the accepted sizes.
    #[error("cannot read image: {0}")]
    Image(String),
    /// DICOM content we do not handle (transfer syntax, photometric interpretation, ...).
    #[error("unsupported DICOM: {0}")]
    Dicom(String),
    /// A CT volume (NIfTI file or DICOM series) or a label mask that cannot be used.
    #[error("cannot use volume: {0}")]
    Volume(String),
    /// DRR settings outside their range (geometry, nodules, sizes).
    #[error("invalid DRR settings: {0}")]
    Drr(String),
    /// Sampler settings outside their range.
    #[error("invalid sampler settings: {0}")]
    Sampler(String),
    /// One network call would need more memory than the budget allows (names both).
    #[error("over the memory budget: {0}")]
    Budget(String),
    /// Work that did not finish: several inputs failed, a training step diverged, a worker
    /// thread stopped (the message says which and how many).
    #[error("{0}")]
    Failed(String),
    /// An input past one of the hard limits that keep hostile files from exhausting memory
    /// (the message names the limit).
    #[error("over a limit: {0}")]
    TooLarge(String),
    /// The user (or the page) asked to stop.
    #[error("cancelled")]
    Cancelled,
    /// No usable GPU adapter, or the device failed.
    #[error("device error: {0}")]
    Device(String),
    /// File system errors, with the path that caused them.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What kind of failure an [`Error`] is: what the user can do about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// A flag or setting: fix the command.
    Usage,
    /// An input file or its content: another file, or a reader we do not have.
    Input,
    /// A model file or its configuration.
    Model,
    /// A hard limit on input size ([`crate::limits`]).
    Limit,
    /// The memory budget of one network call.
    Budget,
    /// The GPU or its adapter.
    Device,
    /// The file system.
    Io,
    /// The user asked to stop.
    Cancelled,
    /// Work that did not finish for another reason.
    Failed,
}

impl Error {
    /// The kind of this failure.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Usage(_) | Error::Drr(_) | Error::Sampler(_) => ErrorKind::Usage,
            Error::Image(_) | Error::Dicom(_) | Error::Volume(_) => ErrorKind::Input,
            Error::Config(_) | Error::CheckpointFormat(_) | Error::CheckpointMismatch(_) => {
                ErrorKind::Model
            }
            Error::TooLarge(_) => ErrorKind::Limit,
            Error::Budget(_) => ErrorKind::Budget,
            Error::Device(_) => ErrorKind::Device,
            Error::Io { .. } => ErrorKind::Io,
            Error::Cancelled => ErrorKind::Cancelled,
            Error::Failed(_) => ErrorKind::Failed,
        }
    }
}

/// Result alias used across the crate.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// Wraps an I/O error together with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
