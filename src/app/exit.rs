//! The one exit-code table, and the walk from an error chain to its code.
//!
//! Every error type classifies itself next to its definition
//! ([`crate::error::Classify`]); this is the one place that knows all of
//! them, because it sits at the top of the layer order and may import every
//! module. A unit test keeps the list complete (every `impl Classify for` in
//! `src/` must be registered here) and checks each type against the table
//! below, which README.md repeats.

use crate::error::{Classify, ErrorClass};

/// Exit codes. This table is copied into README.md.
///
/// | code | meaning |
/// |---|---|
/// | 0 | success: everything was written, synced and verified |
/// | 1 | failed: I/O error (disk full, closed pipe or socket, file exists), or any other failure |
/// | 2 | usage: bad option, missing argument, bad key file, bad option file |
/// | 3 | corrupt or truncated input: bad CRC or magic, failed authentication, stream cut short, manifest mismatch, refused path |
/// | 4 | server: cannot connect, unsupported server, lock timeout, server died, redo log overrun |
/// | 5 | object store: unreachable, credentials refused, object missing, no commit object (no complete backup under the prefix) |
/// | 6 | interrupted: SIGINT, SIGTERM or SIGHUP; locks released, partial output removed or left unmarked as complete |
pub mod code {
    /// Success.
    pub const OK: i32 = 0;
    /// Generic failure, I/O.
    pub const FAILED: i32 = 1;
    /// Usage error.
    pub const USAGE: i32 = 2;
    /// Corrupt or truncated input.
    pub const CORRUPT: i32 = 3;
    /// Server-side failure.
    pub const SERVER: i32 = 4;
    /// Object-store failure.
    pub const STORE: i32 = 5;
    /// Stopped by a signal.
    pub const INTERRUPTED: i32 = 6;
}

/// The process exit code for an error class.
#[must_use]
pub fn code_for(class: ErrorClass) -> i32 {
    match class {
        ErrorClass::Usage => code::USAGE,
        ErrorClass::Corrupt | ErrorClass::Truncated => code::CORRUPT,
        ErrorClass::Server => code::SERVER,
        ErrorClass::Store => code::STORE,
        ErrorClass::Io | ErrorClass::Failed => code::FAILED,
        ErrorClass::Interrupted => code::INTERRUPTED,
    }
}

/// The error types [`classify`] recognises in a chain. Each entry is a
/// downcast attempt; a cause is exactly one type, so the order is free.
macro_rules! registry {
    ($($ty:ty),* $(,)?) => {
        /// The class of one cause, if it is a registered type.
        fn class_of(cause: &(dyn std::error::Error + 'static)) -> Option<ErrorClass> {
            $(
                if let Some(e) = cause.downcast_ref::<$ty>() {
                    return Some(Classify::class(e));
                }
            )*
            None
        }

        /// The registered types' names, for the completeness test.
        #[cfg(test)]
        fn registered() -> Vec<&'static str> {
            vec![$(std::any::type_name::<$ty>()),*]
        }

        /// The registered type name of one cause.
        #[cfg(test)]
        fn name_of(cause: &(dyn std::error::Error + 'static)) -> Option<&'static str> {
            $(
                if cause.downcast_ref::<$ty>().is_some() {
                    return Some(std::any::type_name::<$ty>());
                }
            )*
            None
        }
    };
}

registry!(
    crate::error::UsageError,
    crate::format::path::PathError,
    crate::format::xbstream::Error,
    crate::format::manifest::Error,
    crate::format::metadata::Error,
    crate::format::prometheus::Error,
    crate::format::links::Error,
    crate::format::envelope::Error,
    crate::format::qpress::Error,
    crate::format::delta::Error,
    crate::format::export::Error,
    crate::innodb::Error,
    crate::innodb::apply::Error,
    crate::innodb::cfg::Error,
    crate::transform::TransformError,
    crate::compress::Error,
    crate::encrypt::Error,
    crate::encrypt::mariadb::Error,
    crate::encrypt::mariadb_page::Error,
    crate::sched::Error,
    crate::sink::Error,
    crate::sink::safe_dir::Error,
    crate::mysql::Error,
    crate::mysql::keys::Error,
    crate::sandbox::Error,
    crate::extract::Error,
    crate::backup::Error,
    crate::backup::filter::Error,
    crate::prepare::Error,
    crate::native_prepare::Error,
    crate::incremental::Error,
    crate::restore::Error,
    crate::restore::table::Error,
    crate::verify::Error,
    crate::objstore::Error,
    crate::interrupt::Interrupted,
);

/// Classify an `anyhow` error: the class of the first classified cause in
/// its chain, `Io` for a bare I/O error, `Failed` otherwise.
#[must_use]
pub fn classify(err: &anyhow::Error) -> ErrorClass {
    for cause in err.chain() {
        if let Some(class) = class_of(cause) {
            return class;
        }
        if cause.downcast_ref::<std::io::Error>().is_some() {
            return ErrorClass::Io;
        }
    }
    ErrorClass::Failed
}

/// The exit code for an error at the binaries' edge.
#[must_use]
pub fn exit_code(err: &anyhow::Error) -> i32 {
    code_for(classify(err))
}

/// Render an error chain on one line, skipping causes whose text the
/// previous message already contains (our messages often embed their cause).
#[must_use]
pub fn render(err: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in err.chain() {
        let s = cause.to_string();
        if out.contains(&s) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&s);
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::BTreeSet;
    use std::os::unix::process::ExitStatusExt;
    use std::path::{Path, PathBuf};
    use std::process::ExitStatus;
    use std::time::Duration;

    use super::*;
    use crate::format::{envelope, manifest, metadata, path, qpress, xbstream};
    use crate::transform::TransformError;

    fn io() -> std::io::Error {
        std::io::Error::other("disk full")
    }

    fn status() -> ExitStatus {
        ExitStatus::from_raw(256)
    }

    fn corrupt_xb() -> xbstream::Error {
        xbstream::Error::Corrupt {
            offset: 7,
            path: None,
            reason: "bad magic".into(),
        }
    }

    fn corrupt_tf() -> TransformError {
        TransformError::Corrupt {
            what: "a.zst".into(),
            offset: 0,
            reason: "bad frame".into(),
        }
    }

    /// One sample of every class each registered type produces, with the
    /// code README.md's table promises for it.
    fn samples() -> Vec<(anyhow::Error, i32)> {
        use code::{CORRUPT, FAILED, SERVER, STORE, USAGE};
        vec![
            (
                anyhow::Error::new(crate::error::UsageError("--parallel 0".into())),
                USAGE,
            ),
            (
                anyhow::Error::new(crate::format::export::Error::Version(9)),
                CORRUPT,
            ),
            (
                anyhow::Error::new(crate::restore::table::Error::DefinitionDiffers {
                    table: "`d`.`t`".into(),
                    diff: vec!["backup: `a` int".into()],
                }),
                FAILED,
            ),
            (
                anyhow::Error::new(crate::innodb::cfg::Error::Corrupt {
                    offset: 0,
                    reason: "version 2".into(),
                }),
                CORRUPT,
            ),
            (
                anyhow::Error::new(crate::backup::filter::Error::NotQualified {
                    option: "--tables-file list line 2".into(),
                    name: "t".into(),
                }),
                USAGE,
            ),
            (
                anyhow::Error::new(path::PathError::Absolute("/etc/passwd".into())),
                CORRUPT,
            ),
            (anyhow::Error::new(corrupt_xb()), CORRUPT),
            (
                anyhow::Error::new(xbstream::Error::Truncated {
                    offset: 9,
                    chunk_offset: 0,
                    path: None,
                }),
                CORRUPT,
            ),
            (
                anyhow::Error::new(manifest::Error::Corrupt {
                    what: "manifest",
                    reason: "bad json".into(),
                }),
                CORRUPT,
            ),
            (
                anyhow::Error::new(metadata::Error::MissingKey {
                    file: "xtrabackup_checkpoints",
                    key: "to_lsn",
                }),
                CORRUPT,
            ),
            (
                anyhow::Error::new(crate::format::links::Error::TooLong(1 << 30)),
                CORRUPT,
            ),
            (
                anyhow::Error::new(crate::format::prometheus::Error::TooLong(1 << 30)),
                CORRUPT,
            ),
            (anyhow::Error::new(envelope::Error::BadMagic), CORRUPT),
            (
                anyhow::Error::new(crate::format::delta::Error::Corrupt("cut".into())),
                CORRUPT,
            ),
            (
                anyhow::Error::new(qpress::Error::Truncated("no trailer".into())),
                CORRUPT,
            ),
            (
                anyhow::Error::new(qpress::Error::Corrupt {
                    offset: 1,
                    reason: "adler".into(),
                }),
                CORRUPT,
            ),
            (
                anyhow::Error::new(crate::innodb::Error::Page0("bad checksum".into())),
                CORRUPT,
            ),
            (
                anyhow::Error::new(crate::innodb::Error::UnsupportedLogFormat {
                    format: 1,
                    what: "old",
                    creator: "MariaDB 10.4".into(),
                }),
                SERVER,
            ),
            (
                anyhow::Error::new(crate::innodb::Error::Geometry("odd size".into())),
                FAILED,
            ),
            (anyhow::Error::new(corrupt_tf()), CORRUPT),
            (
                anyhow::Error::new(TransformError::Truncated {
                    what: "a.zst".into(),
                    reason: "no last frame".into(),
                }),
                CORRUPT,
            ),
            (
                anyhow::Error::new(TransformError::WrongKey {
                    what: "a.hbenc".into(),
                    reason: "key ids differ".into(),
                }),
                USAGE,
            ),
            (
                anyhow::Error::new(TransformError::Internal("zstd".into())),
                FAILED,
            ),
            (
                anyhow::Error::new(crate::compress::Error::UnknownAlgorithm("gzip".into())),
                USAGE,
            ),
            (
                anyhow::Error::new(crate::compress::Error::Corrupt("x".into())),
                CORRUPT,
            ),
            (
                anyhow::Error::new(crate::encrypt::Error::KeyFormat("short".into())),
                USAGE,
            ),
            (
                anyhow::Error::new(crate::encrypt::Error::Envelope(envelope::Error::BadMagic)),
                CORRUPT,
            ),
            (
                anyhow::Error::new(crate::encrypt::Error::Rng("getrandom".into())),
                FAILED,
            ),
            (
                anyhow::Error::new(crate::encrypt::mariadb::Error::WrongFileKey),
                USAGE,
            ),
            (
                anyhow::Error::new(crate::encrypt::mariadb::Error::Mtr("short")),
                CORRUPT,
            ),
            (
                anyhow::Error::new(crate::encrypt::mariadb_page::Error::WrongKey {
                    space: 5,
                    page: 3,
                    key_id: 2,
                    key_version: 1,
                    what: "its space id field reads 77".into(),
                }),
                USAGE,
            ),
            (
                anyhow::Error::new(crate::encrypt::mariadb_page::Error::Checksum {
                    space: 5,
                    page: 3,
                }),
                CORRUPT,
            ),
            (
                anyhow::Error::new(crate::encrypt::mariadb_page::Error::Unsupported(
                    "page_compressed",
                )),
                FAILED,
            ),
            (
                anyhow::Error::new(crate::mysql::keys::Error::Read {
                    what: "key file",
                    path: "/k".into(),
                    source: std::io::Error::from(std::io::ErrorKind::NotFound),
                }),
                FAILED,
            ),
            (
                anyhow::Error::new(crate::mysql::keys::Error::Parse {
                    path: "/k".into(),
                    source: crate::encrypt::mariadb::Error::WrongFileKey,
                }),
                USAGE,
            ),
            (anyhow::Error::new(crate::sched::Error::Gone), FAILED),
            (
                anyhow::Error::new(crate::sched::Error::Panic("boom".into())),
                FAILED,
            ),
            (
                anyhow::Error::new(crate::sink::Error::Io {
                    dest: "stdout".into(),
                    source: io(),
                }),
                FAILED,
            ),
            (
                anyhow::Error::new(crate::sink::Error::Transform {
                    stage: "zstd",
                    path: "a".into(),
                    source: corrupt_tf(),
                }),
                CORRUPT,
            ),
            (anyhow::Error::new(crate::sink::Error::Closed), FAILED),
            (
                anyhow::Error::new(crate::sink::safe_dir::Error::Symlink {
                    path: "db/t.ibd".into(),
                    at: "db".into(),
                }),
                FAILED,
            ),
            (
                anyhow::Error::new(crate::mysql::Error::LockTimeout {
                    statement: "BACKUP STAGE BLOCK_DDL".into(),
                    waited: Duration::from_secs(1),
                }),
                SERVER,
            ),
            (
                anyhow::Error::new(crate::mysql::Error::BadOption {
                    name: "port".into(),
                    value: "x".into(),
                    reason: "not a number".into(),
                }),
                USAGE,
            ),
            (
                anyhow::Error::new(crate::sandbox::Error::ToolMissing { tool: "mariadbd" }),
                USAGE,
            ),
            (
                anyhow::Error::new(crate::sandbox::Error::ExitedWithError {
                    pid: 1,
                    status: status(),
                    log: PathBuf::from("err.log"),
                    tail: String::new(),
                }),
                SERVER,
            ),
            (
                anyhow::Error::new(crate::sandbox::Error::InstallFailed {
                    datadir: PathBuf::from("d"),
                    status: status(),
                    log: PathBuf::from("err.log"),
                    tail: String::new(),
                }),
                FAILED,
            ),
            (
                anyhow::Error::new(crate::sandbox::Error::Spawn {
                    program: PathBuf::from("mariadbd"),
                    source: io(),
                }),
                FAILED,
            ),
            (
                anyhow::Error::new(crate::extract::Error::Stream {
                    input: "stdin".into(),
                    source: corrupt_xb(),
                }),
                CORRUPT,
            ),
            (
                anyhow::Error::new(crate::extract::Error::NoManifest { offset: 3 }),
                CORRUPT,
            ),
            (
                anyhow::Error::new(crate::extract::Error::Dir(
                    crate::sink::safe_dir::Error::Exists { path: "a".into() },
                )),
                FAILED,
            ),
            (
                anyhow::Error::new(crate::extract::Error::Usage("-x".into())),
                USAGE,
            ),
            (
                anyhow::Error::new(crate::backup::Error::RedoOverrun("lost".into())),
                SERVER,
            ),
            (
                anyhow::Error::new(crate::backup::Error::Corrupt("page 3".into())),
                CORRUPT,
            ),
            (
                anyhow::Error::new(crate::backup::Error::NoHistoryBase("nightly".into())),
                USAGE,
            ),
            (
                anyhow::Error::new(crate::backup::Error::Sink(crate::sink::Error::Closed)),
                FAILED,
            ),
            (
                anyhow::Error::new(crate::backup::Error::Server(
                    crate::mysql::Error::BadOption {
                        name: "port".into(),
                        value: "x".into(),
                        reason: "bad".into(),
                    },
                )),
                USAGE,
            ),
            (
                anyhow::Error::new(crate::prepare::Error::NotABackup {
                    dir: "d".into(),
                    reason: "no checkpoints".into(),
                }),
                USAGE,
            ),
            (
                anyhow::Error::new(crate::prepare::Error::Metadata {
                    path: "p".into(),
                    reason: "r".into(),
                }),
                CORRUPT,
            ),
            (
                anyhow::Error::new(crate::prepare::Error::Recovery("died".into())),
                SERVER,
            ),
            (
                anyhow::Error::new(crate::restore::Error::Refused("not empty".into())),
                USAGE,
            ),
            (
                anyhow::Error::new(crate::restore::Error::Io {
                    path: "p".into(),
                    source: io(),
                }),
                FAILED,
            ),
            (
                anyhow::Error::new(crate::restore::Error::Corrupt("bad checkpoints".into())),
                CORRUPT,
            ),
            (
                anyhow::Error::new(crate::restore::Error::Sync {
                    path: "d".into(),
                    source: io(),
                }),
                FAILED,
            ),
            (
                anyhow::Error::new(crate::verify::Error::Damaged(2)),
                CORRUPT,
            ),
            (
                anyhow::Error::new(crate::verify::Error::NotABackup("no checkpoints".into())),
                USAGE,
            ),
            (
                anyhow::Error::new(crate::verify::Error::Stream(crate::extract::Error::Usage(
                    "f.hbenc is encrypted".into(),
                ))),
                USAGE,
            ),
            (
                anyhow::Error::new(crate::native_prepare::Error::NotABackup {
                    dir: "d".into(),
                    reason: "prepared".into(),
                }),
                USAGE,
            ),
            (
                anyhow::Error::new(crate::native_prepare::Error::Log("ends early".into())),
                CORRUPT,
            ),
            (
                anyhow::Error::new(crate::native_prepare::Error::Key(
                    "tablespace 5 is encrypted with key id 2: key file /k: no key id 2".into(),
                )),
                USAGE,
            ),
            (
                anyhow::Error::new(crate::innodb::apply::Error::PageSize(1000)),
                FAILED,
            ),
            (
                anyhow::Error::new(crate::objstore::Error::NotCommitted {
                    bucket: "b".into(),
                    prefix: "p".into(),
                    commit: "p/hotbak-commit.json".into(),
                    found: String::new(),
                }),
                STORE,
            ),
            (
                anyhow::Error::new(crate::objstore::Error::Auth {
                    op: "PutObject",
                    key: "k".into(),
                    status: 403,
                    code: "SignatureDoesNotMatch".into(),
                    message: "m".into(),
                }),
                STORE,
            ),
            (
                anyhow::Error::new(crate::objstore::Error::Usage("s3://B".into())),
                USAGE,
            ),
            (
                anyhow::Error::new(crate::objstore::Error::Corrupt {
                    key: "k".into(),
                    reason: "bad".into(),
                }),
                CORRUPT,
            ),
            (
                anyhow::Error::new(crate::objstore::Error::Aborted("s3://b/p".into())),
                FAILED,
            ),
            (
                anyhow::Error::new(crate::sink::Error::Store(crate::objstore::Error::Exists {
                    key: "k".into(),
                })),
                STORE,
            ),
            (
                anyhow::Error::new(crate::incremental::Error::Chain(
                    "from_lsn 2 but to_lsn 1".into(),
                )),
                USAGE,
            ),
            (
                anyhow::Error::new(crate::interrupt::Interrupted(crate::interrupt::Signal::Int)),
                code::INTERRUPTED,
            ),
        ]
    }

    /// The codes README.md's table gives each class word.
    fn readme_codes() -> Vec<(String, i32)> {
        let readme =
            std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
                .unwrap();
        let start = readme.find("## Exit codes").unwrap();
        readme[start..]
            .lines()
            .filter_map(|l| {
                let mut cells = l.trim().strip_prefix('|')?.split('|');
                let code: i32 = cells.next()?.trim().parse().ok()?;
                let word = cells.next()?.trim().split(':').next()?.to_owned();
                Some((word, code))
            })
            .collect()
    }

    #[test]
    fn readme_table_matches_the_codes() {
        let table = readme_codes();
        let expect = [
            ("success", code::OK),
            ("failed", code::FAILED),
            ("usage", code::USAGE),
            ("corrupt or truncated input", code::CORRUPT),
            ("server", code::SERVER),
            ("object store", code::STORE),
            ("interrupted", code::INTERRUPTED),
        ];
        let expect: Vec<(String, i32)> = expect.iter().map(|(w, c)| ((*w).into(), *c)).collect();
        assert_eq!(table, expect);
        assert_eq!(code_for(ErrorClass::Truncated), code::CORRUPT);
        assert_eq!(code_for(ErrorClass::Io), code::FAILED);
    }

    #[test]
    fn every_error_type_maps_to_the_promised_code() {
        let mut seen = BTreeSet::new();
        for (err, want) in samples() {
            let name = err.chain().next().map(|c| format!("{c:?}")).unwrap();
            assert_eq!(exit_code(&err), want, "{name}");
            // Context on top does not change the class.
            let wrapped = err.context("while doing something");
            assert_eq!(exit_code(&wrapped), want, "{name} with context");
            seen.insert(sample_type(&wrapped));
        }
        for ty in registered() {
            assert!(seen.contains(ty), "no sample for {ty}");
        }
    }

    /// The registered type name of the first classified cause.
    fn sample_type(err: &anyhow::Error) -> &'static str {
        err.chain()
            .find_map(name_of)
            .unwrap_or_else(|| panic!("unregistered sample: {err:?}"))
    }

    #[test]
    fn bare_io_and_unknown_errors() {
        assert_eq!(exit_code(&anyhow::Error::new(io())), code::FAILED);
        assert_eq!(exit_code(&anyhow::anyhow!("something")), code::FAILED);
        // The first classified cause wins over the io::Error under it.
        let e = anyhow::Error::new(crate::sink::Error::Io {
            dest: "x".into(),
            source: io(),
        });
        assert_eq!(classify(&e), ErrorClass::Io);
    }

    /// Every `impl Classify for T` in `src/` names a registered type, so
    /// the registry cannot drift from the code again.
    #[test]
    fn every_classified_type_is_registered() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut found = BTreeSet::new();
        for file in crate::app::layers::rust_files(&src) {
            let text = std::fs::read_to_string(&file).unwrap();
            let module = crate::app::layers::module_path(&src, &file);
            for line in text.lines() {
                let line = line.trim();
                let Some(rest) = line
                    .strip_prefix("impl Classify for ")
                    .or_else(|| line.strip_prefix("impl crate::error::Classify for "))
                else {
                    continue;
                };
                let ty = rest.trim_end_matches(" {").trim();
                found.insert(format!("hotbak::{module}::{ty}").replace("::::", "::"));
            }
        }
        let registered: BTreeSet<String> = registered().iter().map(|s| (*s).to_owned()).collect();
        let missing: Vec<_> = found.difference(&registered).collect();
        assert!(
            missing.is_empty(),
            "not registered in app::exit: {missing:?}"
        );
        assert!(found.len() >= 19, "scan found too little: {found:?}");
    }
}
