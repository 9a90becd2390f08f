//! The xbextract engine.

use crate::error::{Classify, ErrorClass};

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Placeholder until the module lands.
    #[error("{0}")]
    Other(String),
}

impl Classify for Error {
    fn class(&self) -> ErrorClass {
        ErrorClass::Failed
    }
}
