//! Incremental page deltas: mariabackup's `<file>.delta` and `<file>.meta`
//! (format-spec/metadata.md "Incremental deltas"). Pure: bytes in, bytes out.
//!
//! A `.delta` is a sequence of clusters. With P the physical page size, a
//! cluster is a header page (magic `xtra` when more clusters follow, `XTRA`
//! for the last one, then one big-endian page number per page, ended by
//! `FF FF FF FF` when the cluster is not full, the rest zero) followed by
//! the pages in the listed order. A full cluster holds P/4 − 1 pages. A
//! delta with no page is one header page `XTRA` + `FFFFFFFF`.

use crate::error::{Classify, ErrorClass};

/// Magic of a cluster that more clusters follow.
pub const MAGIC_MORE: &[u8; 4] = b"xtra";
/// Magic of the last cluster.
pub const MAGIC_LAST: &[u8; 4] = b"XTRA";

/// Errors of the delta format.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// A page of the wrong size was given to the writer.
    #[error("page of {got} bytes in a delta of {page_size}-byte pages")]
    PageSize {
        /// Bytes given.
        got: usize,
        /// The delta's page size.
        page_size: usize,
    },
    /// An unusable page size.
    #[error("page size {0} is not a power of two between 1 KiB and 64 KiB")]
    BadPageSize(usize),
    /// A malformed `.meta` or `.delta`.
    #[error("{0}")]
    Corrupt(String),
}

impl Classify for Error {
    fn class(&self) -> ErrorClass {
        // A bad page size or page comes from a .meta or page 0 read from disk.
        ErrorClass::Corrupt
    }
}

/// The `.meta` file: page size, compressed page size (0 if not
/// ROW_FORMAT=COMPRESSED), tablespace id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Meta {
    /// Physical page size.
    pub page_size: u32,
    /// Compressed page size, 0 when the tablespace is not compressed.
    pub zip_size: u32,
    /// Tablespace id.
    pub space_id: u32,
}

impl Meta {
    /// The text, byte for byte as mariabackup writes it (note the space
    /// before the second newline).
    #[must_use]
    pub fn render(&self) -> String {
        format!(
            "page_size = {}\nzip_size = {} \nspace_id = {}\n",
            self.page_size, self.zip_size, self.space_id
        )
    }

    /// Parse a `.meta`.
    ///
    /// # Errors
    /// [`Error::Corrupt`] naming the missing or bad key.
    pub fn parse(text: &str) -> Result<Meta, Error> {
        let get = |k: &str| -> Result<u32, Error> {
            text.lines()
                .filter_map(|l| l.split_once('='))
                .find(|(key, _)| key.trim() == k)
                .ok_or_else(|| Error::Corrupt(format!("no {k} in the .meta")))?
                .1
                .trim()
                .parse()
                .map_err(|e| Error::Corrupt(format!("{k}: {e}")))
        };
        Ok(Meta {
            page_size: get("page_size")?,
            zip_size: get("zip_size")?,
            space_id: get("space_id")?,
        })
    }
}

/// Builds a `.delta` from pages given in order, a cluster at a time (so
/// memory stays at one cluster whatever the file's size).
#[derive(Debug)]
pub struct DeltaWriter {
    page_size: usize,
    numbers: Vec<u32>,
    pages: Vec<u8>,
    pages_total: u64,
}

impl DeltaWriter {
    /// A writer for pages of `page_size` bytes.
    ///
    /// # Errors
    /// [`Error::BadPageSize`].
    pub fn new(page_size: usize) -> Result<DeltaWriter, Error> {
        if !page_size.is_power_of_two() || !(1024..=65536).contains(&page_size) {
            return Err(Error::BadPageSize(page_size));
        }
        Ok(DeltaWriter {
            page_size,
            numbers: Vec::new(),
            pages: Vec::new(),
            pages_total: 0,
        })
    }

    /// Pages per full cluster.
    #[must_use]
    pub fn cluster_pages(&self) -> usize {
        self.page_size / 4 - 1
    }

    /// Pages written so far.
    #[must_use]
    pub fn pages(&self) -> u64 {
        self.pages_total
    }

    /// Add one page; returns a whole cluster (`xtra`) when one is full.
    ///
    /// # Errors
    /// [`Error::PageSize`] when `page` is not one page.
    pub fn push(&mut self, page_no: u32, page: &[u8]) -> Result<Option<Vec<u8>>, Error> {
        if page.len() != self.page_size {
            return Err(Error::PageSize {
                got: page.len(),
                page_size: self.page_size,
            });
        }
        self.numbers.push(page_no);
        self.pages.extend_from_slice(page);
        self.pages_total += 1;
        if self.numbers.len() == self.cluster_pages() {
            return Ok(Some(self.cluster(MAGIC_MORE)));
        }
        Ok(None)
    }

    /// The last cluster (`XTRA`), possibly with no page.
    #[must_use]
    pub fn finish(mut self) -> Vec<u8> {
        self.cluster(MAGIC_LAST)
    }

    fn cluster(&mut self, magic: &[u8; 4]) -> Vec<u8> {
        let mut out = vec![0u8; self.page_size];
        out[..4].copy_from_slice(magic);
        for (i, n) in self.numbers.iter().enumerate() {
            out[4 + i * 4..8 + i * 4].copy_from_slice(&n.to_be_bytes());
        }
        if self.numbers.len() < self.cluster_pages() {
            let at = 4 + self.numbers.len() * 4;
            out[at..at + 4].copy_from_slice(&[0xFF; 4]);
        }
        out.append(&mut self.pages);
        self.numbers.clear();
        out
    }
}

/// Read a whole `.delta` held in memory: (page number, page) in order.
///
/// # Errors
/// [`Error::Corrupt`] naming the cluster and what is wrong.
pub fn parse(data: &[u8], page_size: usize) -> Result<Vec<(u32, &[u8])>, Error> {
    if !page_size.is_power_of_two() || !(1024..=65536).contains(&page_size) {
        return Err(Error::BadPageSize(page_size));
    }
    let mut out = Vec::new();
    let mut at = 0usize;
    for cluster in 0usize.. {
        let head = data.get(at..at + page_size).ok_or_else(|| {
            Error::Corrupt(format!(
                "cluster {cluster} at offset {at}: header page cut short ({} bytes left)",
                data.len().saturating_sub(at)
            ))
        })?;
        let last = match &head[..4] {
            m if m == MAGIC_LAST => true,
            m if m == MAGIC_MORE => false,
            m => {
                return Err(Error::Corrupt(format!(
                    "cluster {cluster} at offset {at}: magic {m:02x?} is neither xtra nor XTRA"
                )))
            }
        };
        let mut numbers = Vec::new();
        for slot in 1..page_size / 4 {
            let n = u32::from_be_bytes([
                head[slot * 4],
                head[slot * 4 + 1],
                head[slot * 4 + 2],
                head[slot * 4 + 3],
            ]);
            if n == u32::MAX {
                break;
            }
            numbers.push(n);
        }
        at += page_size;
        for n in numbers {
            let page = data.get(at..at + page_size).ok_or_else(|| {
                Error::Corrupt(format!(
                    "cluster {cluster}: page {n} at offset {at} cut short"
                ))
            })?;
            out.push((n, page));
            at += page_size;
        }
        if last {
            if at != data.len() {
                return Err(Error::Corrupt(format!(
                    "{} bytes after the last cluster (offset {at})",
                    data.len() - at
                )));
            }
            break;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(ps: usize, n: u32) -> Vec<u8> {
        let mut p = vec![(n % 251) as u8; ps];
        p[4..8].copy_from_slice(&n.to_be_bytes());
        p
    }

    #[test]
    fn meta_is_byte_for_byte_mariabackups() {
        let m = Meta {
            page_size: 16384,
            zip_size: 0,
            space_id: 5,
        };
        assert_eq!(
            m.render(),
            "page_size = 16384\nzip_size = 0 \nspace_id = 5\n"
        );
        assert_eq!(Meta::parse(&m.render()), Ok(m));
        assert!(Meta::parse("page_size = 16384\n").is_err());
    }

    #[test]
    fn an_empty_delta_is_one_header_page() {
        let w = DeltaWriter::new(16384).expect("size");
        let d = w.finish();
        assert_eq!(d.len(), 16384);
        assert_eq!(&d[..8], b"XTRA\xff\xff\xff\xff");
        assert!(d[8..].iter().all(|&b| b == 0));
        assert_eq!(parse(&d, 16384).expect("parses"), vec![]);
    }

    /// Clusters fill at P/4 − 1 pages; a delta of exactly that many pages
    /// ends with an empty `XTRA` cluster; pages come back in order.
    #[test]
    fn clusters_split_and_round_trip() {
        for n in [1usize, 255, 256, 600] {
            let ps = 1024;
            let mut w = DeltaWriter::new(ps).expect("size");
            let mut out = Vec::new();
            for i in 0..n {
                if let Some(c) = w.push(i as u32 * 3, &page(ps, i as u32)).expect("push") {
                    assert_eq!(&c[..4], MAGIC_MORE);
                    assert_eq!(c.len(), (255 + 1) * ps, "a full cluster");
                    out.extend(c);
                }
            }
            assert_eq!(w.pages(), n as u64);
            out.extend(w.finish());
            let back = parse(&out, ps).expect("parses");
            assert_eq!(back.len(), n);
            for (i, (no, p)) in back.iter().enumerate() {
                assert_eq!(*no, i as u32 * 3);
                assert_eq!(*p, page(ps, i as u32).as_slice());
            }
        }
    }

    #[test]
    fn damage_is_named() {
        let mut w = DeltaWriter::new(1024).expect("size");
        w.push(7, &page(1024, 7)).expect("push");
        let d = w.finish();
        let e = parse(&d[..1500], 1024).expect_err("cut");
        assert!(
            e.to_string().contains("page 7 at offset 1024 cut short"),
            "{e}"
        );
        let mut bad = d.clone();
        bad[0] = b'q';
        assert!(parse(&bad, 1024)
            .expect_err("magic")
            .to_string()
            .contains("neither xtra nor XTRA"));
        let mut long = d;
        long.push(0);
        assert!(parse(&long, 1024).is_err());
        assert!(DeltaWriter::new(1000).is_err());
        assert!(matches!(
            DeltaWriter::new(1024).expect("size").push(0, &[0; 10]),
            Err(Error::PageSize { .. })
        ));
    }
}
