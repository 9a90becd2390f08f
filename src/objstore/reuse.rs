//! A retaken live backup reusing what a dead attempt already stored (pure,
//! no I/O). `format-spec/object-store.md` ("Retakes") describes it in prose.
//!
//! A live backup to `s3://` is an *attempt* (`attempt-<id>/` under the
//! prefix). Its stream is cut into segments (`seg.NNNNNN.xbs`), each
//! completed as soon as it is full and followed by an index
//! (`seg.NNNNNN.idx.json`, [`SegIndex`]) of the files whose last byte lies
//! in it: per file its payload size, the BLAKE3 of every [`UNIT`] of its
//! payload, and where its xbstream chunks lie ([`Run`]s).
//!
//! The writer cuts every file's chunks at multiples of [`UNIT`] payload
//! bytes, so a unit's chunks are a contiguous, self-contained piece of any
//! attempt's stream whatever the producer's read sizes were. A retake
//! ([`LiveFile`]) hashes each unit of a file as it streams; while the units
//! equal the earlier attempt's (same size, same BLAKE3) it writes nothing
//! and keeps only the current unit; the matched prefix becomes a reference
//! to the earlier chunks (the whole file when every unit and the size
//! match), and from the first unit that differs on, the file is written to
//! the new stream as usual.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::format::xbstream;

/// Payload bytes per unit: chunks are cut at its multiples.
pub const UNIT: u64 = 4 << 20;
/// Files with less payload are neither indexed nor reused (sending them
/// again costs less than a ranged GET each).
pub const MIN_REUSE: u64 = 1 << 20;
/// The index's format word.
pub const INDEX_FORMAT: &str = "hotbak-segment-index";
/// The index's version.
pub const INDEX_VERSION: u32 = 1;
/// Largest index object read.
pub const MAX_INDEX_BYTES: usize = 8 << 20;

/// Where a file's chunks lie: `(object, offset, length)`, object relative
/// to the prefix.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Run(pub String, pub u64, pub u64);

/// One unit of a file: the stream bytes its chunks take (the last unit's
/// with the file's `E` chunk) and the BLAKE3 (hex) of its payload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unit(pub u64, pub String);

/// A file an attempt stored, as its index lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRec {
    /// Its path in the stream (as stored: `db/t.ibd.zst` when compressed).
    pub path: String,
    /// Payload bytes.
    pub size: u64,
    /// One per [`UNIT`] of payload (at least one).
    pub units: Vec<Unit>,
    /// Its chunks, in order; their lengths sum to the units' stream bytes.
    pub runs: Vec<Run>,
}

/// Number of units of a file of `size` payload bytes.
#[must_use]
pub fn units_for(size: u64) -> usize {
    usize::try_from(size.div_ceil(UNIT).max(1)).unwrap_or(usize::MAX)
}

impl FileRec {
    /// Stream bytes of all its chunks.
    #[must_use]
    pub fn stream_len(&self) -> u64 {
        self.units.iter().map(|u| u.0).sum()
    }

    fn check(&self) -> Result<(), String> {
        if self.units.len() != units_for(self.size) {
            return Err(format!(
                "{}: {} units for {} bytes",
                self.path,
                self.units.len(),
                self.size
            ));
        }
        if self
            .units
            .iter()
            .any(|u| u.1.len() != 64 || hex::decode(&u.1).is_err())
        {
            return Err(format!(
                "{}: a unit's BLAKE3 is not 64 hex digits",
                self.path
            ));
        }
        let mut runs: u64 = 0;
        for r in &self.runs {
            if super::layout::segment_of(&r.0).is_none() {
                return Err(format!("{}: run in {:?}, not a segment", self.path, r.0));
            }
            r.1.checked_add(r.2)
                .ok_or_else(|| format!("{}: run overflows", self.path))?;
            runs = runs
                .checked_add(r.2)
                .ok_or_else(|| format!("{}: runs overflow", self.path))?;
        }
        let units = self
            .units
            .iter()
            .try_fold(0u64, |a, u| a.checked_add(u.0))
            .ok_or_else(|| format!("{}: units overflow", self.path))?;
        if runs != units {
            return Err(format!(
                "{}: runs hold {runs} bytes, units {units}",
                self.path
            ));
        }
        Ok(())
    }
}

/// A segment's index.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegIndex {
    /// [`INDEX_FORMAT`].
    pub format: String,
    /// [`INDEX_VERSION`].
    pub version: u32,
    /// The attempt.
    pub attempt: String,
    /// The segment it follows (`attempt-<id>/seg.NNNNNN.xbs`).
    pub object: String,
    /// [`UNIT`] when written.
    pub unit: u64,
    /// The transforms (compression, encryption) the stored bytes went through.
    pub transform: String,
    /// Files whose last byte is in this segment.
    pub files: Vec<FileRec>,
}

impl SegIndex {
    /// Parse and check an index object.
    ///
    /// # Errors
    /// A reason naming what is wrong.
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        if bytes.len() > MAX_INDEX_BYTES {
            return Err(format!("larger than {MAX_INDEX_BYTES} bytes"));
        }
        let x: SegIndex = serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
        if x.format != INDEX_FORMAT || x.version != INDEX_VERSION {
            return Err(format!(
                "format {:?} version {}, expected {INDEX_FORMAT:?} {INDEX_VERSION}",
                x.format, x.version
            ));
        }
        if !super::layout::attempt_ok(&x.attempt) {
            return Err(format!("bad attempt id {:?}", x.attempt));
        }
        for f in &x.files {
            f.check()?;
        }
        Ok(x)
    }

    /// Serialize.
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// The first `len` bytes of the stream spanned by `runs`, as runs.
#[must_use]
pub fn prefix_runs(runs: &[Run], mut len: u64) -> Vec<Run> {
    let mut out = Vec::new();
    for r in runs {
        if len == 0 {
            break;
        }
        let take = r.2.min(len);
        out.push(Run(r.0.clone(), r.1, take));
        len -= take;
    }
    out
}

/// Append `r` to `v`, merged into the last run when it continues it.
pub fn push_run(v: &mut Vec<Run>, r: Run) {
    if r.2 == 0 {
        return;
    }
    if let Some(last) = v.last_mut() {
        if last.0 == r.0 && last.1 + last.2 == r.1 {
            last.2 += r.2;
            return;
        }
    }
    v.push(r);
}

/// Bytes `[at, at + len)` of an attempt's stream, cut into segments of
/// `seg_bytes`, as runs in its segment objects.
#[must_use]
pub fn segment_runs(attempt: &str, seg_bytes: u64, mut at: u64, mut len: u64) -> Vec<Run> {
    let seg_bytes = seg_bytes.max(1);
    let mut out = Vec::new();
    while len > 0 {
        let seg = at / seg_bytes;
        let off = at % seg_bytes;
        let take = (seg_bytes - off).min(len);
        let idx = usize::try_from(seg).unwrap_or(usize::MAX);
        out.push(Run(super::layout::seg_name(attempt, idx), off, take));
        at += take;
        len -= take;
    }
    out
}

/// The files earlier attempts stored, by path; the newest record of a path wins.
#[derive(Debug, Default)]
pub struct Catalog {
    files: HashMap<String, Arc<FileRec>>,
    /// Files dropped because an object they need is missing or short.
    pub dropped: usize,
}

impl Catalog {
    /// Add an index (call in attempt, then segment, order). `objects` maps
    /// the completed objects' names (relative to the prefix) to their sizes;
    /// an index with another `transform` or unit adds nothing.
    pub fn add(&mut self, idx: SegIndex, objects: &HashMap<String, u64>, transform: &str) {
        if idx.transform != transform || idx.unit != UNIT {
            return;
        }
        for f in idx.files {
            let present = f
                .runs
                .iter()
                .all(|r| objects.get(&r.0).is_some_and(|&s| r.1 + r.2 <= s));
            if !present {
                self.dropped += 1;
                continue;
            }
            self.files.insert(f.path.clone(), Arc::new(f));
        }
    }

    /// The record for `path`, if any.
    #[must_use]
    pub fn get(&self, path: &str) -> Option<Arc<FileRec>> {
        self.files.get(path).cloned()
    }

    /// Files known.
    #[must_use]
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// Nothing known.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }
}

/// Where a piece of a file's chunks went: the new stream, or an earlier object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Piece {
    /// New stream bytes `[at, at + len)`.
    New {
        /// Offset in the new stream.
        at: u64,
        /// Length.
        len: u64,
    },
    /// Bytes of an earlier attempt's segment.
    Old(Run),
}

/// What the writer does with a file's bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    /// Reference these earlier chunks at the current stream position.
    Reuse(Vec<Run>),
    /// Append these bytes (a chunk header, or a payload) to the new stream.
    Write(Bytes),
}

/// A file closed: what the index of this attempt will say of it.
#[derive(Debug)]
pub struct Closed {
    /// Path.
    pub path: String,
    /// Payload bytes.
    pub size: u64,
    /// Units.
    pub units: Vec<Unit>,
    /// Where its chunks are.
    pub pieces: Vec<Piece>,
    /// Stream bytes reused from earlier attempts.
    pub reused: u64,
    /// Every chunk came from an earlier attempt.
    pub whole: bool,
}

impl Closed {
    /// End of its last new-stream piece (0 when none): the record can be
    /// indexed once the new stream is complete up to there.
    #[must_use]
    pub fn need(&self) -> u64 {
        self.pieces
            .iter()
            .filter_map(|p| match p {
                Piece::New { at, len } => Some(at + len),
                Piece::Old(_) => None,
            })
            .max()
            .unwrap_or(0)
    }

    /// The record, with new-stream pieces placed in `attempt`'s segments.
    #[must_use]
    pub fn record(&self, attempt: &str, seg_bytes: u64) -> FileRec {
        let mut runs = Vec::new();
        for p in &self.pieces {
            match p {
                Piece::New { at, len } => {
                    for r in segment_runs(attempt, seg_bytes, *at, *len) {
                        push_run(&mut runs, r);
                    }
                }
                Piece::Old(r) => push_run(&mut runs, r.clone()),
            }
        }
        FileRec {
            path: self.path.clone(),
            size: self.size,
            units: self.units.clone(),
            runs,
        }
    }
}

/// One file streaming into an attempt: cuts its chunks at unit boundaries,
/// hashes its units, and, given an earlier record of the same path, holds
/// back each unit until it is known to differ (see the module docs).
#[derive(Debug)]
pub struct LiveFile {
    path: String,
    cand: Option<Arc<FileRec>>,
    /// Still matching `cand` (nothing of the file written yet).
    matching: bool,
    size: u64,
    hasher: blake3::Hasher,
    /// Stream bytes written for the current unit.
    unit_stream: u64,
    units: Vec<Unit>,
    held: Vec<Bytes>,
    pieces: Vec<Piece>,
    reused: u64,
}

impl LiveFile {
    /// Start a file; `cand` is an earlier attempt's record of the same path.
    #[must_use]
    pub fn new(path: String, cand: Option<Arc<FileRec>>) -> Self {
        let cand = cand.filter(|c| c.size >= MIN_REUSE);
        LiveFile {
            path,
            matching: cand.is_some(),
            cand,
            size: 0,
            hasher: blake3::Hasher::new(),
            unit_stream: 0,
            units: Vec::new(),
            held: Vec::new(),
            pieces: Vec::new(),
            reused: 0,
        }
    }

    /// Payload bytes so far.
    #[must_use]
    pub fn size(&self) -> u64 {
        self.size
    }

    fn unit_index(&self) -> usize {
        self.units.len()
    }

    /// The next `bytes` of the file's payload; `pos` is the new stream's
    /// length now. The actions are to be carried out in order.
    #[must_use]
    pub fn data(&mut self, pos: u64, mut bytes: Bytes) -> Vec<Action> {
        let mut out = Vec::new();
        let mut pos = pos;
        while !bytes.is_empty() {
            let unit_end = (self.unit_index() as u64 + 1) * UNIT;
            if self.size == unit_end {
                self.seal(&mut pos, &mut out, false);
                continue;
            }
            let take = usize::try_from((unit_end - self.size).min(bytes.len() as u64))
                .unwrap_or(usize::MAX)
                .min(xbstream::DEFAULT_CHUNK_LEN);
            let piece = bytes.split_to(take);
            self.hasher.update(&piece);
            if self.matching {
                self.size += piece.len() as u64;
                self.held.push(piece);
                let too_long = self.cand.as_ref().is_some_and(|c| self.size > c.size);
                if too_long {
                    self.diverge(&mut pos, &mut out);
                }
            } else {
                self.write_chunk(&mut pos, &mut out, piece);
            }
        }
        out
    }

    /// The file ended; `pos` is the new stream's length now.
    #[must_use]
    pub fn close(mut self, pos: u64) -> (Vec<Action>, Closed) {
        let mut out = Vec::new();
        let mut pos = pos;
        self.seal(&mut pos, &mut out, true);
        let whole = self.reused > 0 && !self.pieces.iter().any(|p| matches!(p, Piece::New { .. }));
        let closed = Closed {
            path: self.path,
            size: self.size,
            units: self.units,
            pieces: self.pieces,
            reused: self.reused,
            whole,
        };
        (out, closed)
    }

    fn write_chunk(&mut self, pos: &mut u64, out: &mut Vec<Action>, payload: Bytes) {
        let off = self.size;
        let mut head = Vec::with_capacity(64 + self.path.len());
        xbstream::put_payload_header(&mut head, self.path.as_bytes(), off, &payload);
        self.size += payload.len() as u64;
        let n = (head.len() + payload.len()) as u64;
        self.place(pos, n);
        self.unit_stream += n;
        out.push(Action::Write(Bytes::from(head)));
        out.push(Action::Write(payload));
    }

    fn place(&mut self, pos: &mut u64, n: u64) {
        match self.pieces.last_mut() {
            Some(Piece::New { at, len }) if *at + *len == *pos => *len += n,
            _ => self.pieces.push(Piece::New { at: *pos, len: n }),
        }
        *pos += n;
    }

    /// Stop matching: reference the units matched so far, write the held ones.
    fn diverge(&mut self, pos: &mut u64, out: &mut Vec<Action>) {
        self.matching = false;
        let k = self.unit_index();
        if let Some(c) = self.cand.take() {
            let len: u64 = c.units[..k.min(c.units.len())].iter().map(|u| u.0).sum();
            self.reuse(out, prefix_runs(&c.runs, len));
        }
        let held = std::mem::take(&mut self.held);
        let mut off = self.size - held.iter().map(|b| b.len() as u64).sum::<u64>();
        for b in held {
            let n = b.len() as u64;
            self.size = off;
            self.write_chunk(pos, out, b);
            off += n;
        }
    }

    fn reuse(&mut self, out: &mut Vec<Action>, runs: Vec<Run>) {
        if runs.is_empty() {
            return;
        }
        for r in &runs {
            self.reused += r.2;
            match self.pieces.last_mut() {
                Some(Piece::Old(last)) if last.0 == r.0 && last.1 + last.2 == r.1 => last.2 += r.2,
                _ => self.pieces.push(Piece::Old(r.clone())),
            }
        }
        out.push(Action::Reuse(runs));
    }

    /// The current unit is complete (`last`: the file ended with it).
    fn seal(&mut self, pos: &mut u64, out: &mut Vec<Action>, last: bool) {
        let hash = std::mem::replace(&mut self.hasher, blake3::Hasher::new()).finalize();
        let hash = hex::encode(hash.as_bytes());
        let k = self.unit_index();
        if self.matching {
            let same = self.cand.as_ref().is_some_and(|c| {
                let is_last = k + 1 == c.units.len();
                is_last == last
                    && (!last || c.size == self.size)
                    && c.units.get(k).is_some_and(|u| u.1 == hash)
            });
            if same {
                let c = self.cand.clone();
                if let Some(c) = c {
                    self.units.push(c.units[k].clone());
                    self.held.clear();
                    if last {
                        self.matching = false;
                        self.cand = None;
                        self.reuse(out, c.runs.clone());
                    }
                }
                return;
            }
            self.diverge(pos, out);
        }
        if last {
            let mut e = Vec::with_capacity(16 + self.path.len());
            xbstream::put_eof(&mut e, self.path.as_bytes());
            let n = e.len() as u64;
            self.place(pos, n);
            self.unit_stream += n;
            out.push(Action::Write(Bytes::from(e)));
        }
        self.units
            .push(Unit(std::mem::take(&mut self.unit_stream), hash));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const A: &str = "20261205T000000Z-00000001";
    const SEG: u64 = 9 << 20;

    /// Stream `data` as `path` in frames of `frame` bytes; returns the new
    /// stream's bytes, the reused runs (with their stream positions), and the
    /// closed record.
    fn stream(
        path: &str,
        data: &[u8],
        frame: usize,
        cand: Option<Arc<FileRec>>,
        start: u64,
    ) -> (Vec<u8>, Vec<(u64, Run)>, Closed) {
        let mut f = LiveFile::new(path.into(), cand);
        let mut out = Vec::new();
        let mut reused = Vec::new();
        let mut apply = |acts: Vec<Action>, out: &mut Vec<u8>| {
            for a in acts {
                match a {
                    Action::Write(b) => out.extend_from_slice(&b),
                    Action::Reuse(rs) => {
                        for r in rs {
                            reused.push((start + out.len() as u64, r));
                        }
                    }
                }
            }
        };
        for c in data.chunks(frame.max(1)) {
            let acts = f.data(start + out.len() as u64, Bytes::copy_from_slice(c));
            apply(acts, &mut out);
        }
        let (acts, closed) = f.close(start + out.len() as u64);
        apply(acts, &mut out);
        (out, reused, closed)
    }

    /// Rebuild a logical stream: the new bytes with the reused runs spliced
    /// in, the runs read from `objects`.
    fn splice(
        new: &[u8],
        start: u64,
        reused: &[(u64, Run)],
        objects: &HashMap<String, Vec<u8>>,
    ) -> Vec<u8> {
        let mut out = Vec::new();
        let mut at = 0usize;
        for (pos, r) in reused {
            let p = usize::try_from(pos - start).unwrap();
            out.extend_from_slice(&new[at..p]);
            at = p;
            let o = &objects[&r.0];
            out.extend_from_slice(&o[r.1 as usize..(r.1 + r.2) as usize]);
        }
        out.extend_from_slice(&new[at..]);
        out
    }

    /// Decode an xbstream into path → bytes.
    fn decode(stream: &[u8]) -> HashMap<Vec<u8>, Vec<u8>> {
        let mut dec = xbstream::Decoder::default();
        let mut buf = bytes::BytesMut::from(stream);
        let mut files: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
        let mut ended = Vec::new();
        while let Some(c) = dec.decode(&mut buf).unwrap() {
            match c.ty {
                xbstream::ChunkType::Payload => {
                    let f = files.entry(c.path.to_vec()).or_default();
                    assert_eq!(f.len() as u64, c.file_offset, "chunks in order");
                    f.extend_from_slice(&c.payload);
                }
                xbstream::ChunkType::Eof => ended.push(c.path.to_vec()),
                _ => {}
            }
        }
        assert!(buf.is_empty());
        for p in files.keys() {
            assert!(ended.contains(p), "no E chunk");
        }
        files
    }

    fn objects_of(attempt: &str, stream: &[u8]) -> HashMap<String, Vec<u8>> {
        stream
            .chunks(SEG as usize)
            .enumerate()
            .map(|(i, c)| (super::super::layout::seg_name(attempt, i), c.to_vec()))
            .collect()
    }

    fn data(n: usize, seed: u8) -> Vec<u8> {
        (0..n)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 13) as u8)
            .collect()
    }

    #[test]
    fn unchanged_file_is_reused_whole_whatever_the_frames() {
        let d = data(11 << 20, 1);
        let (s1, r1, c1) = stream("db/t.ibd", &d, 1 << 20, None, 0);
        assert!(r1.is_empty());
        assert_eq!(c1.units.len(), 3);
        let rec = Arc::new(c1.record(A, SEG));
        assert_eq!(rec.stream_len(), s1.len() as u64);
        let objs = objects_of(A, &s1);
        // Other frame sizes, another stream position.
        let (s2, r2, c2) = stream("db/t.ibd", &d, 3 << 20 | 7, Some(rec.clone()), 100);
        assert!(s2.is_empty(), "nothing new written");
        assert!(c2.whole);
        assert_eq!(c2.reused, s1.len() as u64);
        let back = splice(&s2, 100, &r2, &objs);
        assert_eq!(decode(&back)[&b"db/t.ibd".to_vec()], d);
        // Its record is the old one's: a later retake reuses it again.
        assert_eq!(c2.record("20261205T000001Z-00000002", SEG), *rec);
    }

    #[test]
    fn changed_grown_and_shrunk_files_reuse_only_the_equal_prefix() {
        let d = data(13 << 20, 2);
        let (s1, _, c1) = stream("db/t.MYD", &d, 1 << 20, None, 0);
        let rec = Arc::new(c1.record(A, SEG));
        let objs = objects_of(A, &s1);
        let mut changed = d.clone();
        changed[9 << 20] ^= 1;
        let mut grown = d.clone();
        grown.extend_from_slice(&[5; 1000]);
        let shrunk = d[..(12 << 20)].to_vec();
        let mut first = d.clone();
        first[0] ^= 1;
        for (name, v, units) in [
            ("changed", changed, 2u64),
            ("grown", grown, 3),
            ("shrunk", shrunk, 2),
            ("first", first, 0),
        ] {
            let (s2, r2, c2) = stream("db/t.MYD", &v, 2 << 20, Some(rec.clone()), 0);
            assert!(!c2.whole, "{name}");
            let want: u64 = rec.units[..units as usize].iter().map(|u| u.0).sum();
            assert_eq!(c2.reused, want, "{name}");
            let back = splice(&s2, 0, &r2, &objs);
            assert_eq!(decode(&back)[&b"db/t.MYD".to_vec()], v, "{name}");
            // Its record describes the new stream with the reused prefix.
            let r = c2.record("20261205T000001Z-00000002", SEG);
            assert_eq!(r.units.len(), units_for(v.len() as u64), "{name}");
            assert_eq!(
                r.stream_len(),
                r.runs.iter().map(|x| x.2).sum::<u64>(),
                "{name}"
            );
        }
    }

    #[test]
    fn small_files_are_never_candidates() {
        let d = data(1000, 3);
        let (s1, _, c1) = stream("db/s.frm", &d, 4096, None, 0);
        let rec = Arc::new(c1.record(A, SEG));
        let (s2, r2, _) = stream("db/s.frm", &d, 4096, Some(rec), 0);
        assert!(r2.is_empty());
        assert_eq!(s1, s2);
    }

    #[test]
    fn index_round_trips_and_checks() {
        let d = data(5 << 20, 4);
        let (_, _, c1) = stream("db/t.ibd", &d, 1 << 20, None, 0);
        let idx = SegIndex {
            format: INDEX_FORMAT.into(),
            version: INDEX_VERSION,
            attempt: A.into(),
            object: super::super::layout::seg_name(A, 0),
            unit: UNIT,
            transform: "none".into(),
            files: vec![c1.record(A, SEG)],
        };
        assert_eq!(SegIndex::parse(&idx.to_bytes()).unwrap(), idx);
        let mut bad = idx.clone();
        bad.files[0].runs[0].2 += 1;
        assert!(SegIndex::parse(&bad.to_bytes())
            .unwrap_err()
            .contains("runs hold"));
        let mut bad = idx.clone();
        bad.files[0].runs[0].0 = "../x".into();
        assert!(SegIndex::parse(&bad.to_bytes()).is_err());
        let mut bad = idx.clone();
        bad.files[0].units.pop();
        assert!(SegIndex::parse(&bad.to_bytes()).is_err());
        // The catalog drops records whose objects are missing or short, and
        // indexes of another transform.
        let objs: HashMap<String, u64> = [(super::super::layout::seg_name(A, 0), SEG)].into();
        let mut cat = Catalog::default();
        cat.add(idx.clone(), &objs, "zstd");
        assert!(cat.is_empty());
        cat.add(idx.clone(), &HashMap::new(), "none");
        assert_eq!((cat.len(), cat.dropped), (0, 1));
        cat.add(idx, &objs, "none");
        assert!(cat.get("db/t.ibd").is_some());
    }

    #[test]
    fn runs_split_and_merge() {
        let r = segment_runs(A, 10, 7, 25);
        assert_eq!(
            r.iter().map(|x| (x.1, x.2)).collect::<Vec<_>>(),
            [(7, 3), (0, 10), (0, 10), (0, 2)]
        );
        assert_eq!(prefix_runs(&r, 14).iter().map(|x| x.2).sum::<u64>(), 14);
        let mut v = vec![Run("a".into(), 0, 5)];
        push_run(&mut v, Run("a".into(), 5, 5));
        push_run(&mut v, Run("a".into(), 11, 5));
        assert_eq!(v, [Run("a".into(), 0, 10), Run("a".into(), 11, 5)]);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn any_change_round_trips(
            len in (1usize << 20)..(10usize << 20),
            frame in 1usize..(3 << 20),
            flip in proptest::option::of(0usize..(10usize << 20)),
            cut in proptest::option::of(0usize..(10usize << 20)),
        ) {
            let d = data(len, 9);
            let (s1, _, c1) = stream("x/y.ibd", &d, 1 << 20, None, 0);
            let rec = Arc::new(c1.record(A, SEG));
            let objs = objects_of(A, &s1);
            let mut v = d.clone();
            if let Some(f) = flip { if f < v.len() { v[f] ^= 0x40; } }
            if let Some(c) = cut { v.truncate(c.max(1)); }
            let (s2, r2, c2) = stream("x/y.ibd", &v, frame, Some(rec), 3);
            let back = splice(&s2, 3, &r2, &objs);
            prop_assert_eq!(&decode(&back)[&b"x/y.ibd".to_vec()], &v);
            prop_assert_eq!(c2.whole, v == d);
        }

        #[test]
        fn index_parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = SegIndex::parse(&bytes);
        }
    }
}
