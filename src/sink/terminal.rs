//! Terminal sinks: an xbstream writer over any async writer (stdout, a TCP
//! connection, a file), a local-directory writer, and a null sink.
//!
//! Contract: frames are accepted in arrival order; the first error stops
//! the sink (and with it the graph); success is reported only after `End`
//! arrived, every file was closed, and the output was flushed (and, for
//! directories, synced). A closed stdout or socket is an [`Error::Io`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use tokio::io::{AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::sync::mpsc;

use super::{safe_dir, Error, FileId, Frame, Report, Result, StageDone};
use crate::format::path::RelPath;
use crate::format::xbstream;

/// Where the graph's bytes go.
pub enum Output {
    /// An xbstream over an async writer, with a name for messages.
    Xbstream {
        /// The writer.
        writer: Box<dyn AsyncWrite + Send + Unpin>,
        /// Name for error messages (`stdout`, `tcp://host:port`, a path).
        dest: String,
    },
    /// An xbstream over a blocking writer (stdout, a pipe, a file), driven by
    /// a dedicated thread that writes each chunk's header and payload with one
    /// vectored write: no copy into an intermediate buffer, no hop through
    /// the blocking pool per write.
    XbstreamBlocking {
        /// The writer.
        writer: Box<dyn std::io::Write + Send>,
        /// Name for error messages.
        dest: String,
    },
    /// Plain files under a directory (which must be empty or absent).
    Dir {
        /// The directory.
        root: PathBuf,
        /// fsync every file and directory before reporting success.
        sync: bool,
    },
    /// An xbstream written as multipart objects to an S3-compatible store,
    /// committed only after `End` (see [`crate::objstore::upload`]).
    Object(Box<crate::objstore::upload::Uploader>),
    /// Discard everything (benchmarks, dry runs).
    Null,
}

impl Output {
    /// xbstream to stdout.
    #[must_use]
    pub fn stdout() -> Self {
        // A duplicate of fd 1 as a plain file (std's stdout is line-buffered)
        // on the writer thread: each chunk leaves in one vectored write, with
        // no copy into tokio's buffers and no blocking-pool hop per write.
        use std::os::fd::AsFd;
        match std::io::stdout().as_fd().try_clone_to_owned() {
            Ok(fd) => Output::XbstreamBlocking {
                writer: Box::new(std::fs::File::from(fd)),
                dest: "stdout".into(),
            },
            Err(_) => Output::Xbstream {
                writer: Box::new(tokio::io::stdout()),
                dest: "stdout".into(),
            },
        }
    }
}

/// Run the terminal sink until `End` (success) or a closed input (failure).
pub(crate) async fn run(output: Output, mut rx: mpsc::Receiver<Frame>) -> Result<StageDone> {
    let mut sink = match output {
        Output::Xbstream { writer, dest } => Sink::Xb(XbSink {
            w: XbOut::Async(BufWriter::with_capacity(1 << 20, writer)),
            dest,
            files: HashMap::new(),
        }),
        Output::XbstreamBlocking { writer, dest } => Sink::Xb(XbSink {
            w: XbOut::thread(writer),
            dest,
            files: HashMap::new(),
        }),
        Output::Object(up) => Sink::Xb(XbSink {
            dest: up.location().to_string(),
            w: XbOut::Object {
                up: Some(up),
                capture: Capture::default(),
            },
            files: HashMap::new(),
        }),
        Output::Dir { root, sync } => Sink::Dir(DirSink::new(root, sync)?),
        Output::Null => Sink::Null(HashMap::new()),
    };
    let res = drive(&mut sink, &mut rx).await;
    if res.is_err() {
        sink.abort().await;
    }
    res
}

async fn drive(sink: &mut Sink, rx: &mut mpsc::Receiver<Frame>) -> Result<StageDone> {
    let mut report = Report::default();
    while let Some(frame) = rx.recv().await {
        match frame {
            Frame::End => {
                if let Some(p) = sink.open_path() {
                    return Err(Error::Protocol(format!("file {p} still open at the end")));
                }
                sink.finish().await?;
                return Ok(StageDone {
                    report: Some(report),
                });
            }
            Frame::Open { id, meta } => {
                if let Sink::Xb(s) = sink {
                    s.w.note_open(id, &meta.path);
                }
                sink.open(id, meta.path).await?;
            }
            Frame::Data { id, bytes } => {
                report.bytes_out += bytes.len() as u64;
                sink.data(id, bytes).await?;
            }
            Frame::Close { id } => {
                report.files += 1;
                sink.close(id).await?;
            }
        }
    }
    Err(Error::Closed)
}

enum Sink {
    Xb(XbSink),
    Dir(DirSink),
    Null(HashMap<FileId, RelPath>),
}

impl Sink {
    fn open_path(&self) -> Option<String> {
        match self {
            Sink::Xb(s) => s.files.values().next().map(|(p, _)| p.to_string()),
            Sink::Dir(s) => s.files.values().next().map(|(p, _)| p.to_string()),
            Sink::Null(m) => m.values().next().map(ToString::to_string),
        }
    }

    async fn open(&mut self, id: FileId, path: RelPath) -> Result<()> {
        match self {
            Sink::Xb(s) => {
                s.files.insert(id, (path, 0));
                Ok(())
            }
            Sink::Dir(s) => s.open(id, path).await,
            Sink::Null(m) => {
                m.insert(id, path);
                Ok(())
            }
        }
    }

    async fn data(&mut self, id: FileId, bytes: Bytes) -> Result<()> {
        match self {
            Sink::Xb(s) => s.data(id, bytes).await,
            Sink::Dir(s) => s.data(id, bytes).await,
            Sink::Null(m) => m.contains_key(&id).then_some(()).ok_or_else(|| unknown(id)),
        }
    }

    async fn close(&mut self, id: FileId) -> Result<()> {
        match self {
            Sink::Xb(s) => s.close(id).await,
            Sink::Dir(s) => s.close(id).await,
            Sink::Null(m) => m.remove(&id).map(|_| ()).ok_or_else(|| unknown(id)),
        }
    }

    /// Stop after a failure: an object upload is aborted (no commit object).
    async fn abort(&mut self) {
        if let Sink::Xb(XbSink {
            w: XbOut::Object { up, .. },
            ..
        }) = self
        {
            if let Some(u) = up.take() {
                u.abort().await;
            }
        }
    }

    async fn finish(&mut self) -> Result<()> {
        match self {
            Sink::Xb(s) => {
                let dest = s.dest.clone();
                s.w.finish(&dest).await
            }
            Sink::Dir(s) => s.finish().await,
            Sink::Null(_) => Ok(()),
        }
    }
}

fn unknown(id: FileId) -> Error {
    Error::Protocol(format!("frame for unknown file {id:?}"))
}

/// Where an xbstream's bytes go.
enum XbOut {
    Async(BufWriter<Box<dyn AsyncWrite + Send + Unpin>>),
    Thread {
        tx: Option<mpsc::Sender<(Vec<u8>, Bytes)>>,
        handle: Option<std::thread::JoinHandle<std::io::Result<()>>>,
    },
    Object {
        up: Option<Box<crate::objstore::upload::Uploader>>,
        capture: Capture,
    },
}

/// What the object sink keeps for the commit object: the plain
/// `xtrabackup_checkpoints` (LSNs, backup type) and the file count.
#[derive(Default)]
struct Capture {
    checkpoints: Option<FileId>,
    text: Vec<u8>,
    files: u64,
}

/// Largest `xtrabackup_checkpoints` kept for the commit object.
const MAX_CAPTURE: usize = 64 << 10;

/// `write_all` over two buffers with vectored writes.
fn write_all_2(w: &mut dyn std::io::Write, a: &[u8], b: &[u8]) -> std::io::Result<()> {
    let (mut a, mut b) = (a, b);
    while !a.is_empty() || !b.is_empty() {
        let n = match w.write_vectored(&[std::io::IoSlice::new(a), std::io::IoSlice::new(b)]) {
            Ok(0) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::WriteZero,
                    "write returned 0",
                ))
            }
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if n < a.len() {
            a = &a[n..];
        } else {
            b = &b[n - a.len()..];
            a = &[];
        }
    }
    Ok(())
}

impl XbOut {
    fn thread(mut w: Box<dyn std::io::Write + Send>) -> Self {
        let (tx, mut rx) = mpsc::channel::<(Vec<u8>, Bytes)>(4);
        let handle = std::thread::Builder::new()
            .name("xbstream-writer".into())
            .spawn(move || -> std::io::Result<()> {
                while let Some((head, payload)) = rx.blocking_recv() {
                    // Header with the first piece in one writev, the rest in pieces.
                    let first = payload.len().min(super::WRITE_PIECE);
                    write_all_2(&mut *w, &head, &payload[..first])?;
                    super::write_all_chunked(&mut w, &payload[first..])?;
                }
                w.flush()
            })
            .expect("spawning the writer thread at start-up");
        XbOut::Thread {
            tx: Some(tx),
            handle: Some(handle),
        }
    }

    /// The writer thread's error, after it stopped.
    fn thread_error(
        handle: &mut Option<std::thread::JoinHandle<std::io::Result<()>>>,
    ) -> std::io::Error {
        match handle.take().map(std::thread::JoinHandle::join) {
            Some(Ok(Err(e))) => e,
            _ => std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the writer thread stopped"),
        }
    }

    fn note_open(&mut self, id: FileId, path: &RelPath) {
        if let XbOut::Object { capture, up } = self {
            if let Some(u) = up.as_mut() {
                u.file_open(id.0, path.as_ref());
            }
            capture.files += 1;
            if path.to_string() == "xtrabackup_checkpoints" {
                capture.checkpoints = Some(id);
            }
        }
    }

    fn note_data(&mut self, id: FileId, bytes: &[u8]) {
        if let XbOut::Object { capture, .. } = self {
            if capture.checkpoints == Some(id) && capture.text.len() + bytes.len() <= MAX_CAPTURE {
                capture.text.extend_from_slice(bytes);
            }
        }
    }

    async fn write(&mut self, head: Vec<u8>, payload: Bytes, dest: &str) -> Result<()> {
        if let XbOut::Object { up, .. } = self {
            let u = up.as_mut().ok_or(Error::Closed)?;
            u.write(&head).await?;
            u.write(&payload).await?;
            return Ok(());
        }
        self.write_io(head, payload)
            .await
            .map_err(|source| Error::Io {
                dest: dest.to_owned(),
                source,
            })
    }

    async fn write_io(&mut self, head: Vec<u8>, payload: Bytes) -> std::io::Result<()> {
        match self {
            XbOut::Object { .. } => Ok(()),
            XbOut::Async(w) => {
                w.write_all(&head).await?;
                w.write_all(&payload).await
            }
            XbOut::Thread { tx, handle } => {
                let sent = match tx.as_ref() {
                    Some(t) => t.send((head, payload)).await.is_ok(),
                    None => false,
                };
                if sent {
                    Ok(())
                } else {
                    *tx = None;
                    Err(Self::thread_error(handle))
                }
            }
        }
    }

    async fn finish(&mut self, dest: &str) -> Result<()> {
        if let XbOut::Object { up, capture } = self {
            let u = up.take().ok_or(Error::Closed)?;
            let cp = crate::objstore::layout::key_values(&String::from_utf8_lossy(&capture.text));
            let r = u.finish("backup", cp, Some(capture.files)).await?;
            if let Some(t) = r.retake {
                retake_summary(&t);
            }
            return Ok(());
        }
        self.finish_io().await.map_err(|source| Error::Io {
            dest: dest.to_owned(),
            source,
        })
    }

    async fn finish_io(&mut self) -> std::io::Result<()> {
        match self {
            XbOut::Object { .. } => Ok(()),
            XbOut::Async(w) => {
                w.flush().await?;
                w.shutdown().await
            }
            XbOut::Thread { tx, handle } => {
                *tx = None;
                match handle.take() {
                    Some(h) => tokio::task::spawn_blocking(move || h.join())
                        .await
                        .map_err(std::io::Error::other)?
                        .map_err(|_| std::io::Error::other("the writer thread panicked"))?,
                    None => Ok(()),
                }
            }
        }
    }
}

/// Tell the user what a live backup's attempt reused.
fn retake_summary(t: &crate::objstore::upload::RetakeReport) {
    crate::events::info(format_args!(
        "s3: attempt {}: uploaded {} bytes; reused {} bytes from {} earlier attempt(s): {} file(s) whole, {} in part{}",
        t.attempt,
        t.bytes_uploaded,
        t.bytes_reused,
        t.earlier_attempts,
        t.files_whole,
        t.files_part,
        if t.deleted > 0 {
            format!("; {} unreferenced object(s) of earlier attempts deleted", t.deleted)
        } else {
            String::new()
        }
    ));
    let list = |names: &[String], n: u64| {
        let more = n.saturating_sub(names.len() as u64);
        let tail = if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        };
        format!("{}{tail}", names.join(", "))
    };
    if t.files_whole > 0 {
        crate::events::info(format_args!(
            "s3: reused whole: {}",
            list(&t.whole_names, t.files_whole)
        ));
    }
    if t.files_part > 0 {
        crate::events::info(format_args!(
            "s3: reused in part: {}",
            list(&t.part_names, t.files_part)
        ));
    }
}

struct XbSink {
    w: XbOut,
    dest: String,
    /// Path and next offset of each open file.
    files: HashMap<FileId, (RelPath, u64)>,
}

impl XbSink {
    async fn data(&mut self, id: FileId, bytes: Bytes) -> Result<()> {
        let (path, off) = self.files.get_mut(&id).ok_or_else(|| unknown(id))?;
        self.w.note_data(id, &bytes);
        if let XbOut::Object { up, .. } = &mut self.w {
            // The uploader cuts the chunks (an attempt cuts them at unit
            // boundaries and may reference earlier attempts' chunks).
            let u = up.as_mut().ok_or(Error::Closed)?;
            let n = bytes.len() as u64;
            u.file_data(id.0, path.as_ref(), *off, bytes).await?;
            *off += n;
            return Ok(());
        }
        let mut rest = bytes;
        // Split frames larger than the stock writers' chunk size.
        while !rest.is_empty() {
            let piece = rest.split_to(rest.len().min(xbstream::DEFAULT_CHUNK_LEN));
            let mut head = Vec::with_capacity(64 + path.as_bytes().len());
            xbstream::put_payload_header(&mut head, path.as_bytes(), *off, &piece);
            *off += piece.len() as u64;
            self.w.write(head, piece, &self.dest).await?;
        }
        Ok(())
    }

    async fn close(&mut self, id: FileId) -> Result<()> {
        let (path, _) = self.files.remove(&id).ok_or_else(|| unknown(id))?;
        if let XbOut::Object { up, .. } = &mut self.w {
            let u = up.as_mut().ok_or(Error::Closed)?;
            return Ok(u.file_close(id.0, path.as_ref()).await?);
        }
        let mut e = Vec::with_capacity(14 + path.as_bytes().len());
        xbstream::put_eof(&mut e, path.as_bytes());
        self.w.write(e, Bytes::new(), &self.dest).await
    }
}

struct DirSink {
    root: PathBuf,
    sync: bool,
    files: HashMap<FileId, (RelPath, tokio::fs::File)>,
    written: Vec<PathBuf>,
}

impl DirSink {
    fn new(root: PathBuf, sync: bool) -> Result<Self> {
        let io = |source| Error::Io {
            dest: root.display().to_string(),
            source,
        };
        match std::fs::read_dir(&root) {
            Ok(mut it) => {
                if it.next().is_some() {
                    return Err(io(std::io::Error::new(
                        std::io::ErrorKind::AlreadyExists,
                        "target directory is not empty; refusing to overwrite",
                    )));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(&root).map_err(io)?
            }
            Err(e) => return Err(io(e)),
        }
        Ok(DirSink {
            root,
            sync,
            files: HashMap::new(),
            written: Vec::new(),
        })
    }

    async fn open(&mut self, id: FileId, path: RelPath) -> Result<()> {
        let (root, rel) = (self.root.clone(), path.clone());
        // Parents one component at a time, never through a symlink; the
        // file with O_EXCL|O_NOFOLLOW (mode as tokio's default, before umask).
        let f = tokio::task::spawn_blocking(move || safe_dir::create_under(&root, &rel, 0o666))
            .await
            .map_err(|e| Error::Task(e.to_string()))??;
        self.files.insert(id, (path, tokio::fs::File::from_std(f)));
        Ok(())
    }

    async fn data(&mut self, id: FileId, bytes: Bytes) -> Result<()> {
        let (path, f) = self.files.get_mut(&id).ok_or_else(|| unknown(id))?;
        let root = &self.root;
        f.write_all(&bytes).await.map_err(|source| Error::Io {
            dest: path.under(root).display().to_string(),
            source,
        })
    }

    async fn close(&mut self, id: FileId) -> Result<()> {
        let (path, mut f) = self.files.remove(&id).ok_or_else(|| unknown(id))?;
        let full = path.under(&self.root);
        let io = |source| Error::Io {
            dest: full.display().to_string(),
            source,
        };
        f.flush().await.map_err(io)?;
        if self.sync {
            f.sync_all().await.map_err(io)?;
        }
        self.written.push(full.clone());
        Ok(())
    }

    async fn finish(&mut self) -> Result<()> {
        if !self.sync {
            return Ok(());
        }
        let mut dirs: Vec<PathBuf> = self
            .written
            .iter()
            .filter_map(|p| p.parent().map(Path::to_path_buf))
            .collect();
        dirs.push(self.root.clone());
        tokio::task::spawn_blocking(move || safe_dir::sync_dirs(dirs))
            .await
            .map_err(|e| Error::Task(e.to_string()))??;
        Ok(())
    }
}
