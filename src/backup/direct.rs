//! `O_DIRECT` reads, shared by the data-file copy and the redo follower:
//! opening with a buffered fallback, and aligned reads into an aligned
//! buffer. Pure std I/O (the flag comes from libc); no unsafe code.

use std::fs::File;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

use bytes::Bytes;

/// Alignment of `O_DIRECT` buffers, offsets and lengths.
pub const ALIGN: usize = 4096;

/// Open `path` for reading with `O_DIRECT`, or buffered where the file
/// system refuses the flag (`EINVAL`, e.g. tmpfs). Returns the file and
/// whether it is direct.
///
/// # Errors
/// Any other open error.
pub fn open(path: &Path) -> std::io::Result<(File, bool)> {
    match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
    {
        Ok(f) => Ok((f, true)),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok((File::open(path)?, false)),
        Err(e) => Err(e),
    }
}

/// Read up to `want` bytes at `off` (both multiples of [`ALIGN`]) from a
/// direct file into an aligned window of a zeroed buffer, returned as a
/// slice of it without a copy. Shorter only at the end of the file.
///
/// # Errors
/// Read errors (`EINTR` is retried).
pub fn read_aligned(f: &File, off: u64, want: usize) -> std::io::Result<Bytes> {
    let mut v = vec![0u8; want + ALIGN];
    let start = v.as_ptr().align_offset(ALIGN).min(ALIGN);
    let mut got = 0usize;
    while got < want {
        match f.read_at(&mut v[start + got..start + want], off + got as u64) {
            Ok(0) => break,
            Ok(n) => {
                got += n;
                // A short read that is not a multiple of the alignment is the end of file.
                if n % ALIGN != 0 {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Bytes::from(v).slice(start..start + got))
}
