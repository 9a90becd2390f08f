//! The pure, incremental cores of verification: bytes in, findings out, no
//! I/O. [`PageChecker`] checks one InnoDB data file's pages as they are
//! fed (from a file on disk or from a stream as it goes by);
//! [`RedoWalker`] walks `ib_logfile0` the same way. The directory mode and
//! the stream mode feed the same cores.

use std::collections::BTreeSet;

use super::{Class, Finding};
use crate::innodb::page::{self, PageFormat, PageVerdict, ValidAs, FIL_PAGE_SPACE_ID};
use crate::innodb::{redo, Lsn, PageNo};

/// Findings per file beyond which only a count is reported.
const MAX_PAGE_FINDINGS_PER_FILE: usize = 20;

/// What the page check of one data file found.
#[derive(Debug, Default)]
pub(crate) struct FileCheck {
    pub(crate) pages: u64,
    /// Pages encrypted at rest (a key version at byte 26), checked by
    /// their post-encryption checksum without keys.
    pub(crate) encrypted_pages: u64,
    pub(crate) space: Option<u32>,
    /// Page 0 is all zero: a tablespace created after the checkpoint, whose
    /// first page only the redo log holds yet.
    pub(crate) page0_zero: bool,
    pub(crate) findings: Vec<Finding>,
}

enum State {
    /// Gathering page 0 (up to [`page::MAX_PAGE_SIZE`] bytes).
    Head,
    /// Checking whole pages.
    Pages {
        fmt: PageFormat,
        psize: usize,
        declared: Option<u32>,
    },
    /// Nothing more to check (page 0 unreadable or all zero).
    Done,
}

/// Checks one InnoDB data file's pages as its bytes arrive: checksum by the
/// tablespace's own format (from page 0's flags), page number equal to the
/// position, space id equal to the file's, and at the end a length that is
/// a whole number of pages and not shorter than page 0's `FSP_SIZE`.
pub(crate) struct PageChecker {
    rel: String,
    /// Given for system tablespace files after the first (no page 0 of
    /// their own; page numbers continue from the previous file, so they are
    /// not checked).
    follow_on: Option<PageFormat>,
    system: bool,
    state: State,
    /// Bytes not yet making a whole page (or page 0's head).
    pending: Vec<u8>,
    page_no: u64,
    len: u64,
    reported: usize,
    out: FileCheck,
}

impl PageChecker {
    /// A checker for the file `rel` (backup-relative). `system`: a system
    /// tablespace file (its doublewrite buffer is not checked).
    pub(crate) fn new(rel: &str, follow_on: Option<PageFormat>, system: bool) -> Self {
        let state = match follow_on {
            Some(fmt) => State::Pages {
                fmt,
                psize: fmt.physical_size() as usize,
                declared: None,
            },
            None => State::Head,
        };
        PageChecker {
            rel: rel.to_owned(),
            follow_on,
            system,
            state,
            pending: Vec::new(),
            page_no: 0,
            len: 0,
            reported: 0,
            out: FileCheck::default(),
        }
    }

    fn finding(&self, detail: String) -> Finding {
        Finding {
            class: Class::Page,
            file: self.rel.clone(),
            detail,
        }
    }

    /// Feed the next bytes of the file.
    pub(crate) fn feed(&mut self, mut data: &[u8]) {
        self.len += data.len() as u64;
        if matches!(self.state, State::Head) {
            let want = page::MAX_PAGE_SIZE as usize - self.pending.len();
            let take = want.min(data.len());
            self.pending.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.pending.len() < page::MAX_PAGE_SIZE as usize {
                return;
            }
            self.parse_head();
        }
        let State::Pages { psize, .. } = self.state else {
            return;
        };
        // Whole pages straight from `data` when nothing is pending.
        if !self.pending.is_empty() {
            let need = psize - self.pending.len() % psize;
            if self.pending.len() < psize {
                let take = need.min(data.len());
                self.pending.extend_from_slice(&data[..take]);
                data = &data[take..];
            }
            let whole = self.pending.len() / psize * psize;
            let pending = std::mem::take(&mut self.pending);
            self.check_pages(&pending[..whole]);
            self.pending = pending[whole..].to_vec();
            if !self.pending.is_empty() {
                return;
            }
        }
        let whole = data.len() / psize * psize;
        self.check_pages(&data[..whole]);
        self.pending.extend_from_slice(&data[whole..]);
    }

    /// Page 0 is in `pending` (all of it, or the whole file when shorter).
    fn parse_head(&mut self) {
        let head = &self.pending;
        let n = head.len();
        if n >= page::PAGE0_MIN_LEN && head[..n.min(4096)].iter().all(|&b| b == 0) {
            self.out.page0_zero = true;
            self.state = State::Done;
            self.pending = Vec::new();
            return;
        }
        match page::parse_page0(head) {
            Ok(info) => {
                self.out.space = Some(info.space_id.0);
                self.state = State::Pages {
                    fmt: info.format,
                    psize: info.format.physical_size() as usize,
                    declared: Some(info.size_pages),
                };
            }
            Err(e) => {
                let f = self.finding(format!(
                    "page 0 unreadable ({e}); the rest of the file cannot be checked"
                ));
                self.out.findings.push(f);
                self.state = State::Done;
                self.pending = Vec::new();
            }
        }
    }

    /// Check whole pages (`buf` is a multiple of the page size).
    fn check_pages(&mut self, buf: &[u8]) {
        let State::Pages { fmt, psize, .. } = self.state else {
            return;
        };
        let space = self.out.space;
        for p in buf.chunks_exact(psize) {
            let pn = self.page_no;
            self.page_no += 1;
            self.out.pages += 1;
            // The doublewrite buffer of the system tablespace is scratch space:
            // copies of other pages in flight, partly stale or never written
            // (recovery uses only those whose checksum holds). Not checked.
            let dblwr = self.system
                && u32::try_from(pn)
                    .is_ok_and(|p| page::doublewrite_range(fmt.logical_size()).contains(&p));
            if dblwr {
                continue;
            }
            let expected = self
                .follow_on
                .is_none()
                .then(|| PageNo(u32::try_from(pn).unwrap_or(u32::MAX)));
            let verdict = page::check_page(&fmt, expected, p);
            // Encrypted at rest: full_crc32 keeps the key version at byte 0
            // (non-zero when encrypted); the legacy formats' encrypted pages
            // have their own verdict.
            let encrypted = match verdict {
                PageVerdict::Valid(ValidAs::FullCrc32 | ValidAs::FullCrc32Compressed { .. }) => {
                    pn != 0 && crate::innodb::be32(p, 0).is_some_and(|v| v != 0)
                }
                PageVerdict::Valid(ValidAs::LegacyEncrypted) => true,
                _ => false,
            };
            if encrypted {
                self.out.encrypted_pages += 1;
            }
            let bad = match verdict {
                PageVerdict::Corrupt(c) => Some(c.to_string()),
                PageVerdict::AllZero => None,
                // A written page (not all zero) names its tablespace; an
                // encrypted page's space id field (at 34) is ciphertext.
                PageVerdict::Valid(_) if self.follow_on.is_none() && !encrypted => {
                    match (space, crate::innodb::be32(p, FIL_PAGE_SPACE_ID)) {
                        (Some(sp), Some(id)) if id != sp => {
                            Some(format!("space id field is {id}, the file's is {sp}"))
                        }
                        _ => None,
                    }
                }
                PageVerdict::Valid(_) => None,
            };
            if let Some(b) = bad {
                self.reported += 1;
                if self.reported <= MAX_PAGE_FINDINGS_PER_FILE {
                    let f = self.finding(format!("page {pn} (byte {}): {b}", pn * psize as u64));
                    self.out.findings.push(f);
                }
            }
        }
    }

    /// The file could not be opened: nothing of it can be checked.
    pub(crate) fn open_error(self, e: &std::io::Error) -> FileCheck {
        FileCheck {
            findings: vec![Finding {
                class: Class::Missing,
                file: self.rel,
                detail: format!("cannot open: {e}"),
            }],
            ..FileCheck::default()
        }
    }

    /// A read error after `self.len` bytes: the rest cannot be checked.
    pub(crate) fn read_error(&mut self, e: &std::io::Error) {
        let f = self.finding(format!("read error at byte {}: {e}", self.len));
        self.out.findings.push(f);
    }

    /// The end of the file: length checks, and the findings.
    pub(crate) fn finish(mut self) -> FileCheck {
        if matches!(self.state, State::Head) {
            // A file shorter than the largest page (or empty: page 0 unreadable).
            self.parse_head();
            let pending = std::mem::take(&mut self.pending);
            if let State::Pages { psize, .. } = self.state {
                let whole = pending.len() / psize * psize;
                self.check_pages(&pending[..whole]);
            }
        }
        if let State::Pages {
            psize, declared, ..
        } = self.state
        {
            let psize = psize as u64;
            let len = self.len;
            let mut head = Vec::new();
            if len % psize != 0 {
                head.push(self.finding(format!(
                    "length {len} is not a multiple of the page size {psize} ({} bytes of a last page)",
                    len % psize
                )));
            }
            if let Some(d) = declared {
                if len / psize < u64::from(d) {
                    head.push(self.finding(format!(
                        "{} pages, page 0 declares FSP_SIZE {d}: the file is truncated",
                        len / psize
                    )));
                }
            }
            if self.reported > MAX_PAGE_FINDINGS_PER_FILE {
                let f = self.finding(format!(
                    "and {} more damaged pages",
                    self.reported - MAX_PAGE_FINDINGS_PER_FILE
                ));
                self.out.findings.push(f);
            }
            head.append(&mut self.out.findings);
            self.out.findings = head;
        }
        self.out
    }
}

/// What the redo walk found.
#[derive(Debug)]
pub(crate) struct RedoWalk {
    /// The log is encrypted: walked by framing and CRC, no names read.
    pub(crate) encrypted: bool,
    pub(crate) bytes: u64,
    pub(crate) checkpoint: u64,
    pub(crate) end: Lsn,
    pub(crate) why: String,
    /// Tablespaces the log creates or modifies (backup-relative).
    pub(crate) named: BTreeSet<String>,
}

/// Bytes gathered before a scan (a scan re-parses a pending partial
/// mini-transaction, so tiny pieces are batched).
const SCAN_BATCH: usize = 1 << 20;

/// Walks a backup's linear `ib_logfile0` as its bytes arrive, keeping only
/// the unparsed tail (at most one mini-transaction, [`redo::MTR_SIZE_MAX`],
/// plus a batch): every mini-transaction's sequence byte and CRC-32C, up to
/// the end of the log; the tablespaces its file records name.
pub(crate) struct RedoWalker {
    /// The file's length when known (directory mode), for the ring geometry.
    file_len: Option<u64>,
    prefix: Vec<u8>,
    geo: Option<(redo::LogGeometry, Lsn, u64)>,
    lsn: Lsn,
    buf: Vec<u8>,
    named: BTreeSet<String>,
    /// Set when the walk stopped: the reason, or an error.
    stopped: Option<Result<String, String>>,
}

impl RedoWalker {
    /// A walker. `file_len`: the file's size when known; a stream's log is
    /// walked as a linear log that never wraps (a backup's log does not).
    pub(crate) fn new(file_len: Option<u64>) -> Self {
        RedoWalker {
            file_len,
            prefix: Vec::new(),
            geo: None,
            lsn: Lsn(0),
            buf: Vec::new(),
            named: BTreeSet::new(),
            stopped: None,
        }
    }

    /// The walk has stopped (the end of the log, or damage): more bytes
    /// change nothing.
    pub(crate) fn stopped(&self) -> bool {
        self.stopped.is_some()
    }

    /// Feed the next bytes of the log.
    pub(crate) fn feed(&mut self, mut data: &[u8]) {
        if self.stopped.is_some() {
            return;
        }
        if self.geo.is_none() {
            let start = usize::try_from(redo::START_OFFSET).unwrap_or(12288);
            let take = (start - self.prefix.len()).min(data.len());
            self.prefix.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.prefix.len() < start {
                return;
            }
            if !self.start() {
                return;
            }
        }
        self.buf.extend_from_slice(data);
        if self.buf.len() >= SCAN_BATCH {
            self.scan(false);
        }
    }

    /// Parse the header and checkpoints; false when the walk cannot start.
    fn start(&mut self) -> bool {
        let info = match redo::parse_log_prefix(&self.prefix) {
            Ok(i) => i,
            Err(e) => {
                self.stopped = Some(Err(format!("header: {e}")));
                return false;
            }
        };
        let first = info.header.first_lsn;
        // A linear backup log: with no known size, a ring too large to wrap.
        let size = self
            .file_len
            .unwrap_or(u64::MAX / 2)
            .max(redo::START_OFFSET + 1);
        // An encrypted log is walked by its framing and CRC-32C (over the
        // ciphertext and the nonce): no key is needed.
        match redo::LogGeometry::for_header(&info.header, size) {
            Ok(g) => {
                self.geo = Some((g, first, info.newest.checkpoint_lsn.0));
                self.lsn = first;
                self.prefix = Vec::new();
                true
            }
            Err(e) => {
                self.stopped = Some(Err(e.to_string()));
                false
            }
        }
    }

    fn scan(&mut self, eof: bool) {
        let Some((geo, _, _)) = &self.geo else { return };
        let scan = match redo::scan_mtrs(geo, self.lsn, &self.buf) {
            Ok(s) => s,
            Err(e) => {
                self.stopped = Some(Err(e.to_string()));
                return;
            }
        };
        let mut at = 0;
        for &l in &scan.mtr_lens {
            if geo.encrypted() {
                // File names are encrypted: nothing to collect without keys.
                at += l;
                continue;
            }
            for op in redo::file_records(&self.buf[at..at + l]).flatten() {
                let path = match op {
                    redo::FileOp::Create { path, .. } | redo::FileOp::Modify { path, .. } => path,
                    redo::FileOp::Rename { to, .. } => to,
                    _ => continue,
                };
                self.named.extend(crate::innodb::relocate::backup_name(
                    &String::from_utf8_lossy(path),
                ));
            }
            at += l;
        }
        self.lsn = scan.end_lsn;
        self.buf.drain(..scan.consumed);
        match scan.stop {
            redo::ScanStop::NeedMore if !eof => {}
            redo::ScanStop::NeedMore => {
                let why = if self.buf.is_empty() {
                    "end of file".to_owned()
                } else {
                    format!(
                        "the file ends inside a mini-transaction ({} bytes)",
                        self.buf.len()
                    )
                };
                self.stopped = Some(Ok(why));
            }
            redo::ScanStop::EndOfLog(e) => {
                self.stopped = Some(Ok(e.to_string()));
                self.buf = Vec::new();
            }
        }
    }

    /// The end of the log: the walk, or why it could not be made.
    pub(crate) fn finish(mut self) -> Result<RedoWalk, String> {
        if self.geo.is_none() && self.stopped.is_none() {
            // Shorter than the header block: parse what there is (fails).
            let _ = self.start();
        }
        if self.stopped.is_none() {
            self.scan(true);
        }
        match self.stopped.take() {
            Some(Err(e)) => Err(e),
            Some(Ok(why)) => {
                let (first, checkpoint) = self.geo.map_or((Lsn(0), 0), |(_, f, c)| (f, c));
                Ok(RedoWalk {
                    encrypted: self.geo.is_some_and(|(g, _, _)| g.encrypted()),
                    bytes: self.lsn.0.saturating_sub(first.0),
                    checkpoint,
                    end: self.lsn,
                    why,
                    named: self.named,
                })
            }
            None => Err("the log could not be walked".into()),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::innodb::page::{stamp_checksum, FIL_PAGE_DATA, FIL_PAGE_OFFSET, FSP_SIZE};

    const PS: usize = 16384;

    /// A full_crc32 tablespace of `n` 16 KiB pages, space id 7, every
    /// page's checksum stamped.
    fn tablespace(n: u32) -> Vec<u8> {
        let fmt = PageFormat::from_flags(0x15).unwrap();
        let mut f = vec![0u8; PS * n as usize];
        for (i, p) in f.chunks_exact_mut(PS).enumerate() {
            p[FIL_PAGE_OFFSET..FIL_PAGE_OFFSET + 4].copy_from_slice(&(i as u32).to_be_bytes());
            p[FIL_PAGE_SPACE_ID..FIL_PAGE_SPACE_ID + 4].copy_from_slice(&7u32.to_be_bytes());
            p[200..216].copy_from_slice(b"some page bytes!");
            if i == 0 {
                let h = FIL_PAGE_DATA;
                p[h..h + 4].copy_from_slice(&7u32.to_be_bytes());
                p[h + FSP_SIZE..h + FSP_SIZE + 4].copy_from_slice(&n.to_be_bytes());
                p[h + 16..h + 20].copy_from_slice(&0x15u32.to_be_bytes());
            }
            stamp_checksum(&fmt, p).unwrap();
        }
        f
    }

    fn check(data: &[u8], piece: usize) -> FileCheck {
        let mut c = PageChecker::new("t/a.ibd", None, false);
        for p in data.chunks(piece.max(1)) {
            c.feed(p);
        }
        c.finish()
    }

    fn details(c: &FileCheck) -> Vec<String> {
        c.findings.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn intact_tablespace_in_any_pieces() {
        let t = tablespace(8);
        for piece in [1, 7, 4096, PS - 1, PS, PS + 1, 100_000, t.len()] {
            let c = check(&t, piece);
            assert!(c.findings.is_empty(), "{piece}: {:?}", details(&c));
            assert_eq!(c.pages, 8, "{piece}");
            assert_eq!(c.space, Some(7));
            assert!(!c.page0_zero);
        }
    }

    #[test]
    fn damage_is_found_the_same_in_any_pieces() {
        let mut t = tablespace(8);
        t[5 * PS + 1000] ^= 0x5a;
        // Page 6 claims to be page 2 (moved), page 7 another space's.
        t[6 * PS + FIL_PAGE_OFFSET + 3] = 2;
        let want = details(&check(&t, t.len()));
        assert!(
            want.iter()
                .any(|d| d.starts_with("[page] t/a.ibd: page 5 (byte 81920)")),
            "{want:?}"
        );
        assert!(
            want.iter().any(|d| d.contains("page 6 (byte 98304)")),
            "{want:?}"
        );
        for piece in [1, 999, PS, 3 * PS + 5] {
            assert_eq!(details(&check(&t, piece)), want, "{piece}");
        }
        // One page and a half short: FSP_SIZE and the length, reported first.
        let cut = &t[..5 * PS + PS / 2];
        let d = details(&check(cut, 4096));
        assert!(
            d[0].contains("not a multiple of the page size 16384"),
            "{d:?}"
        );
        assert!(
            d[1].contains("5 pages, page 0 declares FSP_SIZE 8: the file is truncated"),
            "{d:?}"
        );
    }

    #[test]
    fn short_empty_and_zero_files() {
        let d = details(&check(&[], 1));
        assert!(d[0].contains("page 0 unreadable"), "{d:?}");
        let zero = vec![0u8; 4 * PS];
        let c = check(&zero, 5000);
        assert!(c.page0_zero && c.findings.is_empty());
        // Shorter than the largest page size: page 0 still parsed at the end.
        let t = tablespace(2);
        let c = check(&t, 3);
        assert!(c.findings.is_empty(), "{:?}", details(&c));
        assert_eq!(c.pages, 2);
    }
}
