//! `hotbak verify --stream`: verify an xbstream as it is read, writing
//! nothing. The extract engine's decoding pipeline ([`crate::extract::visit`])
//! makes every container check and hands each file's decoded content to a
//! [`Collector`], which feeds the same incremental cores as the directory
//! mode: a [`PageChecker`] per InnoDB data file and a [`RedoWalker`] for
//! `ib_logfile0`, on the extract worker that owns the file (CPU work off the
//! async reader, `--parallel` files at once, bounded queues).
//!
//! **Redo and `xtrabackup_checkpoints`.** The checkpoints file comes after
//! `ib_logfile0` in a hotbak stream, but the walk needs nothing from it
//! while it runs: the log is walked as it goes by, keeping only the
//! unparsed tail (at most one mini-transaction, 1 MiB, plus a 1 MiB batch),
//! and only the walk's result (end LSN, why it ended, checkpoint LSN, the
//! tablespaces its file records name) is kept for the comparison with
//! `last_lsn` and `to_lsn` at the end. Nothing is buffered whole and nothing
//! spills to disk.
//!
//! **System tablespace.** Which files make it (`innodb_data_file_path`) is
//! only known from `backup-my.cnf`, near the end of the stream; the
//! top-level files that could be one (no extension, not a known metadata or
//! log name) are checked as they stream by and the result is kept only for
//! the first system file the configuration names. The later files of a
//! multi-file system tablespace are not page-checked in a stream (a note
//! says so).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use tokio::io::AsyncRead;

use super::pages::{FileCheck, PageChecker, RedoWalk, RedoWalker};
use super::{
    check_manifest, check_metadata, check_redo, conclude, content_finding, fold_pages,
    is_innodb_file, Class, Error, Finding, Logged, Report,
};
use crate::error::{Classify, ErrorClass};
use crate::extract::{self, DecodeOptions, FileVisitor, Visitor};
use crate::format::manifest::{Manifest, StreamInfo, MANIFEST_NAME, STREAM_INFO_NAME};
use crate::format::metadata::{BackupMyCnf, Checkpoints, XtrabackupInfo};
use crate::format::path::RelPath;
use crate::progress::{Counted, Display, ProgressMode};

/// Largest metadata file kept for parsing (the real ones are a few KiB).
const MAX_META_LEN: usize = 1 << 20;

/// What `hotbak verify --stream` needs.
#[derive(Clone, Debug)]
pub struct StreamPlan {
    /// Files decoded and checked at once (extract workers).
    pub parallel: usize,
    /// Decryption (the key) and decompression.
    pub decode: DecodeOptions,
    /// The progress display.
    pub progress: ProgressMode,
    /// The stream's length when known (an object store's commit, a file
    /// on stdin): the progress display's total.
    pub size: Option<u64>,
}

/// What the per-file visitors found, gathered as files end.
#[derive(Default)]
struct Collected {
    /// Page checks by file (backup-relative, decoded name).
    pages: BTreeMap<String, FileCheck>,
    /// The walk of `ib_logfile0`.
    redo: Option<Result<RedoWalk, String>>,
    /// Metadata files' text, or why it was not kept.
    meta: BTreeMap<String, Result<String, String>>,
    /// Files decoded to their end.
    files: u64,
}

/// The [`Visitor`]: one checker per file, by its decoded name; files are
/// counted in the progress display.
#[derive(Clone)]
struct Collector {
    collected: Arc<Mutex<Collected>>,
    display: Arc<Display>,
}

impl Collector {
    fn lock(&self) -> std::sync::MutexGuard<'_, Collected> {
        self.collected
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

enum Check {
    Pages(Box<PageChecker>),
    Redo(Box<RedoWalker>),
    Meta(Vec<u8>, bool),
    Skip,
}

struct FileCheckVisitor {
    rel: String,
    check: Check,
    into: Collector,
}

/// A top-level file that could belong to the system tablespace: no
/// extension, not a log, metadata or hotbak file.
fn system_candidate(rel: &str) -> bool {
    const NOT: &[&str] = &[
        "ib_logfile",
        "ib_buffer_pool",
        "ibtmp",
        "xtrabackup_",
        "hotbak_",
        "aria_log",
        "mysql_upgrade_info",
    ];
    !rel.contains('/') && !rel.contains('.') && !NOT.iter().any(|p| rel.starts_with(p))
}

impl Visitor for Collector {
    fn open(&self, _stored: &RelPath, logical: &RelPath) -> Box<dyn FileVisitor> {
        let rel = logical.as_str();
        let check = if rel == "ib_logfile0" {
            Check::Redo(Box::new(RedoWalker::new(None)))
        } else if [Checkpoints::FILE, BackupMyCnf::FILE, XtrabackupInfo::FILE].contains(&rel) {
            Check::Meta(Vec::new(), false)
        } else if is_innodb_file(rel, &BTreeSet::new()) {
            Check::Pages(Box::new(PageChecker::new(rel, None, false)))
        } else if system_candidate(rel) {
            Check::Pages(Box::new(PageChecker::new(rel, None, true)))
        } else {
            Check::Skip
        };
        Box::new(FileCheckVisitor {
            rel: rel.to_owned(),
            check,
            into: self.clone(),
        })
    }
}

impl FileVisitor for FileCheckVisitor {
    fn data(&mut self, bytes: &[u8]) {
        match &mut self.check {
            Check::Pages(c) => c.feed(bytes),
            Check::Redo(w) => w.feed(bytes),
            Check::Meta(v, over) => {
                if v.len() + bytes.len() > MAX_META_LEN {
                    *over = true;
                } else {
                    v.extend_from_slice(bytes);
                }
            }
            Check::Skip => {}
        }
    }

    fn close(self: Box<Self>) {
        let FileCheckVisitor { rel, check, into } = *self;
        into.display.meter().file_done();
        let mut g = into.lock();
        g.files += 1;
        match check {
            Check::Pages(c) => {
                g.pages.insert(rel, c.finish());
            }
            Check::Redo(w) => g.redo = Some(w.finish()),
            Check::Meta(_, true) => {
                g.meta
                    .insert(rel, Err(format!("larger than {MAX_META_LEN} bytes")));
            }
            Check::Meta(v, false) => {
                let t = String::from_utf8(v).map_err(|_| "not UTF-8 text".to_owned());
                g.meta.insert(rel, t);
            }
            Check::Skip => {}
        }
    }
}

/// The container finding for an extract error that is damage (corrupt or
/// truncated input); `None` for the others (I/O, usage: no verification).
fn container_finding(e: &extract::Error, input: &str) -> Option<Finding> {
    if !matches!(e.class(), ErrorClass::Corrupt | ErrorClass::Truncated) {
        return None;
    }
    let detail = match e {
        extract::Error::Stream { source, .. } => source.to_string(),
        other => {
            let s = other.to_string();
            s.strip_prefix(&format!("{input}: "))
                .map_or_else(|| s.clone(), str::to_owned)
        }
    };
    Some(Finding {
        class: Class::Stream,
        file: input.to_owned(),
        detail,
    })
}

/// Verify the xbstream read from `input` (named `input_name` in findings)
/// without writing anything: the container (every check of xbextract), the
/// files against the manifest (size and BLAKE3 computed as they pass), the
/// InnoDB pages, the redo log to `last_lsn`, the metadata. Container damage
/// stops the reading; what was checked up to there is reported with it.
///
/// # Errors
/// [`Error::Stream`] when the stream cannot be verified at all: an I/O
/// error reading it, an encrypted file without a key or with the wrong key.
/// Damage is reported in [`Report::findings`].
pub async fn verify_stream<R: AsyncRead + Unpin>(
    plan: &StreamPlan,
    input: R,
    input_name: &str,
) -> Result<Report, Error> {
    let xplan = extract::Plan {
        dir: ".".into(),
        parallel: plan.parallel.max(1),
        force: false,
        sync: false,
        verbose: false,
        list: true,
        decode: DecodeOptions {
            // Everything is decoded, mariabackup's `.qp` too.
            decompress: Some(true),
            ..plan.decode.clone()
        },
    };
    let display = Arc::new(Display::new("verify", plan.progress, false));
    display.meter().add_total(0, plan.size.unwrap_or(0));
    let ticker = display.start();
    let collector = Collector {
        collected: Arc::default(),
        display: display.clone(),
    };
    let visited = extract::visit(
        &xplan,
        Counted::new(input, display.clone()),
        input_name,
        Arc::new(collector.clone()),
    )
    .await;
    drop(ticker);
    display.finish();
    let collected = std::mem::take(&mut *collector.lock());
    let mut r = Report::default();
    match visited {
        Ok(v) => {
            evaluate(&mut r, &v, collected, input_name);
            for w in v.warnings {
                r.notes.push(w);
            }
        }
        Err(e) => {
            let f = container_finding(&e, input_name).ok_or(Error::Stream(e))?;
            r.findings.push(f);
            r.notes.push(
                "the stream could not be read past the damage: completeness, redo and metadata were not checked; the pages of the files that ended before it were"
                    .into(),
            );
            r.files = collected.files;
            let mut scratch = Report::default();
            let meta = metadata(&BTreeSet::new(), &collected, &mut scratch);
            pages(&mut r, collected.pages, &meta, false, &Logged::default());
        }
    }
    r.findings
        .sort_by(|a, b| (a.class, &a.file).cmp(&(b.class, &b.file)));
    Ok(r)
}

fn metadata(files: &BTreeSet<String>, c: &Collected, r: &mut Report) -> super::Meta {
    let text = |name: &str| c.meta.get(name).cloned();
    let ck = match text(Checkpoints::FILE) {
        Some(Ok(t)) => Some(t),
        Some(Err(e)) => {
            r.findings.push(Finding {
                class: Class::Metadata,
                file: Checkpoints::FILE.into(),
                detail: e,
            });
            // Present but unusable: parsed as empty, which fails and says so.
            Some(String::new())
        }
        None => None,
    };
    check_metadata(
        files,
        ck.as_deref(),
        text(BackupMyCnf::FILE).unwrap_or_else(|| Err("not in the stream".into())),
        text(XtrabackupInfo::FILE).and_then(Result::ok),
        r,
    )
}

/// Completeness, metadata and redo once the stream was read to its end.
fn evaluate(r: &mut Report, v: &extract::Visited, c: Collected, input: &str) {
    r.files = v.files.len() as u64;
    // Each decoded name once.
    let mut by_name: BTreeMap<&str, &extract::VisitedFile> = BTreeMap::new();
    for f in &v.files {
        if let Some(prev) = by_name.insert(f.logical.as_str(), f) {
            r.findings.push(Finding {
                class: Class::Stream,
                file: f.logical.clone(),
                detail: format!("decoded twice, from {} and from {}", prev.stored, f.stored),
            });
        }
    }
    let files: BTreeSet<String> = by_name.keys().map(|s| (*s).to_owned()).collect();
    let m = metadata(&files, &c, r);
    // The manifest last, with the stream info's stage chain.
    let manifest = by_name.get(MANIFEST_NAME).and_then(|f| f.content.clone());
    if v.hotbak {
        if manifest.is_none() {
            r.findings.push(Finding {
                class: Class::Stream,
                file: input.to_owned(),
                detail: format!(
                    "truncated stream: input ended at offset {} without the hotbak manifest ({MANIFEST_NAME})",
                    v.bytes_in
                ),
            });
        }
        let info = by_name
            .get(STREAM_INFO_NAME)
            .and_then(|f| f.content.as_deref())
            .and_then(|b| StreamInfo::from_bytes(b).ok());
        let mf = manifest
            .as_deref()
            .and_then(|b| Manifest::from_bytes(b).ok());
        if let (Some(info), Some(mf)) = (info, mf) {
            if info.chain != mf.chain {
                r.findings.push(Finding {
                    class: Class::Metadata,
                    file: MANIFEST_NAME.into(),
                    detail: format!(
                        "stage chain {:?} differs from the stream header's {:?}",
                        mf.chain, info.chain
                    ),
                });
            }
        }
    } else {
        r.notes.push(
            "the stream has no hotbak stream info (a stock archive): it was read as one".into(),
        );
    }
    let jobs = if v.hotbak && manifest.is_none() {
        // The cut is the finding; every file would be "unlisted" otherwise.
        Vec::new()
    } else {
        check_manifest(&m, manifest.as_deref(), &files, r)
    };
    for (rel, size, hash) in jobs {
        if let Some(f) = by_name.get(rel.as_str()) {
            r.findings
                .extend(content_finding(&rel, (f.size, &f.blake3), (size, &hash)));
        }
    }
    let logged = if r.prepared {
        Logged::default()
    } else {
        let walk = c.redo.unwrap_or_else(|| Err("not in the stream".into()));
        check_redo(walk, m.ck.as_ref(), r)
    };
    let prepared = r.prepared;
    pages(r, c.pages, &m, prepared, &logged);
    for s in &m.sys_files {
        if files.contains(s) && *s != m.sys_first {
            r.notes.push(format!(
                "{s}: a later file of the system tablespace; its pages are not checked in a stream (extract and use --target-dir)"
            ));
        }
    }
}

/// Fold the page checks of the files that are InnoDB data files (by the
/// configuration now known) into the report.
fn pages(
    r: &mut Report,
    mut checks: BTreeMap<String, FileCheck>,
    m: &super::Meta,
    prepared: bool,
    logged: &Logged,
) {
    checks.retain(|rel, _| {
        let follow_on = m.sys_files.contains(rel) && *rel != m.sys_first;
        is_innodb_file(rel, &m.sys_files) && !follow_on
    });
    fold_pages(r, checks, prepared, logged);
}

/// Verify the stream and print the report; an error when anything was found.
///
/// # Errors
/// [`Error::Damaged`] (exit 3) when there are findings; others as [`verify_stream`].
pub async fn run_stream<R: AsyncRead + Unpin>(
    plan: &StreamPlan,
    input: R,
    input_name: &str,
) -> Result<Report, Error> {
    conclude(verify_stream(plan, input, input_name).await?)
}
