//! Renaming the tablespace paths inside a backup's redo log, in place.
//!
//! The server logs a tablespace outside its datadir (`DATA DIRECTORY`) by
//! its absolute path: `FILE_MODIFY 5 /data2/inno/db/t.ibd`. Crash recovery
//! opens the file each `FILE_*` record names, so a `mariadbd` started on a
//! backup would apply the backup's redo to the *live* file at that path
//! (or fail where it does not exist) instead of the copy in the backup
//! (`db/t.ibd`). Before recovery, prepare rewrites such names to a
//! relative name of **the same length** that resolves inside the backup
//! (`/data2/inno/db/t.ibd` → `././././././db/t.ibd`): the record and mtr
//! lengths, and so every LSN, stay as they are; only the mtr's CRC-32C is
//! computed again. See `format-spec/redo-log.md`, "Paths outside the datadir".
//!
//! Pure: bytes in, bytes out.

use super::redo::{self, file_records, FileOp, LogGeometry, MtrParse, MTR_TRAILER, START_OFFSET};
use super::{Error, Lsn};

/// The backup-relative name of a tablespace path as the server logs it:
/// `./db/t.ibd` (any number of leading `./`) → `db/t.ibd`; an absolute
/// path (a `DATA DIRECTORY` tablespace, stored in the backup under its
/// database directory) → its last two components. `None` for a name
/// without a directory.
#[must_use]
pub fn backup_name(path: &str) -> Option<String> {
    if path.starts_with("./") {
        let mut r = path;
        while let Some(rest) = r.strip_prefix("./") {
            r = rest.trim_start_matches('/');
        }
        return Some(r.to_owned());
    }
    let mut parts = path.rsplit('/');
    match (parts.next(), parts.next()) {
        (Some(f), Some(d)) if !f.is_empty() && !d.is_empty() => Some(format!("{d}/{f}")),
        _ => None,
    }
}

/// A relative path of exactly `len` bytes that names `rel` (a
/// `/`-separated path relative to the datadir): `rel` behind as many `./`
/// as it takes, with one doubled `/` for an odd difference. `None` when
/// `len` is too short (less than `rel` plus `./`, or exactly one more).
#[must_use]
pub fn same_length_relative(rel: &str, len: usize) -> Option<String> {
    let n = len.checked_sub(rel.len())?;
    if n < 2 {
        return None;
    }
    let mut s = String::with_capacity(len);
    if n % 2 == 0 {
        for _ in 0..n / 2 {
            s.push_str("./");
        }
    } else {
        for _ in 0..(n - 3) / 2 {
            s.push_str("./");
        }
        s.push_str(".//");
    }
    s.push_str(rel);
    debug_assert_eq!(s.len(), len);
    Some(s)
}

/// Rewrite the names of the `FILE_*` records of one complete mtr (records,
/// termination byte, CRC) for which `map` returns a new name, and recompute
/// the mtr's CRC when anything changed. Returns the number of names
/// rewritten.
///
/// # Errors
/// [`Error::InvalidArgument`] when `map` returns a name of another length
/// (lengths are fixed: LSNs must not move), or the mtr's `FILE_*` records
/// are malformed.
pub fn relocate_mtr(
    mtr: &mut [u8],
    map: &mut dyn FnMut(&[u8]) -> Option<Vec<u8>>,
) -> Result<usize, Error> {
    if mtr.len() <= MTR_TRAILER {
        return Err(Error::InvalidArgument(format!(
            "mtr of {} bytes has no records",
            mtr.len()
        )));
    }
    let base = mtr.as_ptr() as usize;
    let mut edits: Vec<(usize, Vec<u8>)> = Vec::new();
    for op in file_records(mtr) {
        let names: Vec<&[u8]> = match op? {
            FileOp::Create { path, .. }
            | FileOp::Delete { path, .. }
            | FileOp::Modify { path, .. } => vec![path],
            FileOp::Rename { from, to, .. } => vec![from, to],
            FileOp::Checkpoint { .. } => Vec::new(),
        };
        for name in names {
            if let Some(new) = map(name) {
                if new.len() != name.len() {
                    return Err(Error::InvalidArgument(format!(
                        "new name {:?} for {:?} changes the record's length",
                        String::from_utf8_lossy(&new),
                        String::from_utf8_lossy(name)
                    )));
                }
                if new != name {
                    edits.push((name.as_ptr() as usize - base, new));
                }
            }
        }
    }
    if edits.is_empty() {
        return Ok(0);
    }
    for (off, new) in &edits {
        mtr[*off..*off + new.len()].copy_from_slice(new);
    }
    let body = mtr.len() - MTR_TRAILER;
    let crc = crc32c::crc32c(&mtr[..body]);
    mtr[body + 1..].copy_from_slice(&crc.to_be_bytes());
    Ok(edits.len())
}

/// What [`relocate_mtrs`] did with one buffer of log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Walk {
    /// Bytes of complete mtrs walked from the start of the buffer.
    pub consumed: usize,
    /// Complete mtrs walked.
    pub mtrs: usize,
    /// Names rewritten.
    pub names: usize,
    /// The byte ranges changed (offset, length), to write back.
    pub changed: Vec<(usize, usize)>,
    /// The log ended inside this buffer (an invalid or no mtr follows);
    /// otherwise the buffer ended inside an mtr or exactly after one.
    pub end_of_log: bool,
}

/// Walk the complete mtrs at the start of `buf` (at LSN `lsn` of a log of
/// geometry `geo`) and rewrite `FILE_*` names with [`relocate_mtr`].
///
/// # Errors
/// A name of another length from `map`, malformed `FILE_*` records,
/// an LSN before the log's first.
pub fn relocate_mtrs(
    geo: &LogGeometry,
    lsn: Lsn,
    buf: &mut [u8],
    map: &mut dyn FnMut(&[u8]) -> Option<Vec<u8>>,
) -> Result<Walk, Error> {
    if geo.encrypted() {
        return Err(Error::InvalidArgument(
            "the names in an encrypted redo log cannot be rewritten without its key".into(),
        ));
    }
    let mut w = Walk::default();
    let mut cur = lsn;
    loop {
        match redo::parse_mtr(geo, cur, &buf[w.consumed..])? {
            MtrParse::Complete(span) => {
                let at = w.consumed;
                let n = relocate_mtr(&mut buf[at..at + span.len], map)?;
                if n > 0 {
                    w.changed.push((at, span.len));
                    w.names += n;
                }
                w.mtrs += 1;
                w.consumed += span.len;
                cur = Lsn(cur.0 + span.len as u64);
            }
            MtrParse::NeedMore => return Ok(w),
            MtrParse::End(_) => {
                w.end_of_log = true;
                return Ok(w);
            }
        }
    }
}

/// [`relocate_mtrs`] over a whole backup `ib_logfile0` held in memory
/// (header, checkpoint blocks, then the linear log from the header's first
/// LSN). Returns the names rewritten.
///
/// # Errors
/// Header errors, and those of [`relocate_mtrs`].
pub fn relocate_log(
    log: &mut [u8],
    map: &mut dyn FnMut(&[u8]) -> Option<Vec<u8>>,
) -> Result<usize, Error> {
    let info = redo::parse_log_prefix(log)?;
    let geo = LogGeometry::for_header(&info.header, log.len() as u64)?;
    let start = usize::try_from(START_OFFSET).unwrap_or(usize::MAX);
    let Some(body) = log.get_mut(start..) else {
        return Ok(0);
    };
    Ok(relocate_mtrs(&geo, info.header.first_lsn, body, map)?.names)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::innodb::redo::encode_varint;

    #[test]
    fn backup_names() {
        assert_eq!(backup_name("./db/t.ibd").as_deref(), Some("db/t.ibd"));
        assert_eq!(backup_name("././/db/t.ibd").as_deref(), Some("db/t.ibd"));
        assert_eq!(
            backup_name("/data2/inno/db/t.ibd").as_deref(),
            Some("db/t.ibd")
        );
        assert_eq!(backup_name("t.ibd"), None);
        assert_eq!(backup_name("/t.ibd"), None);
    }

    #[test]
    fn same_length_names() {
        assert_eq!(
            same_length_relative("db/t.ibd", "/data2/inno/db/t.ibd".len()).as_deref(),
            Some("././././././db/t.ibd")
        );
        assert_eq!(
            same_length_relative("db/t.ibd", "/x/db/t.ibd".len()).as_deref(),
            Some(".//db/t.ibd")
        );
        assert_eq!(
            same_length_relative("db/t.ibd", "/xy/db/t.ibd".len()).as_deref(),
            Some("././db/t.ibd")
        );
        assert_eq!(same_length_relative("db/t.ibd", "/db/t.ibd".len()), None);
        assert_eq!(same_length_relative("db/t.ibd", 3), None);
        for extra in 2..40 {
            let s = same_length_relative("d/t.ibd", 7 + extra).expect("long enough");
            assert_eq!(s.len(), 7 + extra);
            assert!(s.ends_with("/d/t.ibd") && !s.starts_with('/'), "{s}");
        }
    }

    /// One FILE_* record (type nibble `kind`) for `space`, page 0, `name`.
    fn file_rec(kind: u8, space: u32, name: &[u8]) -> Vec<u8> {
        let (sv, sn) = encode_varint(space);
        let mut body = sv[..sn].to_vec();
        body.push(0); // page 0
        body.extend_from_slice(name);
        let mut r = Vec::new();
        if body.len() < 16 {
            r.push(kind | u8::try_from(body.len()).expect("short"));
        } else {
            r.push(kind);
            let (lv, ln) = encode_varint(u32::try_from(body.len() - 15 + 1).expect("len"));
            // The length varint counts itself (see `file_records`).
            let (lv, ln) = if ln == 1 {
                (lv, ln)
            } else {
                encode_varint(u32::try_from(body.len() - 15 + ln).expect("len"))
            };
            r.extend_from_slice(&lv[..ln]);
        }
        r.extend_from_slice(&body);
        r
    }

    fn mtr(records: &[u8]) -> Vec<u8> {
        let mut m = records.to_vec();
        m.push(1);
        m.extend_from_slice(&crc32c::crc32c(records).to_be_bytes());
        m
    }

    #[test]
    fn rewrites_names_and_crc_keeps_length() {
        const FILE_MODIFY: u8 = 0xB0;
        const FILE_RENAME: u8 = 0xA0;
        let mut recs = file_rec(FILE_MODIFY, 5, b"/data2/inno/db/t.ibd");
        recs.extend(file_rec(FILE_MODIFY, 6, b"./db/local.ibd"));
        recs.extend(file_rec(
            FILE_RENAME,
            7,
            b"/data2/inno/db/a.ibd\0/data2/inno/db/b.ibd",
        ));
        let mut m = mtr(&recs);
        let len = m.len();
        let n = relocate_mtr(&mut m, &mut |name: &[u8]| {
            let s = std::str::from_utf8(name).ok()?;
            let rel = s.strip_prefix("/data2/inno/")?;
            same_length_relative(rel, s.len()).map(String::into_bytes)
        })
        .expect("relocates");
        assert_eq!(n, 3);
        assert_eq!(m.len(), len);
        let names: Vec<String> = file_records(&m)
            .map(|op| match op.expect("valid") {
                FileOp::Modify { path, .. } => String::from_utf8_lossy(path).into_owned(),
                FileOp::Rename { from, to, .. } => format!(
                    "{}>{}",
                    String::from_utf8_lossy(from),
                    String::from_utf8_lossy(to)
                ),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(
            names,
            [
                "././././././db/t.ibd",
                "./db/local.ibd",
                "././././././db/a.ibd>././././././db/b.ibd"
            ]
        );
        let body = m.len() - MTR_TRAILER;
        assert_eq!(
            u32::from_be_bytes(m[body + 1..].try_into().expect("4 bytes")),
            crc32c::crc32c(&m[..body]),
            "CRC recomputed"
        );
        // Nothing to do the second time (idempotent).
        let before = m.clone();
        let n = relocate_mtr(&mut m, &mut |name: &[u8]| {
            let s = std::str::from_utf8(name).ok()?;
            let rel = s.strip_prefix("/data2/inno/")?;
            same_length_relative(rel, s.len()).map(String::into_bytes)
        })
        .expect("relocates");
        assert_eq!(n, 0);
        assert_eq!(m, before);
    }

    #[test]
    fn refuses_a_name_of_another_length() {
        let mut m = mtr(&file_rec(0xB0, 5, b"/d/db/t.ibd"));
        let before = m.clone();
        let r = relocate_mtr(&mut m, &mut |_: &[u8]| Some(b"./db/t.ibd".to_vec()));
        assert!(r.is_err());
        assert_eq!(m, before, "nothing written on refusal");
    }
}
