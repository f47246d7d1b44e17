//! The errors a command can end with, each mapped to its documented exit code.

use std::fmt;

/// Exit codes of the command-line contract (DESIGN.md).
pub mod exit {
    pub const CLEAN: i32 = 0;
    pub const VIOLATION: i32 = 1;
    pub const USAGE: i32 = 2;
    pub const STALL: i32 = 3;
    pub const FAULT: i32 = 4;
    pub const INTERRUPTED: i32 = 130;
}

#[derive(Debug)]
pub enum Error {
    /// Bad input: unknown model or scenario, malformed TOML, a value out of range.
    Usage(String),
    /// The harness itself failed: results not writable, a model panicked.
    Fault(String),
}

impl Error {
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage(_) => crate::status::Status::BadInput.exit_code(),
            Error::Fault(_) => crate::status::Status::Fault.exit_code(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Usage(m) | Error::Fault(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for Error {}

pub fn usage(msg: impl Into<String>) -> Error {
    Error::Usage(msg.into())
}
