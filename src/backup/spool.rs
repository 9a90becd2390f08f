//! The redo spool: copied redo waits here between the follower, which
//! must keep pace with the server's log ring, and the datasink graph,
//! which moves at the pace of the slowest consumer (a compressor, a slow
//! `ssh`, an `xbextract` on a busy host).
//!
//! Before the spool the follower wrote straight into the graph, so a slow
//! consumer held the follower back and the server could overwrite log the
//! follower had not read: a backup failed with a redo-log overrun although
//! the follower could have kept up (seen on the 8 GB set, an online
//! `ALTER` writing redo while `xbextract` ran on the same two cores).
//! mariabackup avoids the same trap by writing the log to a file in its
//! `--tmpdir` when it streams.
//!
//! The follower now pushes each copied range into a FIFO of segments:
//! in memory up to a budget, then appended to an unlinked temporary file
//! in `--tmpdir`. A drainer task moves the segments into the graph in
//! order. The follower never waits for the graph; the graph never waits
//! for the disk unless the memory budget is exceeded. The file is reused
//! from offset 0 whenever the queue empties, so its size is the largest
//! backlog, not the whole log.
//!
//! [`Queue`] is the pure core (what goes where, in what order, within
//! what budget); [`Spool`] adds the file and the task.

use std::collections::VecDeque;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::Notify;

use super::Error;
use crate::sink::FileWriter;

/// Default memory budget of the spool.
pub const DEFAULT_MEMORY: usize = 64 << 20;

/// One queued range of redo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// Held in memory.
    Mem(Bytes),
    /// In the spool file at `off`, `len` bytes long.
    File {
        /// Offset in the spool file.
        off: u64,
        /// Length.
        len: usize,
    },
}

impl Segment {
    /// Its length in bytes.
    #[must_use]
    pub fn len(&self) -> usize {
        match self {
            Segment::Mem(b) => b.len(),
            Segment::File { len, .. } => *len,
        }
    }

    /// Whether it holds no bytes.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The pure queue: segments in order, bytes in memory within a budget,
/// the next free offset of the spool file.
#[derive(Debug)]
pub struct Queue {
    segs: VecDeque<Segment>,
    mem: usize,
    /// Bytes queued (memory and file).
    waiting: u64,
    budget: usize,
    file_end: u64,
    /// File ranges placed but not yet pushed (being written).
    pending: usize,
    /// Bytes ever sent to the file, and the largest backlog seen.
    pub stats: Stats,
}

/// What the spool did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Bytes written to the spool file in total.
    pub spilled: u64,
    /// The largest backlog (memory and file) waiting for the graph.
    pub peak_backlog: u64,
    /// The largest size the spool file reached.
    pub peak_file: u64,
}

/// Where a pushed range goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// Keep it in memory.
    Mem,
    /// Write it to the file at this offset.
    File(u64),
}

impl Queue {
    /// An empty queue with a memory budget.
    #[must_use]
    pub fn new(budget: usize) -> Self {
        Queue {
            segs: VecDeque::new(),
            mem: 0,
            waiting: 0,
            budget,
            file_end: 0,
            pending: 0,
            stats: Stats::default(),
        }
    }

    /// Where `len` more bytes go: memory while the budget allows, else the
    /// file (whose space is reserved by this call).
    pub fn place(&mut self, len: usize) -> Placement {
        if self.mem + len <= self.budget {
            Placement::Mem
        } else {
            let off = self.file_end;
            self.file_end += len as u64;
            self.pending += 1;
            self.stats.spilled += len as u64;
            self.stats.peak_file = self.stats.peak_file.max(self.file_end);
            Placement::File(off)
        }
    }

    /// Queue a segment (after [`Queue::place`], and for a file segment
    /// after its bytes are written).
    pub fn push(&mut self, seg: Segment) {
        match &seg {
            Segment::Mem(b) => self.mem += b.len(),
            Segment::File { .. } => self.pending = self.pending.saturating_sub(1),
        }
        self.waiting += seg.len() as u64;
        self.segs.push_back(seg);
        self.stats.peak_backlog = self.stats.peak_backlog.max(self.waiting);
    }

    /// The oldest segment.
    pub fn pop(&mut self) -> Option<Segment> {
        let s = self.segs.pop_front()?;
        if let Segment::Mem(b) = &s {
            self.mem -= b.len();
        }
        self.waiting -= s.len() as u64;
        Some(s)
    }

    /// Called by the drainer between segments (when it holds none): an
    /// empty queue with no range being written lets the file be reused
    /// from offset 0.
    pub fn rewind_if_empty(&mut self) {
        if self.segs.is_empty() && self.pending == 0 {
            self.file_end = 0;
        }
    }

    /// Bytes waiting.
    #[must_use]
    pub fn backlog(&self) -> u64 {
        self.waiting
    }

    /// Bytes held in memory.
    #[must_use]
    pub fn in_memory(&self) -> usize {
        self.mem
    }
}

struct State {
    queue: Queue,
    file: Option<Arc<File>>,
    closed: bool,
    /// The drainer's failure, for the follower to report.
    /// The drainer's failure: its text, and whether it was the graph
    /// closing (a consequence, whose root cause the graph reports).
    failed: Option<(String, bool)>,
}

/// The spool shared by the follower (pushing) and the drainer task.
pub struct Spool {
    state: Mutex<State>,
    wake: Notify,
    dir: PathBuf,
}

fn drain_failed((why, closed): &(String, bool)) -> Error {
    if *closed {
        // The graph stopped: its own error (a closed stdout, a full disk)
        // is the one to report, not this consequence.
        return Error::Sink(crate::sink::Error::Closed);
    }
    Error::Redo(format!(
        "the redo copy could not be written to the backup: {why}"
    ))
}

fn poisoned() -> Error {
    Error::Task("redo spool state poisoned".into())
}

impl Spool {
    /// A spool with `budget` bytes of memory, spilling to a file in `dir`
    /// (created on first use, unlinked at once).
    #[must_use]
    pub fn new(budget: usize, dir: &Path) -> Arc<Self> {
        Arc::new(Spool {
            state: Mutex::new(State {
                queue: Queue::new(budget),
                file: None,
                closed: false,
                failed: None,
            }),
            wake: Notify::new(),
            dir: dir.to_path_buf(),
        })
    }

    /// Queue a copied range. Blocks on the file write when the memory
    /// budget is exceeded: call it from a blocking context then (the
    /// follower calls it through `spawn_blocking`).
    ///
    /// # Errors
    /// The spool file cannot be created or written (named, with `--tmpdir`
    /// as the fix), or the drainer already failed.
    pub fn push(&self, data: Bytes) -> Result<(), Error> {
        let (place, file) = {
            let mut st = self.state.lock().map_err(|_| poisoned())?;
            if let Some(f) = &st.failed {
                return Err(drain_failed(f));
            }
            let place = st.queue.place(data.len());
            let file = match place {
                Placement::Mem => None,
                Placement::File(_) => Some(match &st.file {
                    Some(f) => f.clone(),
                    None => {
                        let f = Arc::new(tempfile::tempfile_in(&self.dir).map_err(|e| {
                            Error::Redo(format!(
                                "cannot create the redo spool file in {} (set --tmpdir to a directory with room): {e}",
                                self.dir.display()
                            ))
                        })?);
                        st.file = Some(f.clone());
                        f
                    }
                }),
            };
            (place, file)
        };
        let seg = match (place, file) {
            (Placement::File(off), Some(f)) => {
                f.write_all_at(&data, off).map_err(|e| {
                    Error::Redo(format!(
                        "cannot write {} bytes of redo to the spool file in {} at offset {off} (set --tmpdir to a directory with room): {e}",
                        data.len(),
                        self.dir.display()
                    ))
                })?;
                Segment::File {
                    off,
                    len: data.len(),
                }
            }
            _ => Segment::Mem(data),
        };
        self.state.lock().map_err(|_| poisoned())?.queue.push(seg);
        self.wake.notify_one();
        Ok(())
    }

    /// No more pushes: the drainer ends once the queue is empty.
    ///
    /// # Errors
    /// A poisoned lock.
    pub fn close(&self) -> Result<(), Error> {
        self.state.lock().map_err(|_| poisoned())?.closed = true;
        self.wake.notify_one();
        Ok(())
    }

    /// Bytes waiting for the graph.
    #[must_use]
    pub fn backlog(&self) -> u64 {
        self.state.lock().map_or(0, |s| s.queue.backlog())
    }

    /// The drainer's failure, if it failed (the graph closed).
    ///
    /// # Errors
    /// That failure.
    pub fn check(&self) -> Result<(), Error> {
        match self.state.lock().ok().and_then(|s| s.failed.clone()) {
            Some(f) => Err(drain_failed(&f)),
            None => Ok(()),
        }
    }

    /// What the spool did so far.
    #[must_use]
    pub fn stats(&self) -> Stats {
        self.state
            .lock()
            .map_or_else(|_| Stats::default(), |s| s.queue.stats)
    }

    /// Move every segment into `out`, in order, until closed and empty;
    /// then close `out`.
    ///
    /// # Errors
    /// The graph's error, or a spool file read error.
    pub async fn drain(self: Arc<Self>, mut out: FileWriter) -> Result<(), Error> {
        let r = self.drain_into(&mut out).await;
        if let Err(e) = &r {
            if let Ok(mut st) = self.state.lock() {
                st.failed = Some((e.to_string(), e.is_closed()));
            }
            return r;
        }
        out.close().await?;
        Ok(())
    }

    async fn drain_into(&self, out: &mut FileWriter) -> Result<(), Error> {
        loop {
            let next = {
                let mut st = self.state.lock().map_err(|_| poisoned())?;
                st.queue.rewind_if_empty();
                match st.queue.pop() {
                    Some(seg) => Some((seg, st.file.clone())),
                    None if st.closed => return Ok(()),
                    None => None,
                }
            };
            match next {
                None => self.wake.notified().await,
                Some((Segment::Mem(b), _)) => out.write(b).await?,
                Some((Segment::File { off, len }, Some(f))) => {
                    let dir = self.dir.clone();
                    let b = tokio::task::spawn_blocking(move || -> Result<Bytes, Error> {
                        let mut buf = vec![0u8; len];
                        f.read_exact_at(&mut buf, off).map_err(|e| {
                            Error::Redo(format!(
                                "cannot read back {len} bytes of redo from the spool file in {} at offset {off}: {e}",
                                dir.display()
                            ))
                        })?;
                        Ok(Bytes::from(buf))
                    })
                    .await
                    .map_err(|e| Error::Task(e.to_string()))??;
                    out.write(b).await?;
                }
                Some((Segment::File { .. }, None)) => {
                    return Err(Error::Task("redo spool segment without a file".into()))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn memory_first_then_file_then_rewind() {
        let mut q = Queue::new(10);
        assert_eq!(q.place(6), Placement::Mem);
        q.push(Segment::Mem(Bytes::from(vec![1; 6])));
        assert_eq!(q.place(6), Placement::File(0));
        q.push(Segment::File { off: 0, len: 6 });
        assert_eq!(q.place(4), Placement::Mem);
        q.push(Segment::Mem(Bytes::from(vec![2; 4])));
        assert_eq!(q.place(1), Placement::File(6));
        q.push(Segment::File { off: 6, len: 1 });
        assert_eq!(q.backlog(), 17);
        assert_eq!(q.in_memory(), 10);
        q.rewind_if_empty();
        assert_eq!(q.place(1), Placement::File(7), "not empty: no rewind");
        q.push(Segment::File { off: 7, len: 1 });
        while q.pop().is_some() {}
        q.rewind_if_empty();
        assert_eq!(q.place(11), Placement::File(0));
        q.rewind_if_empty();
        assert_eq!(
            q.place(20),
            Placement::File(11),
            "a range being written: no rewind"
        );
        q.push(Segment::File { off: 0, len: 11 });
        q.push(Segment::File { off: 11, len: 20 });
        assert_eq!(
            q.stats,
            Stats {
                spilled: 39,
                peak_backlog: 31,
                peak_file: 31
            }
        );
    }

    proptest! {
        /// Whatever the interleaving of pushes and pops, the bytes come
        /// out in the order they went in, memory never exceeds the budget,
        /// and live file ranges never overlap.
        #[test]
        fn order_budget_and_disjoint_file_ranges(
            ops in proptest::collection::vec((any::<bool>(), 1usize..50), 1..200),
            budget in 1usize..120,
        ) {
            let mut q = Queue::new(budget);
            let mut file = vec![0u8; 0];
            let mut next_in = 0u8;
            let mut pushed = 0usize;
            let mut out: Vec<u8> = Vec::new();
            let read = |seg: Segment, file: &[u8], out: &mut Vec<u8>| match seg {
                Segment::Mem(b) => out.extend_from_slice(&b),
                Segment::File { off, len } => out.extend_from_slice(&file[off as usize..off as usize + len]),
            };
            for (is_push, len) in ops {
                if is_push {
                    let data: Vec<u8> = (0..len).map(|i| next_in.wrapping_add(i as u8)).collect();
                    next_in = next_in.wrapping_add(len as u8);
                    pushed += len;
                    match q.place(len) {
                        Placement::Mem => q.push(Segment::Mem(Bytes::from(data))),
                        Placement::File(off) => {
                            let end = off as usize + len;
                            if file.len() < end { file.resize(end, 0); }
                            file[off as usize..end].copy_from_slice(&data);
                            q.push(Segment::File { off, len });
                        }
                    }
                    prop_assert!(q.in_memory() <= budget);
                } else {
                    q.rewind_if_empty();
                    if let Some(seg) = q.pop() {
                        read(seg, &file, &mut out);
                    }
                }
            }
            while let Some(seg) = q.pop() {
                read(seg, &file, &mut out);
            }
            prop_assert_eq!(out.len(), pushed);
            for (i, b) in out.iter().enumerate() {
                prop_assert_eq!(*b, i as u8, "byte {} out of order", i);
            }
        }
    }
}
