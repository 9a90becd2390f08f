//! A byte stream written to the store as multipart objects, then committed.
//!
//! [`Uploader::write`] fills a part buffer; each full part is hashed
//! (SHA-256, off the async threads) and uploaded with its
//! `x-amz-checksum-sha256` by a task of its own, at most `parallel` at once:
//! memory is bounded by (parallel + 1) × part size, whatever the stream's
//! size. After `max_parts` parts the stream rolls over to the next object.
//! [`Uploader::finish`] uploads the last part, waits for every part,
//! completes the objects (`If-None-Match: *`) and only then writes the
//! commit object (`If-None-Match: *`). [`Uploader::abort`] aborts the
//! multipart uploads (best effort) and never writes the commit object; an
//! uploader dropped without `finish` (a killed process) leaves no commit
//! object either, so nothing reads the prefix as a complete backup.
//!
//! Resume ([`Resume`], for a stream that can be replayed: `hotbak upload
//! FILE`): every created upload and stored part is appended to a local state
//! file; a rerun reuses the uploads and skips each part whose SHA-256 the
//! state file recorded and whose size and ETag the store still lists.

use std::collections::BTreeMap;
use std::path::PathBuf;

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncWriteExt;
use tokio::task::JoinSet;

use super::layout::{self, Commit, DataObject, StateLine};
use super::{Client, Error, Location, Result};

/// Upload shape.
#[derive(Clone, Copy, Debug)]
pub struct UploadOptions {
    /// Part size (every part but an object's last).
    pub part_size: u64,
    /// Parts per object before rolling over (S3: at most 10,000).
    pub max_parts: u32,
    /// Parts in flight.
    pub parallel: usize,
}

impl Default for UploadOptions {
    fn default() -> Self {
        UploadOptions {
            part_size: layout::DEFAULT_PART,
            max_parts: layout::MAX_PARTS,
            parallel: 4,
        }
    }
}

/// A part that the store holds.
#[derive(Clone, Debug)]
struct PartDone {
    size: u64,
    sha: [u8; 32],
    etag: String,
}

#[derive(Debug, Default)]
struct Obj {
    upload_id: String,
    parts: Vec<Option<PartDone>>,
}

/// The local state of a resumable upload.
pub struct Resume {
    path: PathBuf,
    file: tokio::fs::File,
    /// Parts from an earlier run that the store still holds.
    known: BTreeMap<(usize, u32), PartDone>,
    /// Upload ids from an earlier run.
    uploads: BTreeMap<usize, String>,
}

impl Resume {
    /// Open (or start) the state file `path` for uploading `file` to `loc`.
    /// A state file for another file, size, mtime, location or part size is
    /// ignored (started afresh). Parts are reconciled with the store's
    /// ListParts: only parts it lists with the recorded size and ETag count.
    ///
    /// # Errors
    /// [`Error::Io`] on the state file; store errors from ListParts.
    pub async fn open(
        client: &Client,
        path: PathBuf,
        start: StateLine,
    ) -> Result<(Self, Vec<String>)> {
        let io = |source| Error::Io {
            path: path.display().to_string(),
            source,
        };
        let mut notes = Vec::new();
        let old = match tokio::fs::read(&path).await {
            Ok(b) => layout::State::parse(&String::from_utf8_lossy(&b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => layout::State::default(),
            Err(e) => return Err(io(e)),
        };
        let mut known = BTreeMap::new();
        let mut uploads = BTreeMap::new();
        let (StateLine::Start { location, .. }, _) = (&start, ()) else {
            return Err(Error::Usage(
                "resume state must start with a Start line".into(),
            ));
        };
        if old.start.as_ref() == Some(&start) {
            for (obj, id) in &old.uploads {
                let key = Location::parse(location)?.key(&layout::data_name(*obj));
                match client.list_parts(&key, id).await {
                    Ok(listed) => {
                        let listed: BTreeMap<u32, _> =
                            listed.into_iter().map(|p| (p.number, p)).collect();
                        for ((o, n), (size, sha, etag)) in
                            old.parts.range((*obj, 0)..=(*obj, u32::MAX))
                        {
                            if listed
                                .get(n)
                                .is_some_and(|p| p.size == *size && same_etag(&p.etag, etag))
                            {
                                known.insert(
                                    (*o, *n),
                                    PartDone {
                                        size: *size,
                                        sha: *sha,
                                        etag: etag.clone(),
                                    },
                                );
                            }
                        }
                        uploads.insert(*obj, id.clone());
                    }
                    Err(Error::NotFound { .. }) => {
                        notes.push(format!(
                            "{key}: the earlier upload {id} is gone from the store; starting that object afresh"
                        ));
                    }
                    Err(e) => return Err(e),
                }
            }
            notes.push(format!(
                "resuming from {}: {} parts already in the store",
                path.display(),
                known.len()
            ));
        } else if old.start.is_some() {
            notes.push(format!(
                "{}: state of another upload (file, size, time, location or part size differ); starting afresh",
                path.display()
            ));
        }
        // Rewrite the state: the start line, the uploads kept, the parts kept.
        let mut text = layout::state_line(&start);
        for (obj, id) in &uploads {
            text.extend(layout::state_line(&StateLine::Object {
                obj: *obj,
                upload_id: id.clone(),
            }));
        }
        for ((obj, n), p) in &known {
            text.extend(layout::state_line(&StateLine::Part {
                obj: *obj,
                n: *n,
                size: p.size,
                sha256: hex::encode(p.sha),
                etag: p.etag.clone(),
            }));
        }
        let tmp = path.with_extension("tmp");
        tokio::fs::write(&tmp, &text).await.map_err(io)?;
        tokio::fs::rename(&tmp, &path).await.map_err(io)?;
        let file = tokio::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .await
            .map_err(io)?;
        Ok((
            Resume {
                path,
                file,
                known,
                uploads,
            },
            notes,
        ))
    }

    async fn append(&mut self, l: &StateLine) -> Result<()> {
        let io = |source| Error::Io {
            path: self.path.display().to_string(),
            source,
        };
        self.file
            .write_all(&layout::state_line(l))
            .await
            .map_err(io)?;
        self.file.sync_data().await.map_err(io)
    }

    /// Remove the state file (after the commit object is written).
    async fn remove(self) {
        drop(self.file);
        let _ = tokio::fs::remove_file(&self.path).await;
    }
}

/// ETags compare without their quotes (listings and replies differ in quoting).
fn same_etag(a: &str, b: &str) -> bool {
    a.trim_matches('"') == b.trim_matches('"')
}

/// What an upload did.
#[derive(Clone, Debug, Default)]
pub struct UploadReport {
    /// Stream bytes.
    pub bytes: u64,
    /// Parts sent in this run.
    pub parts_sent: u64,
    /// Parts skipped because the store already held them (resume).
    pub parts_skipped: u64,
    /// Data objects.
    pub objects: usize,
    /// The commit object written.
    pub commit: Option<Commit>,
}

type PartResult = Result<(usize, u32, PartDone, bool)>;

/// Writes a stream as multipart objects under a prefix; see the module docs.
pub struct Uploader {
    client: Client,
    loc: Location,
    opts: UploadOptions,
    buf: BytesMut,
    objs: Vec<Obj>,
    inflight: JoinSet<PartResult>,
    total: u64,
    report: UploadReport,
    resume: Option<Resume>,
}

impl std::fmt::Debug for Uploader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Uploader")
            .field("location", &self.loc)
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

impl Uploader {
    /// Start an upload to `loc`: refuses a prefix that already holds a commit object.
    ///
    /// # Errors
    /// [`Error::Exists`]; store errors (an unreachable store, wrong credentials).
    pub async fn start(
        client: Client,
        loc: Location,
        opts: UploadOptions,
        resume: Option<Resume>,
    ) -> Result<Self> {
        // A GET rather than a HEAD: a refusal then carries the store's error
        // code (a HEAD reply has no body to name it).
        let commit = loc.key(layout::COMMIT);
        match client.get_small(&commit).await {
            Ok(_) => return Err(Error::Exists { key: commit }),
            Err(Error::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
        let opts = UploadOptions {
            part_size: opts.part_size.clamp(1, layout::MAX_PART),
            max_parts: opts.max_parts.clamp(1, layout::MAX_PARTS),
            parallel: opts.parallel.max(1),
        };
        Ok(Uploader {
            client,
            loc,
            opts,
            buf: BytesMut::new(),
            objs: Vec::new(),
            inflight: JoinSet::new(),
            total: 0,
            report: UploadReport::default(),
            resume,
        })
    }

    /// Where it goes.
    #[must_use]
    pub fn location(&self) -> &Location {
        &self.loc
    }

    /// Append bytes to the stream. Waits while `parallel` parts are in flight.
    ///
    /// # Errors
    /// The first failed part's error.
    pub async fn write(&mut self, mut data: &[u8]) -> Result<()> {
        let ps = usize::try_from(self.opts.part_size).unwrap_or(usize::MAX);
        while !data.is_empty() {
            if self.buf.capacity() == 0 {
                self.buf.reserve(ps);
            }
            let take = (ps - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            self.total += take as u64;
            if self.buf.len() == ps {
                let part = self.buf.split().freeze();
                self.dispatch(part).await?;
            }
        }
        Ok(())
    }

    /// Stream bytes so far.
    #[must_use]
    pub fn bytes(&self) -> u64 {
        self.total
    }

    async fn dispatch(&mut self, part: Bytes) -> Result<()> {
        let need_new = self
            .objs
            .last()
            .map_or(true, |o| o.parts.len() >= self.opts.max_parts as usize);
        if need_new {
            let i = self.objs.len();
            let key = self.loc.key(&layout::data_name(i));
            let known = self
                .resume
                .as_ref()
                .and_then(|r| r.uploads.get(&i).cloned());
            let upload_id = match known {
                Some(id) => id,
                None => {
                    let id = self.client.create_multipart(&key).await?;
                    if let Some(r) = self.resume.as_mut() {
                        r.append(&StateLine::Object {
                            obj: i,
                            upload_id: id.clone(),
                        })
                        .await?;
                    }
                    id
                }
            };
            self.objs.push(Obj {
                upload_id,
                parts: Vec::new(),
            });
        }
        while self.inflight.len() >= self.opts.parallel {
            self.reap().await?;
        }
        let obj = self.objs.len() - 1;
        let o = &mut self.objs[obj];
        o.parts.push(None);
        let n = u32::try_from(o.parts.len()).unwrap_or(u32::MAX);
        let key = self.loc.key(&layout::data_name(obj));
        let upload_id = o.upload_id.clone();
        let client = self.client.clone();
        let prior = self
            .resume
            .as_ref()
            .and_then(|r| r.known.get(&(obj, n)).cloned());
        self.inflight.spawn(async move {
            let size = part.len() as u64;
            let hashed = part.clone();
            let sha = tokio::task::spawn_blocking(move || layout::sha256(&hashed))
                .await
                .map_err(|e| Error::Task(e.to_string()))?;
            if let Some(p) = prior {
                if p.sha == sha && p.size == size {
                    return Ok((obj, n, p, false));
                }
            }
            let etag = client.upload_part(&key, &upload_id, n, part, &sha).await?;
            Ok((obj, n, PartDone { size, sha, etag }, true))
        });
        Ok(())
    }

    async fn reap(&mut self) -> Result<()> {
        let Some(r) = self.inflight.join_next().await else {
            return Ok(());
        };
        let (obj, n, done, sent) = r.map_err(|e| Error::Task(e.to_string()))??;
        if sent {
            self.report.parts_sent += 1;
            if let Some(res) = self.resume.as_mut() {
                res.append(&StateLine::Part {
                    obj,
                    n,
                    size: done.size,
                    sha256: hex::encode(done.sha),
                    etag: done.etag.clone(),
                })
                .await?;
            }
        } else {
            self.report.parts_skipped += 1;
        }
        let slot = self
            .objs
            .get_mut(obj)
            .and_then(|o| o.parts.get_mut(n as usize - 1))
            .ok_or_else(|| Error::Task(format!("part {obj}/{n} out of range")))?;
        *slot = Some(done);
        Ok(())
    }

    /// Upload the rest, complete every object, then write the commit object.
    /// `source`, `checkpoints` and `files` go into the commit object.
    ///
    /// # Errors
    /// Any part's or completion's error (the uploads are then aborted), or
    /// [`Error::Exists`] when a commit object appeared meanwhile.
    pub async fn finish(
        mut self,
        source: &str,
        checkpoints: BTreeMap<String, String>,
        files: Option<u64>,
    ) -> Result<UploadReport> {
        match self.finish_inner(source, checkpoints, files).await {
            Ok(r) => Ok(r),
            Err(e) => {
                self.abort_uploads().await;
                Err(e)
            }
        }
    }

    async fn finish_inner(
        &mut self,
        source: &str,
        checkpoints: BTreeMap<String, String>,
        files: Option<u64>,
    ) -> Result<UploadReport> {
        if !self.buf.is_empty() || self.objs.is_empty() {
            let part = self.buf.split().freeze();
            self.dispatch(part).await?;
        }
        while !self.inflight.is_empty() {
            self.reap().await?;
        }
        let mut objects = Vec::new();
        for (i, o) in self.objs.iter().enumerate() {
            let parts: Vec<&PartDone> = o.parts.iter().flatten().collect();
            if parts.len() != o.parts.len() {
                return Err(Error::Task(format!("object {i}: a part never finished")));
            }
            let key = self.loc.key(&layout::data_name(i));
            let etags: Vec<String> = parts.iter().map(|p| p.etag.clone()).collect();
            self.client
                .complete_multipart(&key, &o.upload_id, &etags, true)
                .await?;
            let shas: Vec<[u8; 32]> = parts.iter().map(|p| p.sha).collect();
            objects.push(DataObject {
                name: layout::data_name(i),
                size: parts.iter().map(|p| p.size).sum(),
                parts: u32::try_from(parts.len()).unwrap_or(u32::MAX),
                sha256_of_parts: hex::encode(layout::composite(&shas)),
            });
        }
        let commit = Commit {
            format: layout::FORMAT.into(),
            version: layout::VERSION,
            tool: format!("hotbak {}", env!("CARGO_PKG_VERSION")),
            created: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            source: source.into(),
            stream_bytes: self.total,
            part_size: self.opts.part_size,
            objects,
            checkpoints,
            files,
            reused: vec![],
        };
        self.client
            .put(
                &self.loc.key(layout::COMMIT),
                Bytes::from(commit.to_bytes()),
                true,
            )
            .await?;
        if let Some(r) = self.resume.take() {
            r.remove().await;
        }
        self.report.bytes = self.total;
        self.report.objects = self.objs.len();
        self.report.commit = Some(commit);
        Ok(std::mem::take(&mut self.report))
    }

    /// Stop: cancel the parts in flight and abort the multipart uploads
    /// (best effort, except for a resumable upload, whose parts are kept for
    /// the next run). No commit object is written.
    pub async fn abort(mut self) {
        self.abort_uploads().await;
    }

    async fn abort_uploads(&mut self) {
        self.inflight.abort_all();
        while self.inflight.join_next().await.is_some() {}
        if self.resume.is_some() {
            return;
        }
        for (i, o) in self.objs.iter().enumerate() {
            let key = self.loc.key(&layout::data_name(i));
            let _ = self.client.abort_multipart(&key, &o.upload_id).await;
        }
    }
}
