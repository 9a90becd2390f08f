//! Reading ahead, on a thread of its own, the pages the native prepare
//! will apply records to, as soon as the pre-pass meets them in the log.
//!
//! The pre-pass decodes the whole log before any page is read (it must
//! refuse what it cannot reproduce before touching a file), so the device
//! would otherwise sit idle while the CPU decodes, and the apply pass would
//! then wait for scattered reads batch after batch. The pages the log
//! names are handed here in log order, which is the order the batches will
//! apply them in; this thread sorts each handful, merges neighbouring pages
//! into runs and asks the kernel to read the runs into the page cache
//! (`posix_fadvise(WILLNEED)`). Only a hint: what the apply pass reads is
//! the same with or without it, and a failure here is ignored (the apply
//! pass reports it, with its file, when it reads the page).
//!
//! Bounded: it reads ahead at most a budget of bytes (half the memory the
//! kernel reports available, so that what it reads is not evicted before
//! it is used), and a full queue drops a handful rather than slow the
//! pre-pass down.

use std::fs::File;
use std::path::Path;
use std::sync::mpsc::{sync_channel, SyncSender};
use std::thread::JoinHandle;

use super::{locate, Spaces};
use crate::innodb::apply::PageId;

/// Pages closer than this (in bytes) are read as one run, with the pages
/// between them: one request of a few extra pages costs less than two.
const MAX_GAP: u64 = 64 << 10;
/// The longest run asked for at once.
const MAX_RUN: u64 = 4 << 20;
/// Handfuls of pages queued before the pre-pass drops some.
const QUEUE: usize = 256;

/// The background reader; dropping it (or [`Readahead::finish`]) stops it
/// once the handfuls already queued are hinted.
pub(super) struct Readahead {
    tx: Option<SyncSender<Vec<PageId>>>,
    thread: Option<JoinHandle<u64>>,
}

impl Readahead {
    /// Start the reader for the tablespaces of `spaces` (a copy is kept:
    /// the caller goes on changing its own), with a budget of `budget`
    /// bytes.
    pub(super) fn start(spaces: &Spaces, budget: u64) -> Self {
        let spaces = spaces.clone();
        let (tx, rx) = sync_channel::<Vec<PageId>>(QUEUE);
        let thread = std::thread::Builder::new()
            .name("prepare-readahead".into())
            .spawn(move || {
                let mut left = budget;
                let mut open: Option<(std::path::PathBuf, File)> = None;
                for mut pages in rx {
                    if left == 0 {
                        continue;
                    }
                    pages.sort_unstable();
                    let mut locs = Vec::with_capacity(pages.len());
                    for id in &pages {
                        let Some(sp) = spaces.get(&id.space.0) else {
                            continue;
                        };
                        if let Some((path, off)) = locate(sp, id.page) {
                            locs.push((path, off, u64::from(sp.format.physical_size())));
                        }
                    }
                    for (path, off, len) in runs(&locs, MAX_GAP, MAX_RUN) {
                        if open.as_ref().map(|(p, _)| p.as_path()) != Some(path) {
                            open = File::open(path).ok().map(|f| (path.to_path_buf(), f));
                        }
                        if let Some((_, f)) = &open {
                            let _ = crate::sys::prefetch(f, off, len);
                        }
                        left = left.saturating_sub(len);
                        if left == 0 {
                            break;
                        }
                    }
                }
                budget - left
            })
            .ok();
        Readahead {
            tx: thread.is_some().then_some(tx),
            thread,
        }
    }

    /// Hand over pages met in the log (dropped when the queue is full).
    pub(super) fn send(&self, pages: Vec<PageId>) {
        if pages.is_empty() {
            return;
        }
        if let Some(tx) = &self.tx {
            let _ = tx.try_send(pages);
        }
    }

    /// Stop and return the bytes hinted (at most the budget).
    pub(super) fn finish(mut self) -> u64 {
        self.tx = None;
        self.thread.take().and_then(|t| t.join().ok()).unwrap_or(0)
    }
}

impl Drop for Readahead {
    fn drop(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The read-ahead budget: half of what `/proc/meminfo` calls available,
/// or 1 GiB where it cannot be read.
pub(super) fn default_budget() -> u64 {
    crate::sys::mem_available().map_or(1 << 30, |b| b / 2)
}

/// Merge `(file, offset, length)` pieces, sorted by file and offset, into
/// runs: pieces of one file less than `max_gap` apart join (with the gap),
/// and no run grows past `max_run` (a single piece longer than that stays
/// whole).
pub(super) fn runs<'p>(
    pieces: &[(&'p Path, u64, u64)],
    max_gap: u64,
    max_run: u64,
) -> Vec<(&'p Path, u64, u64)> {
    let mut out: Vec<(&Path, u64, u64)> = Vec::new();
    for &(path, off, len) in pieces {
        if let Some((p, start, run)) = out.last_mut() {
            let end = *start + *run;
            if *p == path && off >= *start && off <= end + max_gap {
                let new_end = end.max(off + len);
                if new_end - *start <= max_run {
                    *run = new_end - *start;
                    continue;
                }
            }
        }
        out.push((path, off, len));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neighbours_join_and_far_pages_do_not() {
        let a = Path::new("a.ibd");
        let b = Path::new("b.ibd");
        let p = 16384;
        let pieces = [
            (a, 0, p),
            (a, p, p),
            (a, 3 * p, p),  // a gap of one page: joined
            (a, 10 * p, p), // 6 pages on: a new run
            (b, 11 * p, p), // another file: a new run
            (b, 11 * p, p), // the same page twice: nothing added
        ];
        let r = runs(&pieces, 2 * p, 1 << 20);
        assert_eq!(r, vec![(a, 0, 4 * p), (a, 10 * p, p), (b, 11 * p, p)]);
    }

    #[test]
    fn runs_stop_at_the_longest_request() {
        let a = Path::new("a.ibd");
        let p = 16384;
        let pieces: Vec<_> = (0..10).map(|i| (a, i * p, p)).collect();
        let r = runs(&pieces, 0, 4 * p);
        assert_eq!(r, vec![(a, 0, 4 * p), (a, 4 * p, 4 * p), (a, 8 * p, 2 * p)]);
        // Every byte asked for is in exactly one run.
        let total: u64 = r.iter().map(|x| x.2).sum();
        assert_eq!(total, 10 * p);
    }

    fn page(space: u32, page: u32) -> PageId {
        PageId {
            space: crate::innodb::SpaceId(space),
            page: crate::innodb::PageNo(page),
        }
    }

    #[test]
    fn pages_of_known_spaces_are_hinted_within_the_budget() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t.ibd");
        std::fs::write(&path, vec![0u8; 64 * 16384]).expect("write");
        let format = crate::innodb::page::PageFormat::from_flags(0).expect("flags 0");
        let size = u64::from(format.physical_size());
        let mut spaces = Spaces::default();
        spaces.insert(5, super::super::Space::single(&path, format));

        // Pages 1-3 and 40 of space 5 (one run, then one page), space 6
        // unknown: skipped.
        let ra = Readahead::start(&spaces, 1 << 30);
        ra.send(vec![
            page(5, 3),
            page(5, 1),
            page(6, 0),
            page(5, 2),
            page(5, 40),
        ]);
        assert_eq!(ra.finish(), 4 * size);

        // A budget of two pages stops after the first run.
        let ra = Readahead::start(&spaces, 2 * size);
        ra.send(vec![page(5, 10), page(5, 11), page(5, 12)]);
        ra.send(vec![page(5, 50)]);
        assert_eq!(ra.finish(), 2 * size);

        // Nothing to read: nothing hinted, and the thread stops.
        let ra = Readahead::start(&spaces, 0);
        ra.send(vec![page(5, 1)]);
        assert_eq!(ra.finish(), 0);
    }
}
