//! hotbak: hot physical backup for MariaDB, as a library behind two binaries
//! (`hotbak` and `xbextract`).
//!
//! ```text
//!  sources (tokio tasks)           datasink graph (bounded channels)                    terminal sink
//!  redo follower ─┐
//!  InnoDB copiers ├─ Frame{Open,Data,Close} ─> [manifest] ─> [compress] ─> [encrypt] ─> xbstream writer ─> stdout / TCP / file / s3://
//!  non-tx copier  │   (plaintext hashed first; stream info      (each stage optional)  └> directory writer (sink::safe_dir)
//!  metadata ──────┘    opens the stream, manifest ends it)                              └> null
//! ```
//!
//! Layers, top first; a module imports only its own layer (without a cycle)
//! and the layers below (checked by a unit test in `app::layers`; see
//! `DEVELOPERS.md`):
//!
//! binaries → [`app`] → engines ([`backup`], [`prepare`], [`restore`],
//! [`extract`], [`verify`]) → infrastructure ([`sink`], [`mysql`], [`sandbox`] (the
//! `mariadbd` runner), [`sched`], [`interrupt`], [`objstore`] (S3-compatible stores), [`events`] (the log: text or JSON lines), [`progress`] (the progress display of backup, restore and verify)) → codecs ([`compress`], [`encrypt`]) →
//! [`transform`] traits → formats ([`format`], [`innodb`]) → [`error`],
//! [`sys`].
//!
//! Pure, synchronous cores (no I/O): [`format`] (xbstream, manifest, crypt
//! envelope, metadata files, paths), [`innodb`] (pages, redo), the
//! transforms in [`compress`] and [`encrypt`]. `testkit` (workload and
//! checks for the tests and the demo) exists only with the `testkit`
//! feature.

pub mod app;
pub mod backup;
pub mod compress;
pub mod encrypt;
pub mod error;
pub mod events;
pub mod extract;
pub mod format;
pub mod incremental;
pub mod innodb;
pub mod interrupt;
pub mod mysql;
pub mod native_prepare;
pub mod objstore;
pub mod prepare;
pub mod progress;
pub mod restore;
pub mod sandbox;
pub mod sched;
pub mod sink;
pub mod sys;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod transform;
pub mod verify;
