//! The `.cfg` file `FLUSH TABLES … FOR EXPORT` writes beside a table's
//! `.ibd` and `ALTER TABLE … IMPORT TABLESPACE` checks: the table's
//! columns and indexes as InnoDB's dictionary has them (layout in
//! `format-spec/partial.md`). Pure: bytes in, a [`Cfg`] out, every length
//! checked against a limit before anything is allocated.

use crate::error::{Classify, ErrorClass};

/// The only version MariaDB 10.11 writes (`IB_EXPORT_CFG_VERSION_V1`).
pub const VERSION_V1: u32 = 1;
/// The longest name (hostname, table, column, index) accepted.
pub const MAX_NAME: u32 = 4096;
/// The most columns (InnoDB's limit of 1017 user columns plus the system ones, rounded up).
pub const MAX_COLS: u32 = 1100;
/// The most indexes.
pub const MAX_INDEXES: u32 = 1100;
/// The most fields in one index.
pub const MAX_FIELDS: u32 = 1100;

/// A `.cfg` that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The file ends inside a field.
    #[error(".cfg truncated at offset {offset}: {what} needs {need} more bytes")]
    Truncated {
        /// Where the field starts.
        offset: usize,
        /// The field.
        what: &'static str,
        /// Bytes needed.
        need: usize,
    },
    /// A value outside what the server writes.
    #[error(".cfg corrupt at offset {offset}: {reason}")]
    Corrupt {
        /// Where the field starts.
        offset: usize,
        /// Why.
        reason: String,
    },
}

impl Classify for Error {
    fn class(&self) -> ErrorClass {
        match self {
            Error::Truncated { .. } => ErrorClass::Truncated,
            Error::Corrupt { .. } => ErrorClass::Corrupt,
        }
    }
}

/// One column (`dict_col_t`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Column {
    /// Name.
    pub name: String,
    /// `prtype` (precise type: flags, charset).
    pub prtype: u32,
    /// `mtype` (main type).
    pub mtype: u32,
    /// `len`.
    pub len: u32,
    /// `mbmaxlen * 5 + mbminlen`.
    pub mbminmaxlen: u32,
    /// `ind` (position).
    pub ind: u32,
    /// `ord_part`.
    pub ord_part: u32,
    /// `max_prefix`.
    pub max_prefix: u32,
}

/// One field of an index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Field {
    /// Column name.
    pub name: String,
    /// Prefix length (0: whole column).
    pub prefix_len: u32,
    /// Fixed length, with bit 31 set for a descending field.
    pub fixed_len: u32,
}

/// One index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Index {
    /// Name (`PRIMARY`, `GEN_CLUST_INDEX`, ...).
    pub name: String,
    /// Index id.
    pub id: u64,
    /// Tablespace id.
    pub space: u32,
    /// Root page.
    pub page: u32,
    /// Type flags.
    pub kind: u32,
    /// `trx_id_offset`.
    pub trx_id_offset: u32,
    /// `n_user_defined_cols`.
    pub n_user_defined_cols: u32,
    /// `n_uniq`.
    pub n_uniq: u32,
    /// `n_nullable`.
    pub n_nullable: u32,
    /// Fields.
    pub fields: Vec<Field>,
}

/// A parsed `.cfg`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cfg {
    /// Format version.
    pub version: u32,
    /// The exporting server's hostname.
    pub hostname: String,
    /// InnoDB's table name, `db/t` (file-name encoded; `db/t#P#p0` for a partition).
    pub table_name: String,
    /// Next auto-increment value.
    pub autoinc: u64,
    /// Page size.
    pub page_size: u32,
    /// `dict_table_t::flags`.
    pub flags: u32,
    /// Columns, system columns included.
    pub columns: Vec<Column>,
    /// Indexes.
    pub indexes: Vec<Index>,
}

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&[u8], Error> {
        let rest = self.b.len() - self.pos;
        if rest < n {
            return Err(Error::Truncated {
                offset: self.pos,
                what,
                need: n - rest,
            });
        }
        let s = &self.b[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, Error> {
        let s = self.take(4, what)?;
        Ok(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, Error> {
        let hi = u64::from(self.u32(what)?);
        let lo = u64::from(self.u32(what)?);
        Ok(hi << 32 | lo)
    }

    fn bad(&self, at: usize, reason: String) -> Error {
        Error::Corrupt { offset: at, reason }
    }

    fn count(&mut self, what: &'static str, max: u32) -> Result<u32, Error> {
        let at = self.pos;
        let n = self.u32(what)?;
        if n > max {
            return Err(self.bad(at, format!("{what} {n} is over the limit {max}")));
        }
        Ok(n)
    }

    /// A length (NUL included) and the NUL-terminated text.
    fn name(&mut self, what: &'static str) -> Result<String, Error> {
        let at = self.pos;
        let len = self.u32(what)?;
        if len == 0 || len > MAX_NAME {
            return Err(self.bad(at, format!("{what} length {len} (1..={MAX_NAME})")));
        }
        let s = self.take(len as usize, what)?;
        let (text, nul) = s.split_at(s.len() - 1);
        if nul != [0] || text.contains(&0) {
            return Err(self.bad(at, format!("{what} is not one NUL-terminated string")));
        }
        Ok(String::from_utf8_lossy(text).into_owned())
    }
}

/// Parse a `.cfg`.
///
/// # Errors
/// [`Error::Truncated`] or [`Error::Corrupt`] with the offset.
pub fn parse(b: &[u8]) -> Result<Cfg, Error> {
    let mut r = Reader { b, pos: 0 };
    let version = r.u32("version")?;
    if version != VERSION_V1 {
        return Err(r.bad(0, format!("version {version}, expected {VERSION_V1}")));
    }
    let hostname = r.name("hostname")?;
    let table_name = r.name("table name")?;
    let autoinc = r.u64("autoinc")?;
    let at = r.pos;
    let page_size = r.u32("page size")?;
    if !(page_size.is_power_of_two() && (4096..=65536).contains(&page_size)) {
        return Err(r.bad(at, format!("page size {page_size}")));
    }
    let flags = r.u32("table flags")?;
    let n_cols = r.count("column count", MAX_COLS)?;
    let mut columns = Vec::with_capacity(n_cols as usize);
    for _ in 0..n_cols {
        let mut v = [0u32; 7];
        for x in &mut v {
            *x = r.u32("column")?;
        }
        let name = r.name("column name")?;
        columns.push(Column {
            name,
            prtype: v[0],
            mtype: v[1],
            len: v[2],
            mbminmaxlen: v[3],
            ind: v[4],
            ord_part: v[5],
            max_prefix: v[6],
        });
    }
    let n_indexes = r.count("index count", MAX_INDEXES)?;
    let mut indexes = Vec::with_capacity(n_indexes as usize);
    for _ in 0..n_indexes {
        let id = r.u64("index id")?;
        let mut v = [0u32; 8];
        for x in &mut v {
            *x = r.u32("index")?;
        }
        let at = r.pos - 4;
        let n_fields = v[7];
        if n_fields > MAX_FIELDS {
            return Err(r.bad(at, format!("index field count {n_fields}")));
        }
        let name = r.name("index name")?;
        let mut fields = Vec::with_capacity(n_fields as usize);
        for _ in 0..n_fields {
            let prefix_len = r.u32("index field")?;
            let fixed_len = r.u32("index field")?;
            let name = r.name("index field name")?;
            fields.push(Field {
                name,
                prefix_len,
                fixed_len,
            });
        }
        indexes.push(Index {
            name,
            id,
            space: v[0],
            page: v[1],
            kind: v[2],
            trx_id_offset: v[3],
            n_user_defined_cols: v[4],
            n_uniq: v[5],
            n_nullable: v[6],
            fields,
        });
    }
    if r.pos != b.len() {
        return Err(r.bad(
            r.pos,
            format!("{} bytes after the last index", b.len() - r.pos),
        ));
    }
    Ok(Cfg {
        version,
        hostname,
        table_name,
        autoinc,
        page_size,
        flags,
        columns,
        indexes,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod tests {
    use proptest::prelude::*;

    use super::*;

    fn name(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(&(s.len() as u32 + 1).to_be_bytes());
        out.extend_from_slice(s.as_bytes());
        out.push(0);
    }

    /// A `.cfg` as the server writes it, for a table `d/t (id INT PRIMARY KEY)`.
    pub(crate) fn sample() -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&1u32.to_be_bytes());
        name(&mut b, "host");
        name(&mut b, "d/t");
        b.extend_from_slice(&5u64.to_be_bytes());
        for v in [16384u32, 0x21, 4] {
            b.extend_from_slice(&v.to_be_bytes());
        }
        for (i, c) in ["id", "DB_ROW_ID", "DB_TRX_ID", "DB_ROLL_PTR"]
            .iter()
            .enumerate()
        {
            for v in [0x503u32, 6, 4, 0, i as u32, 1, 0] {
                b.extend_from_slice(&v.to_be_bytes());
            }
            name(&mut b, c);
        }
        b.extend_from_slice(&1u32.to_be_bytes());
        b.extend_from_slice(&77u64.to_be_bytes());
        for v in [9u32, 3, 3, 4, 1, 1, 0, 3] {
            b.extend_from_slice(&v.to_be_bytes());
        }
        name(&mut b, "PRIMARY");
        for f in ["id", "DB_TRX_ID", "DB_ROLL_PTR"] {
            b.extend_from_slice(&0u32.to_be_bytes());
            b.extend_from_slice(&4u32.to_be_bytes());
            name(&mut b, f);
        }
        b
    }

    #[test]
    fn parses_what_the_server_writes() {
        let c = parse(&sample()).unwrap();
        assert_eq!(c.table_name, "d/t");
        assert_eq!(c.hostname, "host");
        assert_eq!(c.autoinc, 5);
        assert_eq!(c.page_size, 16384);
        assert_eq!(c.columns.len(), 4);
        assert_eq!(c.columns[0].name, "id");
        assert_eq!(c.indexes.len(), 1);
        assert_eq!(c.indexes[0].name, "PRIMARY");
        assert_eq!(c.indexes[0].id, 77);
        assert_eq!(c.indexes[0].space, 9);
        assert_eq!(c.indexes[0].fields.len(), 3);
    }

    #[test]
    fn every_truncation_is_truncated_and_trailing_bytes_corrupt() {
        let b = sample();
        for n in 0..b.len() {
            let e = parse(&b[..n]).unwrap_err();
            assert_eq!(e.class(), ErrorClass::Truncated, "at {n}: {e}");
        }
        let mut more = b.clone();
        more.push(0);
        assert_eq!(parse(&more).unwrap_err().class(), ErrorClass::Corrupt);
        let mut v2 = b;
        v2[3] = 2;
        let e = parse(&v2).unwrap_err();
        assert!(e.to_string().contains("offset 0: version 2"), "{e}");
    }

    proptest! {
        /// Any byte changed or any bytes at all: an error or a value, never a panic,
        /// and no allocation beyond the limits.
        #[test]
        fn never_panics(pos in 0usize..200, byte in any::<u8>(), junk in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut b = sample();
            let i = pos % b.len();
            b[i] = byte;
            let _ = parse(&b);
            let _ = parse(&junk);
        }
    }
}
