//! The object layout of a backup under `s3://BUCKET/PREFIX/`, pure (no I/O).
//! `format-spec/object-store.md` describes it in prose.
//!
//! - `stream.000000.xbs`, `stream.000001.xbs`, …: the xbstream, cut into
//!   objects of at most `max_parts` parts of `part_size` bytes each; the
//!   stream is their concatenation.
//! - `hotbak-commit.json`: written last, with `If-None-Match: *`, only after
//!   every data object completed. Its presence is the only proof that the
//!   backup is complete; it lists the data objects with their sizes and
//!   composite SHA-256 (as S3 computes it for a multipart object: SHA-256
//!   over the parts' SHA-256 digests).
//! - The resume state of `hotbak upload` is a local JSON-lines file
//!   ([`StateLine`]).

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// The commit object's name under the prefix.
pub const COMMIT: &str = "hotbak-commit.json";
/// The format word in the commit object.
pub const FORMAT: &str = "hotbak-object-store";
/// The commit object's version (2: attempts, segments and reused ranges;
/// readers accept 1 too).
pub const VERSION: u32 = 2;
/// S3's part-count limit per object.
pub const MAX_PARTS: u32 = 10_000;
/// S3's smallest part (except the last).
pub const MIN_PART: u64 = 5 << 20;
/// Largest part we use (memory is parallelism × part size).
pub const MAX_PART: u64 = 512 << 20;
/// Part size when nothing is known about the stream's size.
pub const DEFAULT_PART: u64 = 16 << 20;

/// The name of data object `i`.
#[must_use]
pub fn data_name(i: usize) -> String {
    format!("stream.{i:06}.xbs")
}

/// The index of a data object's name, if it is one.
#[must_use]
pub fn data_index(name: &str) -> Option<usize> {
    let n = name.strip_prefix("stream.")?.strip_suffix(".xbs")?;
    (n.len() == 6 && n.bytes().all(|b| b.is_ascii_digit()))
        .then(|| n.parse().ok())
        .flatten()
}

/// Whether `id` may name an attempt: 1 to 64 ASCII letters, digits or `-`.
#[must_use]
pub fn attempt_ok(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// The name of segment `i` of attempt `attempt` (a live backup's data object).
#[must_use]
pub fn seg_name(attempt: &str, i: usize) -> String {
    format!("attempt-{attempt}/seg.{i:06}.xbs")
}

/// The name of the index written after segment `i` of `attempt` completed.
#[must_use]
pub fn idx_name(attempt: &str, i: usize) -> String {
    format!("attempt-{attempt}/seg.{i:06}.idx.json")
}

fn attempt_item<'a>(name: &'a str, suffix: &str) -> Option<(&'a str, usize)> {
    let rest = name.strip_prefix("attempt-")?;
    let (id, file) = rest.split_once('/')?;
    let n = file.strip_prefix("seg.")?.strip_suffix(suffix)?;
    (attempt_ok(id) && n.len() == 6 && n.bytes().all(|b| b.is_ascii_digit()))
        .then(|| n.parse().ok().map(|i| (id, i)))
        .flatten()
}

/// The attempt and index of a segment's name, if it is one.
#[must_use]
pub fn segment_of(name: &str) -> Option<(&str, usize)> {
    attempt_item(name, ".xbs")
}

/// The attempt and segment index of an index object's name, if it is one.
#[must_use]
pub fn index_of(name: &str) -> Option<(&str, usize)> {
    attempt_item(name, ".idx.json")
}

/// SHA-256.
#[must_use]
pub fn sha256(data: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Base64 as `x-amz-checksum-sha256` carries it.
#[must_use]
pub fn sha256_b64(d: &[u8; 32]) -> String {
    base64::engine::general_purpose::STANDARD.encode(d)
}

/// S3's composite checksum of a multipart object: SHA-256 over the parts' digests.
#[must_use]
pub fn composite(parts: &[[u8; 32]]) -> [u8; 32] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for p in parts {
        ctx.update(p);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// The part size: `requested` if given (clamped to S3's limits), else the
/// smallest multiple of 1 MiB, at least [`DEFAULT_PART`], with which
/// `max_parts` parts cover `expected` bytes (plus 10% for growth during the
/// backup). A stream larger than that rolls over into further objects.
#[must_use]
pub fn part_size(expected: Option<u64>, requested: Option<u64>, max_parts: u32) -> u64 {
    if let Some(r) = requested {
        return r.clamp(MIN_PART, MAX_PART);
    }
    let Some(e) = expected else {
        return DEFAULT_PART;
    };
    let want = (e + e / 10).div_ceil(u64::from(max_parts.max(1)));
    let mib = want.div_ceil(1 << 20) << 20;
    mib.clamp(DEFAULT_PART, MAX_PART)
}

/// One data object in the commit object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataObject {
    /// Name under the prefix.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// Number of parts.
    pub parts: u32,
    /// Composite SHA-256 (hex) of the parts, see [`composite`].
    pub sha256_of_parts: String,
}

/// A range of an earlier attempt's segment spliced into the stream (version 2).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reused {
    /// Where it goes: an offset in the concatenation of `objects`; the
    /// range comes before the byte at `at` (ranges with the same `at` in
    /// list order).
    pub at: u64,
    /// The segment (`attempt-<id>/seg.NNNNNN.xbs`).
    pub object: String,
    /// First byte in it.
    pub offset: u64,
    /// Length.
    pub len: u64,
}

/// The commit object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Commit {
    /// [`FORMAT`].
    pub format: String,
    /// [`VERSION`].
    pub version: u32,
    /// Who wrote it (`hotbak 0.1.0`).
    pub tool: String,
    /// When the upload completed (RFC 3339, UTC).
    pub created: String,
    /// What was uploaded: `backup` (a live backup) or `file` (`hotbak upload`).
    pub source: String,
    /// The stream's size in bytes (the sum of the objects' sizes).
    pub stream_bytes: u64,
    /// Part size of every part but each object's last.
    pub part_size: u64,
    /// The data objects in stream order.
    pub objects: Vec<DataObject>,
    /// `xtrabackup_checkpoints` of the backup when it was readable in the
    /// stream (not encrypted): `backup_type`, `from_lsn`, `to_lsn`, ….
    #[serde(default)]
    pub checkpoints: BTreeMap<String, String>,
    /// Number of files in the stream, when known.
    #[serde(default)]
    pub files: Option<u64>,
    /// Version 2: ranges of earlier attempts spliced into the stream (a retake).
    #[serde(default)]
    pub reused: Vec<Reused>,
}

/// Largest commit object we read.
pub const MAX_COMMIT_BYTES: usize = 4 << 20;

impl Commit {
    /// Parse and check a commit object.
    ///
    /// # Errors
    /// A reason naming what is wrong.
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        if bytes.len() > MAX_COMMIT_BYTES {
            return Err(format!("larger than {MAX_COMMIT_BYTES} bytes"));
        }
        let c: Commit = serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
        if c.format != FORMAT {
            return Err(format!("format {:?}, expected {FORMAT:?}", c.format));
        }
        if c.version != 1 && c.version != VERSION {
            return Err(format!(
                "version {}, this hotbak reads 1 and {VERSION}",
                c.version
            ));
        }
        if c.part_size == 0 || c.part_size > MAX_PART {
            return Err(format!("part size {} out of range", c.part_size));
        }
        let mut sum: u64 = 0;
        let attempt = c
            .objects
            .first()
            .and_then(|o| segment_of(&o.name))
            .map(|a| a.0);
        if attempt.is_some() && c.version < 2 {
            return Err("segments in a version 1 commit object".into());
        }
        for (i, o) in c.objects.iter().enumerate() {
            let named = match attempt {
                Some(a) => segment_of(&o.name) == Some((a, i)),
                None => data_index(&o.name) == Some(i),
            };
            if !named {
                return Err(format!(
                    "object {i} is named {:?}, expected {}",
                    o.name,
                    data_name(i)
                ));
            }
            let want = o.size.div_ceil(c.part_size).max(1);
            if u64::from(o.parts) != want || o.parts > MAX_PARTS {
                return Err(format!(
                    "{}: {} parts for {} bytes of {}-byte parts",
                    o.name, o.parts, o.size, c.part_size
                ));
            }
            if o.sha256_of_parts.len() != 64 || hex::decode(&o.sha256_of_parts).is_err() {
                return Err(format!("{}: bad sha256_of_parts", o.name));
            }
            sum = sum
                .checked_add(o.size)
                .ok_or_else(|| "sizes overflow".to_owned())?;
        }
        if sum != c.stream_bytes {
            return Err(format!(
                "objects hold {sum} bytes, stream_bytes says {}",
                c.stream_bytes
            ));
        }
        if !c.reused.is_empty() && c.version < 2 {
            return Err("reused ranges in a version 1 commit object".into());
        }
        let mut prev = 0;
        let mut total = sum;
        for r in &c.reused {
            if segment_of(&r.object).is_none() {
                return Err(format!("reused range in {:?}: not a segment", r.object));
            }
            if r.at < prev || r.at > c.stream_bytes || r.len == 0 {
                return Err(format!(
                    "reused range of {} at {} (after {prev}, stream of {}): out of order or empty",
                    r.object, r.at, c.stream_bytes
                ));
            }
            prev = r.at;
            r.offset
                .checked_add(r.len)
                .and_then(|_| total.checked_add(r.len))
                .map(|t| total = t)
                .ok_or_else(|| "reused ranges overflow".to_owned())?;
        }
        Ok(c)
    }

    /// The backup stream's length: the objects plus the reused ranges.
    #[must_use]
    pub fn total_bytes(&self) -> u64 {
        self.stream_bytes + self.reused.iter().map(|r| r.len).sum::<u64>()
    }

    /// Serialize (pretty, for people reading the bucket).
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }
}

/// Parse `key = value` lines (`xtrabackup_checkpoints`), at most 64 of them.
#[must_use]
pub fn key_values(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .filter(|(k, _)| !k.is_empty() && k.len() <= 64)
        .take(64)
        .collect()
}

/// One line of the resume state file of `hotbak upload` (JSON lines, appended
/// and synced as the upload goes; a torn last line is ignored).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum StateLine {
    /// First line: what is uploaded where.
    Start {
        /// `s3://bucket/prefix`.
        location: String,
        /// The local file.
        file: String,
        /// Its size.
        size: u64,
        /// Its modification time (ns since the epoch; an i64, as serde's
        /// tagged enums cannot carry an i128).
        mtime_ns: i64,
        /// Part size.
        part_size: u64,
        /// Parts per object.
        max_parts: u32,
    },
    /// A multipart upload was created for object `obj`.
    Object {
        /// Object index.
        obj: usize,
        /// The upload id.
        upload_id: String,
    },
    /// A part was stored.
    Part {
        /// Object index.
        obj: usize,
        /// Part number (1-based).
        n: u32,
        /// Size.
        size: u64,
        /// SHA-256, hex.
        sha256: String,
        /// The store's ETag.
        etag: String,
    },
}

/// What a state file says, folded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct State {
    /// The `Start` line.
    pub start: Option<StateLine>,
    /// Upload id per object.
    pub uploads: BTreeMap<usize, String>,
    /// Stored parts: (object, number) → (size, sha256, etag).
    pub parts: BTreeMap<(usize, u32), (u64, [u8; 32], String)>,
}

impl State {
    /// Fold a state file's text. Stops at the first line that does not parse
    /// (a torn write at a crash); lines after it are ignored.
    #[must_use]
    pub fn parse(text: &str) -> Self {
        let mut s = State::default();
        for line in text.lines() {
            let Ok(l) = serde_json::from_str::<StateLine>(line) else {
                break;
            };
            match l {
                StateLine::Start { .. } => {
                    if s.start.is_some() {
                        break;
                    }
                    s.start = Some(l);
                }
                StateLine::Object { obj, upload_id } => {
                    s.uploads.insert(obj, upload_id);
                }
                StateLine::Part {
                    obj,
                    n,
                    size,
                    sha256,
                    etag,
                } => {
                    let mut d = [0u8; 32];
                    if hex::decode_to_slice(&sha256, &mut d).is_err() {
                        break;
                    }
                    s.parts.insert((obj, n), (size, d, etag));
                }
            }
        }
        s
    }
}

/// Encode one state line with its newline.
#[must_use]
pub fn state_line(l: &StateLine) -> Vec<u8> {
    let mut v = serde_json::to_vec(l).unwrap_or_default();
    v.push(b'\n');
    v
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn commit() -> Commit {
        Commit {
            format: FORMAT.into(),
            version: VERSION,
            tool: "hotbak test".into(),
            created: "2026-12-05T00:00:00Z".into(),
            source: "backup".into(),
            stream_bytes: 30 << 20,
            part_size: 16 << 20,
            objects: vec![DataObject {
                name: data_name(0),
                size: 30 << 20,
                parts: 2,
                sha256_of_parts: hex::encode(composite(&[[1; 32], [2; 32]])),
            }],
            checkpoints: key_values("backup_type = full-backuped\nto_lsn = 42\n"),
            files: Some(3),
            reused: vec![],
        }
    }

    #[test]
    fn commit_round_trips_and_checks() {
        let c = commit();
        assert_eq!(Commit::parse(&c.to_bytes()).unwrap(), c);
        assert_eq!(c.checkpoints["to_lsn"], "42");
        let mut bad = c.clone();
        bad.stream_bytes += 1;
        assert!(Commit::parse(&bad.to_bytes())
            .unwrap_err()
            .contains("stream_bytes"));
        let mut bad = c.clone();
        bad.objects[0].parts = 3;
        assert!(Commit::parse(&bad.to_bytes())
            .unwrap_err()
            .contains("parts"));
        let mut bad = c.clone();
        bad.objects[0].name = "../x".into();
        assert!(Commit::parse(&bad.to_bytes()).is_err());
        let mut bad = c.clone();
        bad.version = 3;
        assert!(Commit::parse(&bad.to_bytes()).is_err());
        assert!(Commit::parse(b"{").is_err());
        // Version 1 (no reused ranges) is still read.
        let mut v1 = c.clone();
        v1.version = 1;
        assert_eq!(Commit::parse(&v1.to_bytes()).unwrap(), v1);
        // Version 2: an attempt's segments and reused ranges.
        let a = "20261205T000000Z-0000beef";
        let mut v2 = c;
        v2.objects[0].name = seg_name(a, 0);
        v2.reused = vec![Reused {
            at: 5,
            object: seg_name("20261204T000000Z-00000001", 3),
            offset: 7,
            len: 100,
        }];
        let back = Commit::parse(&v2.to_bytes()).unwrap();
        assert_eq!(back.total_bytes(), (30 << 20) + 100);
        let mut bad = v2.clone();
        bad.version = 1;
        assert!(Commit::parse(&bad.to_bytes()).is_err());
        let mut bad = v2.clone();
        bad.reused[0].at = (30 << 20) + 1;
        assert!(Commit::parse(&bad.to_bytes()).is_err());
        let mut bad = v2.clone();
        bad.reused[0].object = "stream.000000.xbs".into();
        assert!(Commit::parse(&bad.to_bytes()).is_err());
        let mut bad = v2;
        bad.objects[0].name = seg_name(a, 1);
        assert!(Commit::parse(&bad.to_bytes()).is_err());
    }

    #[test]
    fn attempt_names_round_trip() {
        let a = "20261205T093000Z-0a1b2c3d";
        assert_eq!(segment_of(&seg_name(a, 12)), Some((a, 12)));
        assert_eq!(index_of(&idx_name(a, 12)), Some((a, 12)));
        assert_eq!(segment_of(&idx_name(a, 12)), None);
        assert_eq!(segment_of("attempt-../seg.000001.xbs"), None);
        assert_eq!(segment_of("attempt-a/b/seg.000001.xbs"), None);
        assert!(!attempt_ok(""));
        assert!(!attempt_ok("a/b"));
    }

    #[test]
    fn names_round_trip() {
        assert_eq!(data_name(7), "stream.000007.xbs");
        assert_eq!(data_index("stream.000007.xbs"), Some(7));
        assert_eq!(data_index("stream.7.xbs"), None);
        assert_eq!(data_index(COMMIT), None);
    }

    #[test]
    fn part_sizes_cover_the_expected_size() {
        assert_eq!(part_size(None, None, MAX_PARTS), DEFAULT_PART);
        assert_eq!(part_size(Some(1 << 30), None, MAX_PARTS), DEFAULT_PART);
        assert_eq!(part_size(None, Some(1), MAX_PARTS), MIN_PART);
        assert_eq!(part_size(None, Some(u64::MAX), MAX_PARTS), MAX_PART);
        let tb = 1u64 << 40;
        let p = part_size(Some(tb), None, MAX_PARTS);
        assert!(p * u64::from(MAX_PARTS) >= tb + tb / 10);
        assert_eq!(p % (1 << 20), 0);
    }

    #[test]
    fn state_folds_and_stops_at_a_torn_line() {
        let mut text = Vec::new();
        text.extend(state_line(&StateLine::Start {
            location: "s3://b/p".into(),
            file: "f".into(),
            size: 10,
            mtime_ns: 5,
            part_size: MIN_PART,
            max_parts: 3,
        }));
        text.extend(state_line(&StateLine::Object {
            obj: 0,
            upload_id: "u".into(),
        }));
        text.extend(state_line(&StateLine::Part {
            obj: 0,
            n: 1,
            size: 10,
            sha256: hex::encode([9u8; 32]),
            etag: "\"e\"".into(),
        }));
        text.extend_from_slice(b"{\"t\":\"part\",\"obj\":0,\"n\":2,\"si");
        let s = State::parse(std::str::from_utf8(&text).unwrap());
        assert!(s.start.is_some());
        assert_eq!(s.uploads[&0], "u");
        assert_eq!(s.parts.len(), 1);
        assert_eq!(s.parts[&(0, 1)].1, [9u8; 32]);
    }

    proptest! {
        #[test]
        fn commit_parse_never_panics(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = Commit::parse(&data);
            let _ = State::parse(&String::from_utf8_lossy(&data));
        }

        #[test]
        fn chosen_parts_always_fit(e in 0u64..(1u64 << 44)) {
            let p = part_size(Some(e), None, MAX_PARTS);
            prop_assert!((DEFAULT_PART..=MAX_PART).contains(&p));
            if e < MAX_PART * u64::from(MAX_PARTS) * 10 / 11 {
                prop_assert!(p * u64::from(MAX_PARTS) >= e);
            }
        }
    }
}
