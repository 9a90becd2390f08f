//! The stream's input: stdin, read without filling the page cache.
//!
//! When stdin is a regular file (`xbextract -x < backup.xbs`), what has
//! been read is dropped from the page cache every 64 MiB
//! ([`crate::sys::drop_cached`]): the stream is read once, and on a
//! stream larger than the free memory its pages would otherwise make the
//! extraction's own writes wait while the kernel reclaims them (the
//! restore drops its sources for the same reason). A pipe or a socket is
//! read as it is.

use std::fs::File;
use std::io::Seek;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};

/// Bytes read between two drops.
const DROP_EVERY: u64 = 64 << 20;

/// An async reader that drops what it has read of a regular file from the
/// page cache (see the module documentation).
pub struct DropBehind<R> {
    inner: R,
    /// The file behind `inner`, when it is a regular file.
    file: Option<File>,
    /// Offset of the first byte read and not yet dropped.
    from: u64,
    /// Bytes read since `from`.
    pending: u64,
}

impl DropBehind<tokio::io::Stdin> {
    /// Stdin.
    #[must_use]
    pub fn stdin() -> Self {
        use std::os::fd::AsFd;
        let file = std::io::stdin()
            .as_fd()
            .try_clone_to_owned()
            .ok()
            .map(File::from)
            .filter(|f| f.metadata().is_ok_and(|m| m.is_file()));
        Self::new(tokio::io::stdin(), file)
    }
}

impl<R> DropBehind<R> {
    /// `inner`, which reads `file` (if given) from its current offset on.
    pub fn new(inner: R, file: Option<File>) -> Self {
        let from = file
            .as_ref()
            .and_then(|mut f| f.stream_position().ok())
            .unwrap_or(0);
        Self {
            inner,
            file,
            from,
            pending: 0,
        }
    }

    /// Account for `n` bytes read; drop them once there are enough.
    fn read(&mut self, n: u64) {
        let Some(file) = &self.file else {
            return;
        };
        self.pending += n;
        if self.pending >= DROP_EVERY {
            let _ = crate::sys::drop_cached(file, self.from, self.pending);
            self.from += self.pending;
            self.pending = 0;
        }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for DropBehind<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) {
            let n = (buf.filled().len() - before) as u64;
            self.read(n);
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use tokio::io::AsyncReadExt;

    /// Everything is read, in order, whether the input is a file that is
    /// dropped behind the reader or not, and the drops advance over what
    /// was read.
    #[tokio::test]
    async fn reads_everything_and_drops_what_it_read() {
        let mut tmp = tempfile::tempfile().expect("tempfile");
        let data: Vec<u8> = (0..(DROP_EVERY as usize * 2 + 12345))
            .map(|i| (i % 251) as u8)
            .collect();
        tmp.write_all(&data).expect("write");
        tmp.rewind().expect("rewind");
        let inner = tokio::fs::File::from_std(tmp.try_clone().expect("clone"));
        let mut r = DropBehind::new(inner, Some(tmp));
        let mut out = Vec::new();
        r.read_to_end(&mut out).await.expect("read");
        assert!(out == data, "the content changed");
        assert_eq!(r.from + r.pending, data.len() as u64);
        assert_eq!(r.from, 2 * DROP_EVERY, "two drops of 64 MiB");

        let mut r = DropBehind::new(&data[..], None);
        let mut out = Vec::new();
        r.read_to_end(&mut out).await.expect("read");
        assert!(out == data);
        assert_eq!(
            (r.from, r.pending),
            (0, 0),
            "nothing to drop without a file"
        );
    }
}
