//! Drives a [`ChunkTransform`] between two channels: several chunks in
//! flight on the blocking pool, output emitted in input order.
//!
//! To fill in `ChunkCtx::last`, the runner holds back one chunk per file
//! until the next chunk or the `Close` arrives.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::future::BoxFuture;
use futures::stream::{FuturesOrdered, StreamExt};
use futures::FutureExt;
use tokio::sync::mpsc;

use super::{send, Error, FileId, FileMeta, Frame, Result, StageDone};
use crate::format::path::RelPath;
use crate::sched::Bulk;
use crate::transform::{ChunkCtx, ChunkTransform, TransformError};

type RenameFn = Arc<dyn Fn(&RelPath) -> std::result::Result<RelPath, TransformError> + Send + Sync>;
type RunFn = Box<
    dyn FnOnce(
            mpsc::Receiver<Frame>,
            mpsc::Sender<Frame>,
            Bulk,
        ) -> BoxFuture<'static, Result<StageDone>>
        + Send,
>;

/// A type-erased stage, as stored by the builder.
pub struct StageSpec {
    name: &'static str,
    rename: RenameFn,
    applies: fn(&FileMeta) -> bool,
    run: RunFn,
}

impl StageSpec {
    /// Wrap a transform.
    /// `chunk`: re-chunk each file's data into pieces of exactly this size
    /// (the last one shorter) before the transform; 0 keeps the frames as they come.
    pub fn new<T: ChunkTransform>(
        t: T,
        threads: usize,
        chunk: usize,
        applies: fn(&FileMeta) -> bool,
    ) -> Self {
        let t = Arc::new(t);
        let t2 = t.clone();
        StageSpec {
            name: t.name(),
            rename: Arc::new(move |p| t2.rename(p)),
            applies,
            run: Box::new(move |rx, tx, exec| {
                run_stage(t, threads, chunk, applies, exec, rx, tx).boxed()
            }),
        }
    }

    /// Stage name.
    #[must_use]
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// A closure computing the name a file gets from this stage (renamed
    /// if the stage applies to it, unchanged otherwise), for the manifest stage.
    pub fn stored_name_fn(
        &self,
    ) -> impl Fn(&FileMeta) -> std::result::Result<RelPath, TransformError> + Send + Sync + 'static
    {
        let rename = self.rename.clone();
        let applies = self.applies;
        move |m: &FileMeta| {
            if applies(m) {
                rename(&m.path)
            } else {
                Ok(m.path.clone())
            }
        }
    }

    /// Run the stage.
    pub(crate) fn run(
        self,
        rx: mpsc::Receiver<Frame>,
        tx: mpsc::Sender<Frame>,
        exec: Bulk,
    ) -> BoxFuture<'static, Result<StageDone>> {
        (self.run)(rx, tx, exec)
    }
}

struct FileState<F> {
    state: Arc<F>,
    path: RelPath,
    held: Option<Bytes>,
    index: u64,
    acc: BytesMut,
}

type Pending = BoxFuture<'static, Result<Vec<Frame>>>;

async fn run_stage<T: ChunkTransform>(
    t: Arc<T>,
    threads: usize,
    chunk: usize,
    applies: fn(&FileMeta) -> bool,
    exec: Bulk,
    mut rx: mpsc::Receiver<Frame>,
    tx: mpsc::Sender<Frame>,
) -> Result<StageDone> {
    let name = t.name();
    let mut files: HashMap<FileId, FileState<T::File>> = HashMap::new();
    let mut pending: FuturesOrdered<Pending> = FuturesOrdered::new();
    let max_in_flight = threads * 2;
    let spawn = |t: &Arc<T>,
                 st: &FileState<T::File>,
                 input: Bytes,
                 index: u64,
                 last: bool,
                 id: FileId|
     -> Pending {
        let t = t.clone();
        let state = st.state.clone();
        let path = st.path.clone();
        let exec = exec.clone();
        async move {
            let path_s = path.to_string();
            let out = exec
                .run(move || {
                    let mut out = Vec::with_capacity(input.len() / 2 + 64);
                    t.apply(
                        &state,
                        ChunkCtx {
                            path: &path,
                            index,
                            last,
                        },
                        &input,
                        &mut out,
                    )
                    .map(|()| out)
                })
                .await
                .map_err(|e| Error::Task(format!("{name}: {e}")))?
                .map_err(|source| Error::Transform {
                    stage: name,
                    path: path_s,
                    source,
                })?;
            let mut frames = Vec::with_capacity(2);
            if !out.is_empty() {
                frames.push(Frame::Data {
                    id,
                    bytes: Bytes::from(out),
                });
            }
            if last {
                frames.push(Frame::Close { id });
            }
            Ok(frames)
        }
        .boxed()
    };
    let ready = |frames: Vec<Frame>| -> Pending { futures::future::ready(Ok(frames)).boxed() };
    loop {
        tokio::select! {
            biased;
            Some(done) = pending.next(), if !pending.is_empty() => {
                for f in done? {
                    send(&tx, f).await?;
                }
            }
            frame = rx.recv(), if pending.len() < max_in_flight => {
                let Some(frame) = frame else {
                    // Input dropped without End: upstream failed.
                    return Err(Error::Closed);
                };
                match frame {
                    Frame::Open { id, mut meta } => {
                        if applies(&meta) {
                            let orig = meta.path.clone();
                            meta.path = t.rename(&orig).map_err(|source| Error::Transform { stage: name, path: orig.to_string(), source })?;
                            let mut header = Vec::new();
                            let state = t.begin(&orig, &mut header).map_err(|source| Error::Transform { stage: name, path: orig.to_string(), source })?;
                            files.insert(id, FileState { state: Arc::new(state), path: orig, held: None, index: 0, acc: BytesMut::new() });
                            let mut out = vec![Frame::Open { id, meta }];
                            if !header.is_empty() {
                                out.push(Frame::Data { id, bytes: Bytes::from(header) });
                            }
                            pending.push_back(ready(out));
                        } else {
                            pending.push_back(ready(vec![Frame::Open { id, meta }]));
                        }
                    }
                    Frame::Data { id, bytes } => {
                        if let Some(st) = files.get_mut(&id) {
                            if bytes.is_empty() { continue; }
                            let mut pieces = Vec::new();
                            if chunk == 0 || (st.acc.is_empty() && bytes.len() == chunk) {
                                pieces.push(bytes);
                            } else {
                                st.acc.extend_from_slice(&bytes);
                                while st.acc.len() >= chunk {
                                    pieces.push(st.acc.split_to(chunk).freeze());
                                }
                            }
                            for piece in pieces {
                                if let Some(prev) = st.held.replace(piece) {
                                    let idx = st.index;
                                    st.index += 1;
                                    pending.push_back(spawn(&t, st, prev, idx, false, id));
                                }
                            }
                        } else {
                            pending.push_back(ready(vec![Frame::Data { id, bytes }]));
                        }
                    }
                    Frame::Close { id } => {
                        if let Some(mut st) = files.remove(&id) {
                            if !st.acc.is_empty() {
                                let rest = std::mem::take(&mut st.acc).freeze();
                                if let Some(prev) = st.held.replace(rest) {
                                    let idx = st.index;
                                    st.index += 1;
                                    pending.push_back(spawn(&t, &st, prev, idx, false, id));
                                }
                            }
                            let last = st.held.take().unwrap_or_default();
                            let idx = st.index;
                            pending.push_back(spawn(&t, &st, last, idx, true, id));
                        } else {
                            pending.push_back(ready(vec![Frame::Close { id }]));
                        }
                    }
                    Frame::End => {
                        while let Some(done) = pending.next().await {
                            for f in done? {
                                send(&tx, f).await?;
                            }
                        }
                        if let Some((_, st)) = files.iter().next() {
                            return Err(Error::Protocol(format!("file {} still open at the end", st.path)));
                        }
                        send(&tx, Frame::End).await?;
                        return Ok(StageDone::default());
                    }
                }
            }
        }
    }
}
