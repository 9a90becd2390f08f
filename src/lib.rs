//! hotbak: hot physical backup for MariaDB, as a library behind two binaries
//! (`hotbak` and `xbextract`).
//!
//! ```text
//!  sources (tokio tasks)           datasink graph (bounded channels)              terminal sink
//!  redo follower ─┐
//!  InnoDB copiers ├─ Frame{Open,Data,Close} ─> [compress] ─> [encrypt] ─> [manifest] ─> xbstream writer ─> stdout / TCP / file
//!  non-tx copier  │                                                                 └> directory writer
//!  metadata ──────┘                                                                 └> null
//! ```
//!
//! Pure, synchronous cores (no I/O): [`format`] (xbstream, manifest, crypt
//! envelope, metadata files, paths), [`innodb`] (pages, redo), the
//! transforms in [`compress`] and [`encrypt`]. Async edges: [`sink`],
//! [`extract`], [`backup`], [`mysql`].

pub mod backup;
pub mod cli;
pub mod compress;
pub mod encrypt;
pub mod error;
pub mod extract;
pub mod format;
pub mod innodb;
pub mod mysql;
pub mod native_prepare;
pub mod prepare;
pub mod restore;
pub mod sandbox;
pub mod sched;
pub mod sink;
pub mod sys;
pub mod testkit;
