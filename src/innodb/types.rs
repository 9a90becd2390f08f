//! Newtypes for the InnoDB quantities that are easy to mix up: log sequence
//! numbers, tablespace ids and page numbers.

use std::fmt;

/// A log sequence number: a byte position in the (infinite) redo stream.
///
/// In the 10.8+ format the LSN grows by exactly the number of log bytes
/// written, so differences of LSNs are byte counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lsn(pub u64);

impl Lsn {
    /// The raw value.
    #[must_use]
    pub const fn get(self) -> u64 {
        self.0
    }

    /// `self + bytes`, or `None` on overflow.
    #[must_use]
    pub const fn checked_add(self, bytes: u64) -> Option<Lsn> {
        match self.0.checked_add(bytes) {
            Some(v) => Some(Lsn(v)),
            None => None,
        }
    }

    /// `self - bytes`, or `None` on underflow.
    #[must_use]
    pub const fn checked_sub(self, bytes: u64) -> Option<Lsn> {
        match self.0.checked_sub(bytes) {
            Some(v) => Some(Lsn(v)),
            None => None,
        }
    }

    /// The number of bytes from `earlier` to `self`, or `None` if `earlier`
    /// is later than `self`.
    #[must_use]
    pub const fn bytes_since(self, earlier: Lsn) -> Option<u64> {
        self.0.checked_sub(earlier.0)
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl From<u64> for Lsn {
    fn from(v: u64) -> Self {
        Lsn(v)
    }
}

/// A tablespace id (`FSP_SPACE_ID`). 0 is the system tablespace.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SpaceId(pub u32);

impl SpaceId {
    /// The system tablespace (`ibdata*`).
    pub const SYSTEM: SpaceId = SpaceId(0);

    /// The raw value.
    #[must_use]
    pub const fn get(self) -> u32 {
        self.0
    }

    /// Whether this is the system tablespace.
    #[must_use]
    pub const fn is_system(self) -> bool {
        self.0 == 0
    }
}

impl fmt::Display for SpaceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl From<u32> for SpaceId {
    fn from(v: u32) -> Self {
        SpaceId(v)
    }
}

/// A page number inside a tablespace (`FIL_PAGE_OFFSET`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PageNo(pub u32);

impl PageNo {
    /// `FIL_NULL`: "no page" in prev/next links.
    pub const NULL: PageNo = PageNo(u32::MAX);

    /// The raw value.
    #[must_use]
    pub const fn get(self) -> u32 {
        self.0
    }

    /// `self + n`, or `None` on overflow.
    #[must_use]
    pub const fn checked_add(self, n: u32) -> Option<PageNo> {
        match self.0.checked_add(n) {
            Some(v) => Some(PageNo(v)),
            None => None,
        }
    }

    /// Byte offset of this page in a file of `page_size`-byte pages.
    #[must_use]
    pub const fn byte_offset(self, page_size: u32) -> u64 {
        self.0 as u64 * page_size as u64
    }
}

impl fmt::Display for PageNo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl From<u32> for PageNo {
    fn from(v: u32) -> Self {
        PageNo(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsn_arith() {
        assert_eq!(Lsn(5).checked_add(3), Some(Lsn(8)));
        assert_eq!(Lsn(u64::MAX).checked_add(1), None);
        assert_eq!(Lsn(5).checked_sub(6), None);
        assert_eq!(Lsn(9).bytes_since(Lsn(4)), Some(5));
        assert_eq!(Lsn(4).bytes_since(Lsn(9)), None);
        assert!(Lsn(1) < Lsn(2));
        assert_eq!(Lsn(42).to_string(), "42");
    }

    #[test]
    fn page_no() {
        assert_eq!(PageNo(3).byte_offset(16384), 49152);
        assert_eq!(PageNo(u32::MAX).checked_add(1), None);
        assert_eq!(SpaceId(7).to_string(), "7");
        assert!(SpaceId::SYSTEM.is_system());
    }
}
