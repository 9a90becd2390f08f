//! The log, read and checked on a thread of its own: while the decoding
//! threads work on one window of chunks, this one reads the next chunks
//! from the file and verifies their mini-transactions' framing and
//! checksums ([`LogReader`]), so neither waits for the other.
//!
//! It reads stretch after stretch, each ending at one of the given limits
//! (the batch ends of the apply pass, or only `last_lsn` for the pre-pass),
//! and says where each stretch ends; the consumer gives chunk buffers back
//! for reuse. At most `depth` chunks wait in the queue (each at most
//! [`LogReader::CHUNK`] bytes plus one mini-transaction), which bounds the
//! memory it adds.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;

use super::{Chunk, Error, LogReader, Result};
use crate::encrypt::mariadb::LogKey;
use crate::innodb::redo::LogGeometry;
use crate::innodb::Lsn;

/// What the reading thread sends.
enum Fed {
    Chunk(Chunk),
    /// The stretch up to the current limit is complete.
    End,
    Failed(Error),
}

/// The consumer's end.
pub(super) struct Feed {
    rx: Option<Receiver<Fed>>,
    spare: Option<SyncSender<Chunk>>,
    thread: Option<JoinHandle<()>>,
}

impl Feed {
    /// Start reading `path` from `start` up to each of `limits` in turn (the
    /// last of which is clamped to `end`); an encrypted log's records are
    /// decrypted with `key` as they are read.
    pub(super) fn start(
        path: &Path,
        geo: LogGeometry,
        (start, end): (Lsn, Lsn),
        limits: Vec<Lsn>,
        depth: usize,
        key: Option<Arc<LogKey>>,
    ) -> Self {
        let path: PathBuf = path.to_path_buf();
        let (tx, rx) = sync_channel::<Fed>(depth.max(1));
        let (spare_tx, spare_rx) = sync_channel::<Chunk>(depth.max(1) + 2);
        let thread = std::thread::Builder::new()
            .name("prepare-log".into())
            .spawn(move || {
                let mut rd = match LogReader::new(&path, geo, (start, end), key.as_deref()) {
                    Ok(rd) => rd,
                    Err(e) => {
                        let _ = tx.send(Fed::Failed(e));
                        return;
                    }
                };
                rd.prefetch_stretch();
                for limit in limits {
                    loop {
                        while let Ok(c) = spare_rx.try_recv() {
                            rd.recycle(c);
                        }
                        let msg = match rd.next(limit) {
                            Ok(Some(c)) => Fed::Chunk(c),
                            Ok(None) => Fed::End,
                            Err(e) => Fed::Failed(e),
                        };
                        let stop = !matches!(msg, Fed::Chunk(_));
                        let failed = matches!(msg, Fed::Failed(_));
                        if tx.send(msg).is_err() || failed {
                            return;
                        }
                        if stop {
                            break;
                        }
                    }
                }
            });
        match thread {
            Ok(t) => Feed {
                rx: Some(rx),
                spare: Some(spare_tx),
                thread: Some(t),
            },
            Err(e) => {
                // No thread: the first call to `next` reports it.
                let (tx, rx) = sync_channel(1);
                let _ = tx.send(Fed::Failed(Error::Log(format!(
                    "cannot start the log-reading thread: {e}"
                ))));
                Feed {
                    rx: Some(rx),
                    spare: None,
                    thread: None,
                }
            }
        }
    }

    /// The next chunk of the current stretch; `None` at its limit (the
    /// following call starts the next stretch).
    ///
    /// # Errors
    /// The reader's error (the log ends early, a checksum fails, I/O).
    pub(super) fn next(&mut self) -> Result<Option<Chunk>> {
        let got = self.rx.as_ref().map(Receiver::recv);
        match got {
            Some(Ok(Fed::Chunk(c))) => Ok(Some(c)),
            Some(Ok(Fed::End)) => Ok(None),
            Some(Ok(Fed::Failed(e))) => Err(e),
            Some(Err(_)) | None => Err(Error::Log(
                "the log-reading thread stopped before the last limit".into(),
            )),
        }
    }

    /// Give a chunk's buffer back (dropped when the reader has enough).
    pub(super) fn recycle(&mut self, chunk: Chunk) {
        if let Some(s) = &self.spare {
            let _ = s.try_send(chunk);
        }
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        // Closing the queue ends the thread at its next send.
        self.rx = None;
        self.spare = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
