//! A committed backup read back: the commit object first (no commit object,
//! no download), then the data objects by ranged GETs, `parallel` ranges in
//! flight, delivered in order through an `AsyncRead`.
//!
//! Ranges are the upload's parts, so each range's SHA-256 is one part
//! digest; an object's composite digest is checked against the commit
//! object when its last range arrived. A body cut mid-range is resumed from
//! the byte reached (a new ranged GET), up to the client's attempts.
//! Memory: (parallel + 2) ranges of at most one part each.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use tokio::sync::mpsc;

use super::layout::{self, Commit};
use super::{Client, Error, Location, Result};

/// Read and check the commit object of `loc`.
///
/// # Errors
/// [`Error::NotCommitted`] when there is none (naming what the prefix holds);
/// [`Error::Corrupt`] for a bad one; store errors.
pub async fn commit(client: &Client, loc: &Location) -> Result<Commit> {
    let key = loc.key(layout::COMMIT);
    match client.get_small(&key).await {
        Ok(b) => Commit::parse(&b).map_err(|reason| Error::Corrupt { key, reason }),
        Err(Error::NotFound { .. }) => {
            let listed = client.list(&loc.key("")).await.unwrap_or_default();
            let found = if listed.is_empty() {
                "; the prefix is empty".to_owned()
            } else {
                let bytes: u64 = listed.iter().map(|l| l.size).sum();
                format!(
                    "; the prefix holds {} objects ({bytes} bytes) without one: an upload that did not finish",
                    listed.len()
                )
            };
            Err(Error::NotCommitted {
                bucket: client.bucket().to_owned(),
                prefix: loc.prefix.clone(),
                commit: key,
                found,
            })
        }
        Err(e) => Err(e),
    }
}

/// The stream of a committed backup as an `AsyncRead`; a failure of the
/// download surfaces as a read error, and [`Download::finish`] returns it
/// with its class intact.
pub struct Download {
    rx: mpsc::Receiver<Result<Bytes>>,
    cur: Bytes,
    task: Option<tokio::task::JoinHandle<Result<u64>>>,
    failed: bool,
}

impl Download {
    /// Start downloading `commit`'s objects under `loc`.
    #[must_use]
    pub fn start(client: Client, loc: Location, commit: Commit, parallel: usize) -> Self {
        let (tx, rx) = mpsc::channel(2);
        let task = tokio::spawn(run(client, loc, commit, parallel.max(1), tx));
        Download {
            rx,
            cur: Bytes::new(),
            task: Some(task),
            failed: false,
        }
    }

    /// Wait for the download task; its error, if it failed (the root cause
    /// of a read error the consumer saw), else the bytes delivered.
    ///
    /// # Errors
    /// The download's error.
    pub async fn finish(mut self) -> Result<u64> {
        self.rx.close();
        match self.task.take() {
            Some(t) => t.await.map_err(|e| Error::Task(e.to_string()))?,
            None => Ok(0),
        }
    }
}

impl Drop for Download {
    fn drop(&mut self) {
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}

impl tokio::io::AsyncRead for Download {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        loop {
            if !self.cur.is_empty() {
                let n = self.cur.len().min(buf.remaining());
                let piece = self.cur.split_to(n);
                buf.put_slice(&piece);
                return Poll::Ready(Ok(()));
            }
            if self.failed {
                return Poll::Ready(Err(std::io::Error::other("the download failed")));
            }
            match self.rx.poll_recv(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => return Poll::Ready(Ok(())),
                Poll::Ready(Some(Ok(b))) => self.cur = b,
                Poll::Ready(Some(Err(e))) => {
                    self.failed = true;
                    return Poll::Ready(Err(std::io::Error::other(e.to_string())));
                }
            }
        }
    }
}

async fn run(
    client: Client,
    loc: Location,
    commit: Commit,
    parallel: usize,
    tx: mpsc::Sender<Result<Bytes>>,
) -> Result<u64> {
    match run_inner(&client, &loc, &commit, parallel, &tx).await {
        Ok(n) => Ok(n),
        Err(e) => {
            // The consumer sees a read error; the root cause is returned here.
            let _ = tx.send(Err(Error::Task(e.to_string()))).await;
            Err(e)
        }
    }
}

/// A ranged GET of the download.
enum Job {
    /// Part-sized range `start..end` of data object `obj` (digest checked).
    Part { obj: usize, start: u64, end: u64 },
    /// A range of an earlier attempt's segment (a retake's reused range;
    /// checked by the xbstream CRCs and the manifest further on).
    Old { key: String, start: u64, end: u64 },
}

/// The ranged GETs, and the stream as slices of their bodies in order:
/// `(job, from, to)`. A reused range splits the part it falls into.
fn plan(commit: &Commit, loc: &Location) -> (Vec<Job>, Vec<(usize, usize, usize)>) {
    let mut jobs = Vec::new();
    let mut slices = Vec::new();
    let mut reused = commit.reused.iter().peekable();
    let push_old = |jobs: &mut Vec<Job>, slices: &mut Vec<_>, r: &layout::Reused| {
        let mut start = r.offset;
        let end = r.offset + r.len;
        while start < end {
            let stop = (start + commit.part_size).min(end);
            slices.push((
                jobs.len(),
                0,
                usize::try_from(stop - start).unwrap_or(usize::MAX),
            ));
            jobs.push(Job::Old {
                key: loc.key(&r.object),
                start,
                end: stop,
            });
            start = stop;
        }
    };
    let mut g = 0u64;
    for (i, o) in commit.objects.iter().enumerate() {
        let mut start = 0;
        while start < o.size {
            let end = (start + commit.part_size).min(o.size);
            let len = end - start;
            let j = jobs.len();
            jobs.push(Job::Part { obj: i, start, end });
            let mut cut = 0u64;
            while let Some(r) = reused.next_if(|r| r.at < g + len) {
                let x = r.at.saturating_sub(g);
                if x > cut {
                    slices.push((j, cut as usize, x as usize));
                    cut = x;
                }
                push_old(&mut jobs, &mut slices, r);
            }
            if cut < len {
                slices.push((j, cut as usize, len as usize));
            }
            g += len;
            start = end;
        }
    }
    for r in reused {
        push_old(&mut jobs, &mut slices, r);
    }
    (jobs, slices)
}

async fn run_inner(
    client: &Client,
    loc: &Location,
    commit: &Commit,
    parallel: usize,
    tx: &mpsc::Sender<Result<Bytes>>,
) -> Result<u64> {
    let (jobs, slices) = plan(commit, loc);
    let mut last_use = vec![0usize; jobs.len()];
    for (n, (j, _, _)) in slices.iter().enumerate() {
        last_use[*j] = n;
    }
    let mut fetched = futures::stream::iter(jobs.into_iter().enumerate())
        .map(|(j, job)| {
            let client = client.clone();
            let (key, start, end, obj) = match job {
                Job::Part { obj, start, end } => {
                    (loc.key(&commit.objects[obj].name), start, end, Some(obj))
                }
                Job::Old { key, start, end } => (key, start, end, None),
            };
            async move {
                let data = fetch(&client, &key, start, end).await?;
                let part = match obj {
                    Some(i) => {
                        let hashed = data.clone();
                        let sha = tokio::task::spawn_blocking(move || layout::sha256(&hashed))
                            .await
                            .map_err(|e| Error::Task(e.to_string()))?;
                        Some((i, end, sha))
                    }
                    None => None,
                };
                Ok::<_, Error>((j, data, part))
            }
        })
        .buffered(parallel);
    let mut held: std::collections::HashMap<usize, Bytes> = std::collections::HashMap::new();
    let mut digests: Vec<[u8; 32]> = Vec::new();
    let mut total = 0u64;
    for (n, (j, from, to)) in slices.iter().enumerate() {
        while !held.contains_key(j) {
            let Some(r) = fetched.next().await else {
                return Err(Error::Task("the download plan ended early".into()));
            };
            let (got, data, part) = r?;
            if let Some((i, end, sha)) = part {
                digests.push(sha);
                let o = &commit.objects[i];
                if end == o.size {
                    let composite = hex::encode(layout::composite(&digests));
                    if composite != o.sha256_of_parts {
                        return Err(Error::Corrupt {
                            key: loc.key(&o.name),
                            reason: format!(
                                "composite SHA-256 {composite} differs from the commit object's {}",
                                o.sha256_of_parts
                            ),
                        });
                    }
                    digests.clear();
                }
            }
            held.insert(got, data);
        }
        let data = if last_use[*j] == n {
            held.remove(j).unwrap_or_default()
        } else {
            held.get(j).cloned().unwrap_or_default()
        };
        let piece = data.slice(*from..*to);
        total += piece.len() as u64;
        if tx.send(Ok(piece)).await.is_err() {
            // The consumer stopped reading (it failed or finished early).
            return Ok(total);
        }
    }
    Ok(total)
}

/// One range, resumed from the byte reached when the body is cut.
async fn fetch(client: &Client, key: &str, start: u64, end: u64) -> Result<Bytes> {
    let want = usize::try_from(end - start).unwrap_or(usize::MAX);
    let mut out = BytesMut::with_capacity(want);
    let mut cuts = 0u32;
    loop {
        let from = start + out.len() as u64;
        let r = client.get_range(key, from, end).await?;
        let mut resp = r.resp;
        let cut = loop {
            match resp.chunk().await {
                Ok(Some(c)) => {
                    if out.len() + c.len() > want {
                        return Err(Error::Corrupt {
                            key: key.into(),
                            reason: format!("range {start}-{end} returned more bytes than asked"),
                        });
                    }
                    out.extend_from_slice(&c);
                }
                Ok(None) => break None,
                Err(e) => break Some(e.to_string()),
            }
        };
        if out.len() == want {
            return Ok(out.freeze());
        }
        cuts += 1;
        if cuts >= client.cfg.attempts.max(1) {
            return Err(match cut {
                Some(why) => Error::Unreachable {
                    endpoint: client.endpoint.clone(),
                    op: "GetObject",
                    key: key.into(),
                    attempts: cuts,
                    reason: why,
                },
                None => Error::Truncated {
                    key: key.into(),
                    at: start + out.len() as u64,
                    expected: end,
                },
            });
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use layout::{DataObject, Reused};

    fn commit(sizes: &[u64], part: u64, reused: Vec<Reused>) -> Commit {
        let objects = sizes
            .iter()
            .enumerate()
            .map(|(i, &size)| DataObject {
                name: layout::seg_name("a", i),
                size,
                parts: u32::try_from(size.div_ceil(part).max(1)).unwrap(),
                sha256_of_parts: hex::encode([0u8; 32]),
            })
            .collect();
        Commit {
            format: layout::FORMAT.into(),
            version: layout::VERSION,
            tool: "t".into(),
            created: "now".into(),
            source: "backup".into(),
            stream_bytes: sizes.iter().sum(),
            part_size: part,
            objects,
            checkpoints: std::collections::BTreeMap::new(),
            files: None,
            reused,
        }
    }

    fn r(at: u64, offset: u64, len: u64) -> Reused {
        Reused {
            at,
            object: layout::seg_name("old", 0),
            offset,
            len,
        }
    }

    /// The bytes the plan delivers, as (object-or-old, offset) per byte.
    fn delivered(c: &Commit) -> Vec<(String, u64)> {
        let loc = Location::parse("s3://bkt/p").unwrap();
        let (jobs, slices) = plan(c, &loc);
        let mut out = Vec::new();
        for (j, from, to) in slices {
            let (key, start) = match &jobs[j] {
                Job::Part { obj, start, .. } => (loc.key(&c.objects[*obj].name), *start),
                Job::Old { key, start, .. } => (key.clone(), *start),
            };
            for b in from..to {
                out.push((key.clone(), start + b as u64));
            }
        }
        out
    }

    #[test]
    fn reused_ranges_are_spliced_at_their_place() {
        // Objects of 10 and 4 bytes in parts of 4; reused ranges at 0, 6
        // (mid-part, two of them), 10 (an object boundary) and 14 (the end).
        let c = commit(
            &[10, 4],
            4,
            vec![
                r(0, 100, 2),
                r(6, 200, 5),
                r(6, 300, 1),
                r(10, 400, 1),
                r(14, 500, 3),
            ],
        );
        let got = delivered(&c);
        assert_eq!(got.len() as u64, c.total_bytes());
        let new = |i: usize, o: u64| (format!("p/{}", layout::seg_name("a", i)), o);
        let old = |o: u64| (format!("p/{}", layout::seg_name("old", 0)), o);
        let mut want = vec![old(100), old(101)];
        want.extend((0..6).map(|o| new(0, o)));
        want.extend((200..205).map(old));
        want.push(old(300));
        want.extend((6..10).map(|o| new(0, o)));
        want.push(old(400));
        want.extend((0..4).map(|o| new(1, o)));
        want.extend((500..503).map(old));
        assert_eq!(got, want);
        // Long reused ranges are fetched in pieces of at most a part.
        let loc = Location::parse("s3://bkt/p").unwrap();
        let (jobs, _) = plan(&commit(&[4], 4, vec![r(4, 0, 9)]), &loc);
        let olds: Vec<u64> = jobs
            .iter()
            .filter_map(|j| match j {
                Job::Old { start, end, .. } => Some(end - start),
                Job::Part { .. } => None,
            })
            .collect();
        assert_eq!(olds, [4, 4, 1]);
    }
}
