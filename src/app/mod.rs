//! The application layer: what the binaries share above the engines.
//!
//! - [`exit`]: error classes to the one exit-code table, and the one-line
//!   rendering of an error chain.
//! - `layers` (tests only): the check that imports obey the layer order.
//!
//! Nothing below this layer imports it (see `DEVELOPERS.md`).

pub mod exit;
mod layers;
