//! The manifest stage: first stage after the producers. It emits the
//! stream-info header before anything else, hashes every file's original
//! bytes (BLAKE3) and, at `End`, emits the manifest as the last file.

use std::collections::{HashMap, HashSet};

use bytes::Bytes;
use tokio::sync::mpsc;

use super::runner::StageSpec;
use super::{send, Error, FileId, FileMeta, Frame, Report, Result, StageDone};
use crate::format::manifest::{self, Entry, Manifest, StreamInfo, MANIFEST_NAME, STREAM_INFO_NAME};
use crate::format::path::RelPath;

/// Frames at least this large are hashed on several threads.
const PARALLEL_HASH_MIN: usize = 8 << 20;

type RenameFn = Box<
    dyn Fn(&FileMeta) -> std::result::Result<RelPath, crate::transform::TransformError>
        + Send
        + Sync,
>;

struct Open {
    path: RelPath,
    stored: String,
    size: u64,
    hash: blake3::Hasher,
}

/// See the module docs.
pub struct ManifestStage {
    chain: Vec<String>,
    /// Renames of the downstream stages, to compute stored names.
    renames: Vec<RenameFn>,
    key_id: Option<String>,
    exec: crate::sched::Bulk,
}

impl ManifestStage {
    /// Build from the downstream stage specs.
    pub(crate) fn new(
        stages: &[StageSpec],
        key_id: Option<String>,
        exec: crate::sched::Bulk,
    ) -> Self {
        // Stage specs cannot be cloned, so record the chain by name and compute
        // stored names through a probe of each stage's rename via its spec.
        let chain = stages.iter().map(|s| s.name().to_owned()).collect();
        let renames = stages
            .iter()
            .map(|s| {
                let probe = s.stored_name_fn();
                let b: Box<dyn Fn(&FileMeta) -> _ + Send + Sync> =
                    Box::new(move |m: &FileMeta| probe(m));
                b
            })
            .collect();
        ManifestStage {
            chain,
            renames,
            key_id,
            exec,
        }
    }

    fn stored(&self, meta: &FileMeta) -> Result<String> {
        let mut m = meta.clone();
        for r in &self.renames {
            m.path = r(&m).map_err(|source| Error::Transform {
                stage: "manifest",
                path: meta.path.to_string(),
                source,
            })?;
        }
        Ok(m.path.to_string())
    }

    pub(crate) async fn run(
        self,
        mut rx: mpsc::Receiver<Frame>,
        tx: mpsc::Sender<Frame>,
    ) -> Result<StageDone> {
        const INFO_ID: FileId = FileId(u64::MAX - 1);
        const MANIFEST_ID: FileId = FileId(u64::MAX);
        let info = StreamInfo {
            version: manifest::VERSION,
            tool: manifest::tool_string(),
            chain: self.chain.clone(),
            key_id: self.key_id.clone(),
        };
        let info_path = RelPath::new(STREAM_INFO_NAME).expect("reserved name is valid");
        send(
            &tx,
            Frame::Open {
                id: INFO_ID,
                meta: FileMeta {
                    path: info_path,
                    compress: false,
                    encrypt: false,
                },
            },
        )
        .await?;
        send(
            &tx,
            Frame::Data {
                id: INFO_ID,
                bytes: Bytes::from(info.to_bytes()),
            },
        )
        .await?;
        send(&tx, Frame::Close { id: INFO_ID }).await?;

        let mut open: HashMap<FileId, Open> = HashMap::new();
        let mut seen: HashSet<RelPath> = HashSet::new();
        let mut entries = Vec::new();
        while let Some(frame) = rx.recv().await {
            match frame {
                Frame::Open { id, meta } => {
                    let p = meta.path.as_str();
                    if p == MANIFEST_NAME || p == STREAM_INFO_NAME {
                        return Err(Error::Protocol(format!("{p} is a reserved name")));
                    }
                    if !seen.insert(meta.path.clone()) {
                        return Err(Error::Duplicate(meta.path.to_string()));
                    }
                    let stored = self.stored(&meta)?;
                    open.insert(
                        id,
                        Open {
                            path: meta.path.clone(),
                            stored,
                            size: 0,
                            hash: blake3::Hasher::new(),
                        },
                    );
                    send(&tx, Frame::Open { id, meta }).await?;
                }
                Frame::Data { id, bytes } => {
                    let o = open
                        .get_mut(&id)
                        .ok_or_else(|| Error::Protocol(format!("data for unknown file {id:?}")))?;
                    o.size += bytes.len() as u64;
                    if bytes.len() >= PARALLEL_HASH_MIN {
                        // Large frames: hash on the blocking pool, spread over the cores.
                        let mut h = std::mem::take(&mut o.hash);
                        let b = bytes.clone();
                        o.hash = tokio::task::spawn_blocking(move || {
                            h.update_rayon(&b);
                            h
                        })
                        .await
                        .map_err(|e| Error::Task(e.to_string()))?;
                    } else if self.exec.yields() {
                        // Bulk work yields to a busy server: hash in the idle class.
                        let mut h = std::mem::take(&mut o.hash);
                        let b = bytes.clone();
                        o.hash = self
                            .exec
                            .run(move || {
                                h.update(&b);
                                h
                            })
                            .await
                            .map_err(|e| Error::Task(e.to_string()))?;
                    } else {
                        // A frame (1 MiB) hashes in a fraction of a millisecond:
                        // cheaper here than two thread handoffs.
                        o.hash.update(&bytes);
                    }
                    send(&tx, Frame::Data { id, bytes }).await?;
                }
                Frame::Close { id } => {
                    let o = open
                        .remove(&id)
                        .ok_or_else(|| Error::Protocol(format!("close of unknown file {id:?}")))?;
                    entries.push(Entry {
                        path: o.path.to_string(),
                        stored: o.stored,
                        size: o.size,
                        blake3: o.hash.finalize().to_hex().to_string(),
                    });
                    send(&tx, Frame::Close { id }).await?;
                }
                Frame::End => {
                    if let Some(o) = open.values().next() {
                        return Err(Error::Protocol(format!("file {} was never closed", o.path)));
                    }
                    let m = Manifest {
                        version: manifest::VERSION,
                        tool: manifest::tool_string(),
                        chain: self.chain,
                        files: entries,
                    };
                    let meta = FileMeta::uncompressed(
                        RelPath::new(MANIFEST_NAME).expect("reserved name is valid"),
                    );
                    send(
                        &tx,
                        Frame::Open {
                            id: MANIFEST_ID,
                            meta,
                        },
                    )
                    .await?;
                    send(
                        &tx,
                        Frame::Data {
                            id: MANIFEST_ID,
                            bytes: Bytes::from(m.to_bytes()),
                        },
                    )
                    .await?;
                    send(&tx, Frame::Close { id: MANIFEST_ID }).await?;
                    send(&tx, Frame::End).await?;
                    return Ok(StageDone {
                        report: Some(Report {
                            manifest: Some(m),
                            ..Report::default()
                        }),
                    });
                }
            }
        }
        Err(Error::Closed)
    }
}
