//! The xbextract engine: read an xbstream from any async reader, check
//! every chunk, decode (decrypt, then decompress) each file in the same
//! pass, write it safely under the target directory, and prove
//! completeness against the manifest.
//!
//! Safety rules (format-spec/xbstream.md, "Extraction"):
//! - Every path is a [`RelPath`]; parents are created one component at a
//!   time and never through a symlink; files are created with
//!   `O_CREAT|O_EXCL|O_NOFOLLOW` and never overwrite an existing file unless
//!   `--force`.
//! - Data is written into a staging directory (`.xbextract-partial-PID`). A file gets its
//!   final name when it is complete: at its `E` chunk for a stock stream, and
//!   only after the manifest verified *every* file for a hotbak stream.
//! - On any error, every partial file of this run is removed, so no file
//!   that looks complete is left behind. The exit code is non-zero.

mod at_rest;
mod decode;
mod dirwriter;
mod glue;
mod input;
mod worker;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::error::{Classify, ErrorClass};
use crate::format::manifest::{self, Manifest, StreamInfo, MANIFEST_NAME, STREAM_INFO_NAME};
use crate::format::path::{PathError, RelPath};
use crate::format::xbstream::{self, ChunkType, Decoder};
use crate::transform::TransformError;

pub use at_rest::{decode_dir, AtRestPlan, AtRestSummary};
pub use decode::{DecodeOptions, DecompressFactory, InverseFactory, ENCRYPTED_SUFFIX};
pub use dirwriter::STAGING_PREFIX;
pub use glue::{decoders, install_decoders};
pub use input::DropBehind;

/// Errors of the extractor. Each names the path and, where it applies, the stream offset.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Stopped by a signal (the partial files were removed).
    #[error("{0}: the extraction was stopped; its partial files were removed")]
    Interrupted(#[from] crate::interrupt::Interrupted),
    /// The container is corrupt or truncated.
    #[error("{input}: {source}")]
    Stream {
        /// Input name (`stdin`, a socket address).
        input: String,
        /// The cause.
        #[source]
        source: xbstream::Error,
    },
    /// A path in the stream was refused.
    #[error("refused path {raw:?} at stream offset {offset}: {source}")]
    Path {
        /// Raw path, lossy.
        raw: String,
        /// Stream offset of the chunk.
        offset: u64,
        /// Why.
        #[source]
        source: PathError,
    },
    /// A chunk's file offset is not the next byte of the file.
    #[error("{path}: out-of-order chunk at stream offset {offset}: file offset {got}, expected {expected}")]
    Offset {
        /// The file.
        path: String,
        /// Stream offset of the chunk.
        offset: u64,
        /// Expected file offset.
        expected: u64,
        /// File offset in the chunk.
        got: u64,
    },
    /// A file appears again after its end.
    #[error("{path}: appears again at stream offset {offset} after its end (duplicate path)")]
    Duplicate {
        /// The file.
        path: String,
        /// Stream offset.
        offset: u64,
    },
    /// The directory writer refused (an existing file, a symlink on the
    /// way) or failed.
    #[error(transparent)]
    Dir(#[from] crate::sink::safe_dir::Error),
    /// Reading the input or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or input.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Decrypting or decompressing failed.
    #[error("{path}: {source}")]
    Transform {
        /// The stored file name.
        path: String,
        /// The cause.
        #[source]
        source: TransformError,
    },
    /// The stream ended before files were complete.
    #[error("truncated stream: input ended at offset {offset} before the end of {}", list(.missing))]
    Incomplete {
        /// Stream offset of the end of input.
        offset: u64,
        /// Files without their `E` chunk.
        missing: Vec<String>,
    },
    /// The input was empty (the producer died before writing anything?).
    #[error("{input}: empty stream: nothing to extract (did the backup fail before it started?)")]
    Empty {
        /// Input name.
        input: String,
    },
    /// A hotbak stream ended without its manifest.
    #[error("truncated stream: input ended at offset {offset} without the hotbak manifest ({MANIFEST_NAME}); the backup is incomplete")]
    NoManifest {
        /// Stream offset of the end of input.
        offset: u64,
    },
    /// A file differs from the manifest, is missing, or is not listed.
    #[error("manifest check failed: {0}")]
    Manifest(String),
    /// The manifest or stream info could not be parsed.
    #[error(transparent)]
    ManifestFormat(#[from] manifest::Error),
    /// A chunk type that is refused here.
    #[error("{path}: {what} chunk at stream offset {offset} refused: {why}")]
    Refused {
        /// The file.
        path: String,
        /// Chunk kind.
        what: &'static str,
        /// Stream offset.
        offset: u64,
        /// Why.
        why: &'static str,
    },
    /// Bad options (missing key, ...).
    #[error("{0}")]
    Usage(String),
    /// A worker thread died.
    #[error("extract worker failed: {0}")]
    Worker(String),
}

fn list(v: &[String]) -> String {
    const SHOW: usize = 5;
    let mut s = v.iter().take(SHOW).cloned().collect::<Vec<_>>().join(", ");
    if v.len() > SHOW {
        s.push_str(&format!(" and {} more", v.len() - SHOW));
    }
    s
}

impl Classify for Error {
    fn class(&self) -> ErrorClass {
        match self {
            Error::Stream { source, .. } => source.class(),
            Error::Transform { source, .. } => source.class(),
            Error::Incomplete { .. } | Error::NoManifest { .. } | Error::Empty { .. } => {
                ErrorClass::Truncated
            }
            Error::Path { .. }
            | Error::Offset { .. }
            | Error::Duplicate { .. }
            | Error::Manifest(_)
            | Error::ManifestFormat(_)
            | Error::Refused { .. } => ErrorClass::Corrupt,
            Error::Dir(e) => e.class(),
            Error::Io { .. } | Error::Worker(_) => ErrorClass::Io,
            Error::Usage(_) => ErrorClass::Usage,
            Error::Interrupted(e) => e.class(),
        }
    }
}

/// Result alias.
pub type Result<T> = std::result::Result<T, Error>;

/// What to do.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Target directory (created if missing).
    pub dir: PathBuf,
    /// Worker threads.
    pub parallel: usize,
    /// Overwrite existing files.
    pub force: bool,
    /// fsync files and directories before reporting success.
    pub sync: bool,
    /// Print each file as it completes.
    pub verbose: bool,
    /// Only list the files; write nothing.
    pub list: bool,
    /// Decryption and decompression.
    pub decode: DecodeOptions,
}

/// What happened.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    /// Files written (final names).
    pub files: u64,
    /// Bytes written (after decoding).
    pub bytes_out: u64,
    /// Stream bytes read.
    pub bytes_in: u64,
    /// True when a hotbak manifest verified every file.
    pub verified: bool,
    /// Warnings for the user (e.g. "no manifest: completeness cannot be proven").
    pub warnings: Vec<String>,
}

/// Per-file facts the reader keeps (the workers own the file handles).
struct FileTrack {
    next_offset: u64,
    worker: usize,
}

/// A finished file, reported by a worker.
#[derive(Clone, Debug)]
pub(crate) struct Finished {
    stored: String,
    path: RelPath,
    /// The original path the manifest names (differs from `path` when a
    /// compressed file is kept compressed).
    logical: RelPath,
    size: u64,
    blake3: String,
    /// Content, kept only for the manifest and stream-info files.
    content: Option<Vec<u8>>,
}

/// Extract one stream.
///
/// # Errors
/// Any [`Error`]; on error the partial files of this run are removed.
pub async fn extract<R: AsyncRead + Unpin>(
    plan: &Plan,
    mut input: R,
    input_name: &str,
) -> Result<Summary> {
    if !plan.list {
        std::fs::create_dir_all(&plan.dir).map_err(|source| Error::Io {
            path: plan.dir.display().to_string(),
            source,
        })?;
    }
    let staging = if plan.list {
        None
    } else {
        Some(dirwriter::create_staging(plan)?)
    };
    let pool = worker::Pool::start(plan, plan.parallel.max(1), staging, None);
    let shared = pool.shared();
    run_pool(plan, &mut input, input_name, pool)
        .await
        .and_then(|(state, done)| {
            finalize(plan, state, done, &shared).and_then(|s| shared.finish().map(|()| s))
        })
        .inspect_err(|_| shared.cleanup())
}

/// Read the stream into the workers, then stop them: the reader's state
/// and the finished files, or the first error.
async fn run_pool<R: AsyncRead + Unpin>(
    plan: &Plan,
    input: &mut R,
    input_name: &str,
    pool: worker::Pool,
) -> Result<(ReadState, Vec<Finished>)> {
    let result = tokio::select! {
        r = read_loop(plan, input, input_name, &pool) => r,
        sig = crate::interrupt::wait() => Err(crate::interrupt::Interrupted(sig).into()),
    };
    let finished = tokio::task::spawn_blocking(move || pool.join())
        .await
        .unwrap_or_else(|e| Err(Error::Worker(e.to_string())));
    match (result, finished) {
        (Ok(state), Ok(done)) => Ok((state, done)),
        (Err(e), Ok(_)) | (Ok(_), Err(e)) => Err(e),
        // The reader's error is a consequence when a worker failed first.
        (Err(e @ Error::Interrupted(_)), Err(_)) => Err(e),
        (Err(e), Err(w)) => Err(if matches!(e, Error::Worker(_)) { w } else { e }),
    }
}

/// Receives every file's decoded content instead of the directory writer
/// (see [`visit`]). Called on the extract worker that owns the file, so
/// its CPU work runs off the async reader, files in parallel.
pub trait Visitor: Send + Sync {
    /// A file starts: `stored` as named in the stream, `logical` the path
    /// its decoded content has (the one a manifest names).
    fn open(&self, stored: &RelPath, logical: &RelPath) -> Box<dyn FileVisitor>;
}

/// One file's decoded content, in order.
pub trait FileVisitor: Send {
    /// The next bytes (decrypted and decompressed).
    fn data(&mut self, bytes: &[u8]);
    /// The file's `E` chunk: every byte was given.
    fn close(self: Box<Self>);
}

/// One file a [`visit`] decoded to its end.
#[derive(Clone, Debug)]
pub struct VisitedFile {
    /// The path in the stream.
    pub stored: String,
    /// The decoded content's path (the one a manifest names).
    pub logical: String,
    /// Decoded size.
    pub size: u64,
    /// BLAKE3 of the decoded content, hex.
    pub blake3: String,
    /// Content, kept only for the manifest and stream-info files.
    pub content: Option<Vec<u8>>,
}

/// What a [`visit`] read.
#[derive(Clone, Debug, Default)]
pub struct Visited {
    /// Stream bytes read.
    pub bytes_in: u64,
    /// The stream starts with hotbak's stream info.
    pub hotbak: bool,
    /// Files decoded to their end, in the order they ended.
    pub files: Vec<VisitedFile>,
    /// Remarks (ignorable chunk types skipped).
    pub warnings: Vec<String>,
}

/// Read one stream with every container check of [`extract`] (magic,
/// CRC-32, contiguous offsets, paths, duplicates, authenticated decryption,
/// stream info first, truncation), decoding each file in the same pass and
/// handing its content to `visitor`; nothing is written. Completeness
/// against the manifest is left to the caller, which gets every file's size
/// and BLAKE3 and the manifest's content.
///
/// # Errors
/// The first container, decoding or I/O error, as [`extract`].
pub async fn visit<R: AsyncRead + Unpin>(
    plan: &Plan,
    mut input: R,
    input_name: &str,
    visitor: Arc<dyn Visitor>,
) -> Result<Visited> {
    let plan = Plan {
        list: true,
        sync: false,
        ..plan.clone()
    };
    let pool = worker::Pool::start(&plan, plan.parallel.max(1), None, Some(visitor));
    let (state, done) = run_pool(&plan, &mut input, input_name, pool).await?;
    Ok(Visited {
        bytes_in: state.bytes_in,
        hotbak: state.hotbak,
        warnings: state.warnings,
        files: done
            .into_iter()
            .map(|f| VisitedFile {
                stored: f.stored,
                logical: f.logical.to_string(),
                size: f.size,
                blake3: f.blake3,
                content: f.content,
            })
            .collect(),
    })
}

struct ReadState {
    bytes_in: u64,
    hotbak: bool,
    warnings: Vec<String>,
}

async fn read_loop<R: AsyncRead + Unpin>(
    plan: &Plan,
    input: &mut R,
    input_name: &str,
    pool: &worker::Pool,
) -> Result<ReadState> {
    let mut dec = Decoder::new();
    let mut buf = BytesMut::with_capacity(4 << 20);
    let mut files: HashMap<RelPath, FileTrack> = HashMap::new();
    let mut done: HashSet<RelPath> = HashSet::new();
    let mut first = true;
    let mut hotbak = false;
    // A hotbak stream's files are decoded by the chain its stream info
    // records; the stream info is gathered here as it arrives (it comes
    // first and ends before any other file starts).
    let mut layers = decode::Layers::Stock;
    let mut info: Option<Vec<u8>> = None;
    let mut warnings = Vec::new();
    let mut next_worker = 0usize;
    let stream_err = |source| Error::Stream {
        input: input_name.to_owned(),
        source,
    };
    loop {
        // Decode everything buffered, then read more.
        while let Some(chunk) = dec.decode(&mut buf).map_err(stream_err)? {
            let offset = chunk.stream_offset;
            let path = RelPath::from_bytes(&chunk.path).map_err(|source| Error::Path {
                raw: chunk.path_lossy(),
                offset,
                source,
            })?;
            if path
                .components()
                .next()
                .is_some_and(|c| c.starts_with(STAGING_PREFIX))
            {
                return Err(Error::Refused {
                    path: path.to_string(),
                    what: "file",
                    offset,
                    why: "the name is reserved for xbextract's staging directory",
                });
            }
            if first {
                first = false;
                hotbak = path.as_str() == STREAM_INFO_NAME;
                if hotbak {
                    layers = decode::Layers::HotbakSuffixes;
                    info = Some(Vec::new());
                }
            }
            if let Some(bytes) = info.as_mut() {
                if path.as_str() != STREAM_INFO_NAME {
                    return Err(Error::Manifest(format!(
                        "{path} starts at stream offset {offset}, before the stream info ends"
                    )));
                }
                match chunk.ty {
                    ChunkType::Payload => {
                        bytes.extend_from_slice(&chunk.payload);
                        if bytes.len() > manifest::MAX_MANIFEST_LEN {
                            return Err(manifest::Error::TooLarge {
                                what: "stream info",
                                len: bytes.len(),
                            }
                            .into());
                        }
                    }
                    ChunkType::Eof => {
                        let recorded = StreamInfo::from_bytes(bytes)?;
                        layers = decode::Layers::Recorded(recorded.chain.into());
                        info = None;
                    }
                    _ => {}
                }
            }
            match chunk.ty {
                ChunkType::Payload | ChunkType::Eof => {
                    if done.contains(&path) {
                        return Err(Error::Duplicate {
                            path: path.to_string(),
                            offset,
                        });
                    }
                    let track = match files.get_mut(&path) {
                        Some(t) => t,
                        None => {
                            let w = next_worker % pool.len();
                            next_worker += 1;
                            pool.send(
                                w,
                                worker::Msg::Open {
                                    path: path.clone(),
                                    layers: layers.clone(),
                                },
                            )
                            .await?;
                            files.entry(path.clone()).or_insert(FileTrack {
                                next_offset: 0,
                                worker: w,
                            })
                        }
                    };
                    if chunk.ty == ChunkType::Payload {
                        if chunk.file_offset != track.next_offset {
                            return Err(Error::Offset {
                                path: path.to_string(),
                                offset,
                                expected: track.next_offset,
                                got: chunk.file_offset,
                            });
                        }
                        track.next_offset += chunk.payload.len() as u64;
                        if !chunk.payload.is_empty() {
                            pool.send(
                                track.worker,
                                worker::Msg::Data {
                                    path,
                                    bytes: chunk.payload,
                                },
                            )
                            .await?;
                        }
                    } else {
                        let w = track.worker;
                        files.remove(&path);
                        done.insert(path.clone());
                        pool.send(w, worker::Msg::Close { path }).await?;
                    }
                }
                ChunkType::Remove | ChunkType::Rename => {
                    let what = if chunk.ty == ChunkType::Remove {
                        "remove (D)"
                    } else {
                        "rename (R)"
                    };
                    if hotbak {
                        return Err(Error::Refused {
                            path: path.to_string(),
                            what,
                            offset,
                            why: "hotbak streams never contain it",
                        });
                    }
                    if files.contains_key(&path) {
                        return Err(Error::Refused {
                            path: path.to_string(),
                            what,
                            offset,
                            why: "the file is still open",
                        });
                    }
                    let new_path = if chunk.ty == ChunkType::Rename {
                        let np =
                            RelPath::from_bytes(&chunk.new_path).map_err(|source| Error::Path {
                                raw: String::from_utf8_lossy(&chunk.new_path).into_owned(),
                                offset,
                                source,
                            })?;
                        Some(np)
                    } else {
                        None
                    };
                    // Applied in stream order: wait for every worker to drain first.
                    pool.barrier().await?;
                    if !plan.list {
                        dirwriter::apply_remove_rename(plan, &path, new_path.as_ref())?;
                    }
                    done.remove(&path);
                    if let Some(np) = new_path {
                        done.insert(np);
                    }
                }
                ChunkType::Unknown(t) => {
                    warnings.push(format!(
                        "skipped ignorable chunk type 0x{t:02x} for {path} at offset {offset}"
                    ));
                }
                ChunkType::Sparse => {
                    return Err(Error::Refused {
                        path: path.to_string(),
                        what: "sparse/seek (S)",
                        offset,
                        why: "unsupported chunk type",
                    })
                }
            }
        }
        buf.reserve(1 << 20);
        let n = input.read_buf(&mut buf).await.map_err(|source| Error::Io {
            path: input_name.to_owned(),
            source,
        })?;
        if n == 0 {
            break;
        }
    }
    dec.decode_eof(&buf).map_err(stream_err)?;
    if dec.offset() == 0 {
        return Err(Error::Empty {
            input: input_name.to_owned(),
        });
    }
    if !files.is_empty() {
        let mut missing: Vec<String> = files.keys().map(ToString::to_string).collect();
        missing.sort();
        return Err(Error::Incomplete {
            offset: dec.offset(),
            missing,
        });
    }
    Ok(ReadState {
        bytes_in: dec.offset(),
        hotbak,
        warnings,
    })
}

fn finalize(
    plan: &Plan,
    state: ReadState,
    done: Vec<Finished>,
    shared: &worker::SharedState,
) -> Result<Summary> {
    let mut summary = Summary {
        bytes_in: state.bytes_in,
        warnings: state.warnings,
        ..Summary::default()
    };
    let by_stored: HashMap<&str, &Finished> = done.iter().map(|f| (f.stored.as_str(), f)).collect();
    if state.hotbak {
        let info_f = by_stored
            .get(STREAM_INFO_NAME)
            .ok_or_else(|| Error::Manifest("stream info missing".into()))?;
        let info = StreamInfo::from_bytes(info_f.content.as_deref().unwrap_or_default())?;
        let encrypted = info.key_id.is_some();
        let mf_name = if encrypted {
            format!("{MANIFEST_NAME}{}", decode::ENCRYPTED_SUFFIX)
        } else {
            MANIFEST_NAME.to_owned()
        };
        let Some(mf) = by_stored.get(mf_name.as_str()) else {
            return Err(Error::NoManifest {
                offset: state.bytes_in,
            });
        };
        let m = Manifest::from_bytes(mf.content.as_deref().unwrap_or_default())?;
        if m.chain != info.chain {
            return Err(Error::Manifest(format!(
                "stage chain {:?} differs from the stream header's {:?}",
                m.chain, info.chain
            )));
        }
        let mut listed = HashSet::new();
        for e in &m.files {
            listed.insert(e.stored.as_str());
            let f = by_stored.get(e.stored.as_str()).ok_or_else(|| {
                Error::Manifest(format!(
                    "{} (stored as {}) is missing from the stream",
                    e.path, e.stored
                ))
            })?;
            if f.logical.as_str() != e.path {
                return Err(Error::Manifest(format!(
                    "{} was extracted as {} but the manifest says {}",
                    e.stored, f.logical, e.path
                )));
            }
            if f.size != e.size || f.blake3 != e.blake3 {
                return Err(Error::Manifest(format!(
                    "{}: size {} blake3 {} differs from the manifest's size {} blake3 {}",
                    e.path, f.size, f.blake3, e.size, e.blake3
                )));
            }
        }
        for f in &done {
            let s = f.stored.as_str();
            if s != STREAM_INFO_NAME && s != mf_name && !listed.contains(s) {
                return Err(Error::Manifest(format!(
                    "{s} is in the stream but not in the manifest"
                )));
            }
        }
        summary.verified = true;
        if !plan.list {
            worker::Pool::commit_all(plan, &done, shared)?;
        }
    } else {
        summary.warnings.push(
            "stream has no hotbak manifest (stock archive): completeness cannot be proven".into(),
        );
    }
    summary.files = done.len() as u64;
    summary.bytes_out = done.iter().map(|f| f.size).sum();
    if plan.sync && !plan.list {
        dirwriter::sync_dirs(plan, &done)?;
    }
    Ok(summary)
}
