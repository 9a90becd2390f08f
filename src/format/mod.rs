//! Pure formats: no I/O, no async, no logging. One page per format in `format-spec/`.

pub mod delta;
pub mod envelope;
pub mod export;
pub mod links;
pub mod manifest;
pub mod metadata;
pub mod path;
pub mod prometheus;
pub mod qpress;
pub mod xbstream;
