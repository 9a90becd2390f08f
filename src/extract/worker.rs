//! Extraction workers: OS threads that own open files, run the inverse
//! chain (CPU work stays off the async reader), hash and write. A file is
//! pinned to one worker, so its chunks are applied in stream order while
//! different files proceed in parallel.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use super::{decode, dirwriter, Error, FileVisitor, Finished, Plan, Result, Visitor};
use crate::format::manifest::{MANIFEST_NAME, MAX_MANIFEST_LEN, STREAM_INFO_NAME};
use crate::format::path::RelPath;
use crate::sink::safe_dir;

/// Messages from the reader.
pub(crate) enum Msg {
    Open {
        path: RelPath,
        layers: decode::Layers,
    },
    Data {
        path: RelPath,
        bytes: Bytes,
    },
    Close {
        path: RelPath,
    },
    Barrier(oneshot::Sender<()>),
}

/// State shared by the workers and the reader.
#[derive(Default)]
pub(crate) struct SharedState {
    /// The staging directory (none in list mode).
    staging: Option<PathBuf>,
    /// Number of the next partial file.
    next: AtomicU64,
    /// Partial files not yet committed, by output path (removed on failure).
    partials: Mutex<HashMap<RelPath, PathBuf>>,
    /// First worker error.
    error: Mutex<Option<Error>>,
    /// Finished files.
    finished: Mutex<Vec<Finished>>,
    /// Receives each file's decoded content (the verifier), if any.
    visitor: Option<Arc<dyn Visitor>>,
}

pub(crate) struct OpenFile {
    stored: RelPath,
    out: RelPath,
    file: Option<File>,
    partial: Option<PathBuf>,
    chain: decode::Chain,
    hash: blake3::Hasher,
    size: u64,
    content: Option<Vec<u8>>,
    hotbak: bool,
    /// Bytes written to `file`, and how far writeback was started (when
    /// the run syncs: see [`WRITEBACK_STEP`]).
    written: u64,
    writeback: Option<u64>,
    /// The visitor's handle on this file.
    visit: Option<Box<dyn FileVisitor>>,
}

/// With fsync on, start the writeback of every this many bytes as they
/// are written: the disk then works while the stream is decoded instead
/// of all at the final fsync (a single sequential `zstd -d` and `sync`
/// leaves it idle while it decodes).
pub(crate) const WRITEBACK_STEP: u64 = 8 << 20;

/// The worker pool.
pub(crate) struct Pool {
    txs: Vec<mpsc::Sender<Msg>>,
    threads: Vec<JoinHandle<()>>,
    shared: Arc<SharedState>,
}

const QUEUE: usize = 8;

impl Pool {
    pub(crate) fn start(
        plan: &Plan,
        n: usize,
        staging: Option<PathBuf>,
        visitor: Option<Arc<dyn Visitor>>,
    ) -> Self {
        let shared = Arc::new(SharedState {
            staging,
            visitor,
            ..SharedState::default()
        });
        let mut txs = Vec::new();
        let mut threads = Vec::new();
        for i in 0..n {
            let (tx, rx) = mpsc::channel(QUEUE);
            let plan = plan.clone();
            let shared2 = shared.clone();
            let h = std::thread::Builder::new()
                .name(format!("xbextract-{i}"))
                .spawn(move || {
                    if let Err(e) = work(&plan, rx, &shared2) {
                        let mut slot = shared2
                            .error
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner);
                        if slot.is_none() {
                            *slot = Some(e);
                        }
                    }
                })
                .expect("spawning a thread at start-up");
            txs.push(tx);
            threads.push(h);
        }
        Pool {
            txs,
            threads,
            shared,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.txs.len()
    }

    pub(crate) fn shared(&self) -> Arc<SharedState> {
        self.shared.clone()
    }

    fn worker_error(&self) -> Error {
        self.shared
            .error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
            .map_or_else(
                || Error::Worker("a worker stopped".into()),
                |e| Error::Worker(e.to_string()),
            )
    }

    pub(crate) async fn send(&self, w: usize, msg: Msg) -> Result<()> {
        self.txs[w].send(msg).await.map_err(|_| self.worker_error())
    }

    /// Wait until every worker processed everything sent so far.
    pub(crate) async fn barrier(&self) -> Result<()> {
        for w in 0..self.len() {
            let (tx, rx) = oneshot::channel();
            self.send(w, Msg::Barrier(tx)).await?;
            rx.await.map_err(|_| self.worker_error())?;
        }
        Ok(())
    }

    /// Stop the workers and collect the finished files or the first error.
    pub(crate) fn join(self) -> Result<Vec<Finished>> {
        drop(self.txs);
        for t in self.threads {
            if t.join().is_err() {
                return Err(Error::Worker("a worker thread panicked".into()));
            }
        }
        if let Some(e) = self
            .shared
            .error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
        {
            return Err(e);
        }
        let v = std::mem::take(
            &mut *self
                .shared
                .finished
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        Ok(v)
    }

    /// Give every finished (hotbak) file its final name.
    pub(crate) fn commit_all(plan: &Plan, done: &[Finished], shared: &SharedState) -> Result<()> {
        for f in done {
            shared.commit(plan, &f.path)?;
        }
        Ok(())
    }
}

impl OpenFile {
    /// A file being decoded into `file` (at-rest decoding).
    pub(crate) fn at_rest(
        stored: RelPath,
        out: RelPath,
        file: File,
        partial: PathBuf,
        chain: decode::Chain,
    ) -> Self {
        OpenFile {
            stored,
            out,
            file: Some(file),
            partial: Some(partial),
            chain,
            hash: blake3::Hasher::new(),
            size: 0,
            content: None,
            hotbak: true,
            written: 0,
            writeback: None,
            visit: None,
        }
    }

    /// Size and BLAKE3 of the decoded output so far; closes the file.
    pub(crate) fn finish_at_rest(mut self, sync: bool) -> Result<(u64, String)> {
        if let Some(f) = self.file.take() {
            if sync {
                f.sync_all().map_err(|source| Error::Io {
                    path: self.out.to_string(),
                    source,
                })?;
            }
        }
        Ok((self.size, self.hash.finalize().to_hex().to_string()))
    }
}

impl SharedState {
    fn lock_partials(&self) -> std::sync::MutexGuard<'_, HashMap<RelPath, PathBuf>> {
        self.partials
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A fresh partial path for `out`.
    fn new_partial(&self, out: &RelPath) -> Result<PathBuf> {
        let dir = self
            .staging
            .as_ref()
            .ok_or_else(|| Error::Worker("no staging directory".into()))?;
        let p = dir.join(self.next.fetch_add(1, Ordering::Relaxed).to_string());
        if self
            .lock_partials()
            .insert(out.clone(), p.clone())
            .is_some()
        {
            return Err(safe_dir::Error::Exists {
                path: out.to_string(),
            }
            .into());
        }
        Ok(p)
    }

    /// Rename `out`'s partial file to its final name.
    fn commit(&self, plan: &Plan, out: &RelPath) -> Result<()> {
        let p = self.lock_partials().get(out).cloned();
        let Some(p) = p else { return Ok(()) };
        dirwriter::commit(plan, out, &p)?;
        self.lock_partials().remove(out);
        Ok(())
    }

    /// Remove every partial file of this run and the staging directory.
    pub(crate) fn cleanup(&self) {
        for (_, p) in self.lock_partials().drain() {
            let _ = std::fs::remove_file(&p);
        }
        if let Some(d) = &self.staging {
            let _ = std::fs::remove_dir_all(d);
        }
    }

    /// Remove the (now empty) staging directory after success.
    pub(crate) fn finish(&self) -> Result<()> {
        if let Some(d) = &self.staging {
            std::fs::remove_dir(d).map_err(|source| Error::Io {
                path: d.display().to_string(),
                source,
            })?;
        }
        Ok(())
    }
}

fn keep_content(stored: &RelPath) -> bool {
    let s = stored.as_str();
    s == STREAM_INFO_NAME
        || s == MANIFEST_NAME
        || s == format!("{MANIFEST_NAME}{}", decode::ENCRYPTED_SUFFIX)
}

fn work(plan: &Plan, mut rx: mpsc::Receiver<Msg>, shared: &SharedState) -> Result<()> {
    let mut files: HashMap<RelPath, OpenFile> = HashMap::new();
    while let Some(msg) = rx.blocking_recv() {
        match msg {
            Msg::Barrier(tx) => {
                let _ = tx.send(());
            }
            Msg::Open { path, layers } => {
                let (out, chain) = decode::chain(&path, &layers, &plan.decode)?;
                let hotbak = layers.is_hotbak();
                let (file, partial) = if plan.list {
                    (None, None)
                } else {
                    let p = shared.new_partial(&out)?;
                    let f = dirwriter::create_partial(plan, &out, &p)?;
                    (Some(f), Some(p))
                };
                let content = keep_content(&path).then(Vec::new);
                let visit = shared
                    .visitor
                    .as_ref()
                    .map(|v| v.open(&path, chain.logical.as_ref().unwrap_or(&out)));
                files.insert(
                    path.clone(),
                    OpenFile {
                        stored: path,
                        out,
                        file,
                        partial,
                        chain,
                        hash: blake3::Hasher::new(),
                        size: 0,
                        content,
                        hotbak,
                        written: 0,
                        writeback: plan.sync.then_some(0),
                        visit,
                    },
                );
            }
            Msg::Data { path, bytes } => {
                let f = files
                    .get_mut(&path)
                    .ok_or_else(|| Error::Worker(format!("data for {path} before open")))?;
                push(f, &bytes, false)?;
            }
            Msg::Close { path } => {
                let mut f = files
                    .remove(&path)
                    .ok_or_else(|| Error::Worker(format!("close of {path} before open")))?;
                push(&mut f, &[], true)?;
                if let Some(file) = f.file.take() {
                    let p = f.partial.clone().unwrap_or_default();
                    if plan.sync {
                        file.sync_all().map_err(|source| Error::Io {
                            path: writing(&f.out, &p),
                            source,
                        })?;
                    }
                    drop(file);
                    if !f.hotbak {
                        // Stock stream: the E chunk is all the proof there is.
                        shared.commit(plan, &f.out)?;
                    }
                }
                if let Some(v) = f.visit.take() {
                    v.close();
                } else if plan.verbose || plan.list {
                    println!("{}\t{}", f.out, f.size);
                }
                let logical = f.chain.logical.clone().unwrap_or_else(|| f.out.clone());
                let fin = Finished {
                    stored: f.stored.to_string(),
                    logical,
                    path: f.out,
                    size: f.size,
                    blake3: f.hash.finalize().to_hex().to_string(),
                    content: f.content,
                };
                shared
                    .finished
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push(fin);
            }
        }
    }
    Ok(())
}

/// Largest decompressed piece produced per decoder call: bounds memory, and a
/// small, reused buffer stays in the CPU cache while the kernel copies it into
/// the page cache (4 MiB pieces made that copy cost more than decompression).
const MAX_OUT_PER_CALL: usize = 128 << 10;

/// Run `input` through the file's decoders (or finish them), then hash and write.
/// Decryption runs first and authenticates before anything is decompressed;
/// decompression output is produced and written in bounded pieces.
pub(crate) fn push(f: &mut OpenFile, input: &[u8], finish: bool) -> Result<()> {
    let stored = f.stored.to_string();
    let tf = |source| Error::Transform {
        path: stored.clone(),
        source,
    };
    let plain_owned;
    let plain: &[u8] = match f.chain.decrypt.as_mut() {
        None => input,
        Some(d) => {
            let mut out = Vec::with_capacity(input.len());
            d.update(input, &mut out).map_err(tf)?;
            if finish {
                d.finish(&mut out).map_err(tf)?;
            }
            plain_owned = out;
            &plain_owned
        }
    };
    if let Some(mut dec) = f.chain.decompress.take() {
        let r = decompress_into(f, &mut dec, plain, finish, true, &tf);
        f.chain.decompress = Some(dec);
        return r;
    }
    if let Some(mut ver) = f.chain.verify.take() {
        // Write the stored (compressed) bytes; hash the decompressed content.
        write_file(f, plain)?;
        let r = decompress_into(f, &mut ver, plain, finish, false, &tf);
        f.chain.verify = Some(ver);
        return r;
    }
    write_out(f, plain)
}

/// Decompress `input` in bounded pieces; each piece is hashed and, when
/// `write` is set, written.
fn decompress_into(
    f: &mut OpenFile,
    dec: &mut Box<dyn crate::transform::BoundedInverse>,
    input: &[u8],
    finish: bool,
    write: bool,
    tf: &dyn Fn(crate::transform::TransformError) -> Error,
) -> Result<()> {
    let mut rest = input;
    let mut out = Vec::with_capacity(MAX_OUT_PER_CALL.min(rest.len() * 4 + 64));
    loop {
        out.clear();
        let used = dec
            .update_bounded(rest, &mut out, MAX_OUT_PER_CALL)
            .map_err(tf)?;
        rest = &rest[used..];
        let progressed = used > 0 || !out.is_empty();
        account(f, &out, write)?;
        if (rest.is_empty() && out.is_empty()) || !progressed {
            break;
        }
    }
    if finish {
        out.clear();
        dec.finish(&mut out).map_err(tf)?;
        account(f, &out, write)?;
    }
    Ok(())
}

fn account(f: &mut OpenFile, data: &[u8], write: bool) -> Result<()> {
    if write {
        write_out(f, data)
    } else {
        take_in(f, data);
        Ok(())
    }
}

/// The file's (decoded) content: hashed, counted, and shown to the visitor.
fn take_in(f: &mut OpenFile, data: &[u8]) {
    f.hash.update(data);
    f.size += data.len() as u64;
    if let Some(v) = f.visit.as_mut() {
        v.data(data);
    }
}

fn write_out(f: &mut OpenFile, data: &[u8]) -> Result<()> {
    if data.is_empty() {
        return Ok(());
    }
    take_in(f, data);
    if let Some(c) = f.content.as_mut() {
        if c.len() + data.len() > MAX_MANIFEST_LEN {
            return Err(Error::Manifest(format!(
                "{} exceeds {MAX_MANIFEST_LEN} bytes",
                f.stored
            )));
        }
        c.extend_from_slice(data);
    }
    write_file(f, data)
}

/// How a write error names the file: the backup's file first (a full disk
/// is about it), then the staging file it was being written to.
fn writing(out: &impl std::fmt::Display, partial: &Path) -> String {
    format!("{out} (writing {})", partial.display())
}

/// Write bytes to the output file only (no hashing).
fn write_file(f: &mut OpenFile, data: &[u8]) -> Result<()> {
    if let Some(file) = f.file.as_mut() {
        crate::sink::write_all_chunked(file, data).map_err(|source| Error::Io {
            path: f
                .partial
                .as_ref()
                .map_or_else(|| f.out.to_string(), |p| writing(&f.out, p)),
            source,
        })?;
        f.written += data.len() as u64;
        if let Some(from) = f.writeback {
            if f.written - from >= WRITEBACK_STEP {
                crate::sys::start_writeback(file, from, f.written - from);
                f.writeback = Some(f.written);
            }
        }
    }
    Ok(())
}
