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

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::task::JoinSet;

use super::layout::{self, Commit, DataObject, Reused, StateLine};
use super::reuse::{self, Action, Catalog, FileRec, LiveFile, SegIndex};
use super::{Client, Error, Location, Result};
use crate::format::xbstream;

/// Upload shape.
#[derive(Clone, Copy, Debug)]
pub struct UploadOptions {
    /// Part size (every part but an object's last).
    pub part_size: u64,
    /// Parts per object before rolling over (S3: at most 10,000).
    pub max_parts: u32,
    /// Parts in flight.
    pub parallel: usize,
    /// A live backup's segment size (see [`AttemptOptions`]).
    pub segment_bytes: u64,
    /// A live backup reuses what earlier attempts stored (see [`AttemptOptions`]).
    pub reuse: bool,
}

/// Default segment size of a live backup.
pub const DEFAULT_SEGMENT: u64 = 128 << 20;

impl Default for UploadOptions {
    fn default() -> Self {
        UploadOptions {
            part_size: layout::DEFAULT_PART,
            max_parts: layout::MAX_PARTS,
            parallel: 4,
            segment_bytes: DEFAULT_SEGMENT,
            reuse: true,
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
    /// Completed (a segment is completed as soon as its parts are stored).
    done: Option<DataObject>,
}

/// A live backup's attempt: its options (see [`Uploader::start_attempt`]).
#[derive(Clone, Debug)]
pub struct AttemptOptions {
    /// Segment size in bytes (rounded down to whole parts, at least one).
    pub segment_bytes: u64,
    /// The transforms the stream's files go through (compression,
    /// encryption), recorded in the indexes: only an earlier attempt with
    /// the same ones is reused.
    pub transform: String,
    /// Reuse what earlier attempts without a commit object stored.
    pub reuse: bool,
}

/// What a retake reused.
#[derive(Clone, Debug, Default)]
pub struct RetakeReport {
    /// This attempt's id.
    pub attempt: String,
    /// Earlier attempts found under the prefix (none committed).
    pub earlier_attempts: usize,
    /// Files their indexes listed (usable ones).
    pub files_known: usize,
    /// Files taken wholly from earlier attempts.
    pub files_whole: u64,
    /// Files whose first units came from earlier attempts.
    pub files_part: u64,
    /// Stream bytes spliced in from earlier attempts (not uploaded).
    pub bytes_reused: u64,
    /// Bytes uploaded in this attempt's segments.
    pub bytes_uploaded: u64,
    /// The first few files reused wholly (for the summary).
    pub whole_names: Vec<String>,
    /// The first few files reused in part.
    pub part_names: Vec<String>,
    /// Leftovers of earlier attempts deleted after the commit.
    pub deleted: usize,
}

/// Files named in the summary, at most.
const NAMES_SHOWN: usize = 20;

struct Attempt {
    id: String,
    seg_parts: u32,
    seg_bytes: u64,
    transform: String,
    catalog: Catalog,
    live: HashMap<u64, LiveFile>,
    /// Closed files waiting for their last new byte's segment: (need, record).
    pending: Vec<(u64, FileRec)>,
    reused: Vec<Reused>,
    completed: usize,
    report: RetakeReport,
}

/// A new attempt id: UTC time (so names sort by age) and 32 random bits.
fn new_attempt_id() -> String {
    format!(
        "{}-{:08x}",
        chrono::Utc::now().format("%Y%m%dT%H%M%SZ"),
        rand::random::<u32>()
    )
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
    /// A live backup's attempt: what it reused.
    pub retake: Option<RetakeReport>,
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
    attempt: Option<Attempt>,
}

impl std::fmt::Debug for Uploader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Uploader")
            .field("location", &self.loc)
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

/// Refuse a prefix that holds a commit object. A GET rather than a HEAD: a
/// refusal then carries the store's error code (a HEAD reply has no body).
async fn refuse_committed(client: &Client, loc: &Location) -> Result<()> {
    let commit = loc.key(layout::COMMIT);
    match client.get_small(&commit).await {
        Ok(_) => Err(Error::Exists { key: commit }),
        Err(Error::NotFound { .. }) => Ok(()),
        Err(e) => Err(e),
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
        refuse_committed(&client, &loc).await?;
        let opts = UploadOptions {
            part_size: opts.part_size.clamp(1, layout::MAX_PART),
            max_parts: opts.max_parts.clamp(1, layout::MAX_PARTS),
            parallel: opts.parallel.max(1),
            ..opts
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
            attempt: None,
        })
    }

    /// Start a live backup's attempt at `loc` (refused when the prefix holds
    /// a commit object): its stream goes to `attempt-<id>/seg.NNNNNN.xbs`
    /// segments, each completed when full and followed by its index; with
    /// `a.reuse`, files that earlier attempts' indexes list with the same
    /// units are referenced instead of uploaded again. Returns notes for
    /// the user (what earlier attempts were found).
    ///
    /// # Errors
    /// As [`Uploader::start`]; store errors while listing and reading indexes.
    pub async fn start_attempt(
        client: Client,
        loc: Location,
        opts: UploadOptions,
        a: AttemptOptions,
    ) -> Result<(Self, Vec<String>)> {
        let mut up = Self::start(client, loc, opts, None).await?;
        let seg_parts = u32::try_from(a.segment_bytes / up.opts.part_size)
            .unwrap_or(u32::MAX)
            .clamp(1, up.opts.max_parts);
        let mut at = Attempt {
            id: new_attempt_id(),
            seg_parts,
            seg_bytes: u64::from(seg_parts) * up.opts.part_size,
            transform: a.transform,
            catalog: Catalog::default(),
            live: HashMap::new(),
            pending: Vec::new(),
            reused: Vec::new(),
            completed: 0,
            report: RetakeReport::default(),
        };
        at.report.attempt = at.id.clone();
        let mut notes = Vec::new();
        let root = up.loc.key("");
        let listed = up.client.list(&root).await?;
        let mut objects = HashMap::new();
        let mut indexes = Vec::new();
        let mut attempts = std::collections::BTreeSet::new();
        for l in &listed {
            let rel = l.key.strip_prefix(&root).unwrap_or(&l.key);
            if let Some((id, _)) = layout::segment_of(rel) {
                attempts.insert(id.to_owned());
                objects.insert(rel.to_owned(), l.size);
            } else if let Some((id, _)) = layout::index_of(rel) {
                attempts.insert(id.to_owned());
                indexes.push(rel.to_owned());
            }
        }
        at.report.earlier_attempts = attempts.len();
        if a.reuse && !indexes.is_empty() {
            // Attempt ids begin with their time: name order is age order.
            indexes.sort();
            let mut bad = 0;
            let mut bodies = futures::stream::iter(indexes.iter().map(|name| {
                let (client, key) = (up.client.clone(), up.loc.key(name));
                async move { client.get_small(&key).await.map(|b| (key, b)) }
            }))
            .buffered(up.opts.parallel.max(4));
            while let Some(r) = bodies.next().await {
                let (key, body) = r?;
                match SegIndex::parse(&body) {
                    Ok(x) => at.catalog.add(x, &objects, &at.transform),
                    Err(why) => {
                        bad += 1;
                        notes.push(format!("{key}: ignored ({why})"));
                    }
                }
            }
            at.report.files_known = at.catalog.len();
            notes.push(format!(
                "{}: {} earlier attempt(s) without a commit object; their indexes list {} file(s) this backup can reuse ({} unusable, {bad} index(es) unreadable)",
                up.loc,
                attempts.len(),
                at.catalog.len(),
                at.catalog.dropped
            ));
        } else if !attempts.is_empty() {
            notes.push(format!(
                "{}: {} earlier attempt(s) without a commit object{}",
                up.loc,
                attempts.len(),
                if a.reuse {
                    ", with nothing indexed to reuse"
                } else {
                    "; not reused (--s3-no-reuse)"
                }
            ));
        }
        up.attempt = Some(at);
        Ok((up, notes))
    }

    fn obj_name(&self, i: usize) -> String {
        match &self.attempt {
            Some(a) => layout::seg_name(&a.id, i),
            None => layout::data_name(i),
        }
    }

    /// A file of the stream starts (`id` unique while it is open).
    pub fn file_open(&mut self, id: u64, path: &str) {
        if let Some(a) = self.attempt.as_mut() {
            let cand = a.catalog.get(path);
            a.live.insert(id, LiveFile::new(path.to_owned(), cand));
        }
    }

    /// The next bytes of open file `id` (at file offset `off`), written as
    /// xbstream `P` chunks (in an attempt: or referenced, see [`reuse`]).
    ///
    /// # Errors
    /// As [`Uploader::write`]; [`Error::Task`] for an unknown file.
    pub async fn file_data(&mut self, id: u64, path: &str, off: u64, bytes: Bytes) -> Result<()> {
        let Some(a) = self.attempt.as_mut() else {
            let mut rest = bytes;
            let mut off = off;
            while !rest.is_empty() {
                let piece = rest.split_to(rest.len().min(xbstream::DEFAULT_CHUNK_LEN));
                let mut head = Vec::with_capacity(64 + path.len());
                xbstream::put_payload_header(&mut head, path.as_bytes(), off, &piece);
                off += piece.len() as u64;
                self.write(&head).await?;
                self.write(&piece).await?;
            }
            return Ok(());
        };
        let mut f = a
            .live
            .remove(&id)
            .ok_or_else(|| Error::Task(format!("data for {path}, which is not open")))?;
        let pos = self.total;
        // Hashing (BLAKE3) and chunk CRCs off the async threads.
        let (f, acts) = tokio::task::spawn_blocking(move || {
            let acts = f.data(pos, bytes);
            (f, acts)
        })
        .await
        .map_err(|e| Error::Task(e.to_string()))?;
        if let Some(a) = self.attempt.as_mut() {
            a.live.insert(id, f);
        }
        self.apply(acts).await
    }

    /// Open file `id` is complete: its `E` chunk (or the reference that ends it).
    ///
    /// # Errors
    /// As [`Uploader::write`]; [`Error::Task`] for an unknown file.
    pub async fn file_close(&mut self, id: u64, path: &str) -> Result<()> {
        let Some(a) = self.attempt.as_mut() else {
            let mut e = Vec::with_capacity(16 + path.len());
            xbstream::put_eof(&mut e, path.as_bytes());
            return self.write(&e).await;
        };
        let f = a
            .live
            .remove(&id)
            .ok_or_else(|| Error::Task(format!("end of {path}, which is not open")))?;
        let (acts, closed) = f.close(self.total);
        let r = &mut a.report;
        if closed.whole {
            r.files_whole += 1;
            if r.whole_names.len() < NAMES_SHOWN {
                r.whole_names.push(closed.path.clone());
            }
        } else if closed.reused > 0 {
            r.files_part += 1;
            if r.part_names.len() < NAMES_SHOWN {
                r.part_names.push(closed.path.clone());
            }
        }
        r.bytes_reused += closed.reused;
        if closed.size >= reuse::MIN_REUSE {
            a.pending
                .push((closed.need(), closed.record(&a.id, a.seg_bytes)));
        }
        self.apply(acts).await
    }

    async fn apply(&mut self, acts: Vec<Action>) -> Result<()> {
        for act in acts {
            match act {
                Action::Write(b) => self.write(&b).await?,
                Action::Reuse(runs) => {
                    let at = self.total;
                    if let Some(a) = self.attempt.as_mut() {
                        for r in runs {
                            match a.reused.last_mut() {
                                Some(l)
                                    if l.at == at && l.object == r.0 && l.offset + l.len == r.1 =>
                                {
                                    l.len += r.2;
                                }
                                _ => a.reused.push(Reused {
                                    at,
                                    object: r.0,
                                    offset: r.1,
                                    len: r.2,
                                }),
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Complete the attempt's segments whose parts are all stored (all of
    /// them when `finishing`, else all but the one being filled), each
    /// followed by its index (not when `finishing`: the commit follows).
    async fn complete_segments(&mut self, finishing: bool) -> Result<()> {
        let Some(mut a) = self.attempt.take() else {
            return Ok(());
        };
        let res = self.complete_segments_of(&mut a, finishing).await;
        self.attempt = Some(a);
        res
    }

    async fn complete_segments_of(&mut self, a: &mut Attempt, finishing: bool) -> Result<()> {
        let upto = if finishing {
            self.objs.len()
        } else {
            self.objs.len().saturating_sub(1)
        };
        while a.completed < upto {
            let k = a.completed;
            let o = &self.objs[k];
            if o.parts.iter().any(Option::is_none) {
                return Ok(());
            }
            let done = self.complete_object(k, layout::seg_name(&a.id, k)).await?;
            self.objs[k].done = Some(done);
            a.completed += 1;
            if finishing {
                continue;
            }
            let end = (k as u64 + 1) * a.seg_bytes;
            let (ready, wait): (Vec<_>, Vec<_>) = std::mem::take(&mut a.pending)
                .into_iter()
                .partition(|(need, _)| *need <= end);
            a.pending = wait;
            let idx = SegIndex {
                format: reuse::INDEX_FORMAT.into(),
                version: reuse::INDEX_VERSION,
                attempt: a.id.clone(),
                object: layout::seg_name(&a.id, k),
                unit: reuse::UNIT,
                transform: a.transform.clone(),
                files: ready.into_iter().map(|(_, r)| r).collect(),
            };
            self.client
                .put(
                    &self.loc.key(&layout::idx_name(&a.id, k)),
                    Bytes::from(idx.to_bytes()),
                    false,
                )
                .await?;
        }
        Ok(())
    }

    /// Complete object `i`, named `name` (`If-None-Match: *`); its
    /// commit-object entry.
    async fn complete_object(&self, i: usize, name: String) -> Result<DataObject> {
        let o = &self.objs[i];
        let parts: Vec<&PartDone> = o.parts.iter().flatten().collect();
        if parts.len() != o.parts.len() {
            return Err(Error::Task(format!("object {i}: a part never finished")));
        }
        let etags: Vec<String> = parts.iter().map(|p| p.etag.clone()).collect();
        self.client
            .complete_multipart(&self.loc.key(&name), &o.upload_id, &etags, true)
            .await?;
        let shas: Vec<[u8; 32]> = parts.iter().map(|p| p.sha).collect();
        Ok(DataObject {
            name,
            size: parts.iter().map(|p| p.size).sum(),
            parts: u32::try_from(parts.len()).unwrap_or(u32::MAX),
            sha256_of_parts: hex::encode(layout::composite(&shas)),
        })
    }

    /// After the commit: delete what earlier attempts left that the commit
    /// does not reference, and every index (best effort; returns the count).
    async fn clean_after_commit(&self, commit: &Commit) -> usize {
        let keep: std::collections::HashSet<&str> = commit
            .objects
            .iter()
            .map(|o| o.name.as_str())
            .chain(commit.reused.iter().map(|r| r.object.as_str()))
            .collect();
        let root = self.loc.key("");
        let Ok(listed) = self.client.list(&root).await else {
            return 0;
        };
        let mut n = 0;
        for l in listed {
            let rel = l.key.strip_prefix(&root).unwrap_or(&l.key);
            let stale = layout::index_of(rel).is_some()
                || (layout::segment_of(rel).is_some() && !keep.contains(rel));
            if stale && self.client.delete(&l.key).await.is_ok() {
                n += 1;
            }
        }
        n
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
        // Take what finished meanwhile, so full segments complete early.
        while let Some(r) = self.inflight.try_join_next() {
            self.reaped(r).await?;
        }
        let per_object = self
            .attempt
            .as_ref()
            .map_or(self.opts.max_parts, |a| a.seg_parts);
        let need_new = self
            .objs
            .last()
            .map_or(true, |o| o.parts.len() >= per_object as usize);
        if need_new {
            let i = self.objs.len();
            let key = self.loc.key(&self.obj_name(i));
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
                done: None,
            });
        }
        while self.inflight.len() >= self.opts.parallel {
            self.reap().await?;
        }
        let obj = self.objs.len() - 1;
        let o = &mut self.objs[obj];
        o.parts.push(None);
        let n = u32::try_from(o.parts.len()).unwrap_or(u32::MAX);
        let upload_id = o.upload_id.clone();
        let key = self.loc.key(&self.obj_name(obj));
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
        self.reaped(r).await
    }

    async fn reaped(
        &mut self,
        r: std::result::Result<PartResult, tokio::task::JoinError>,
    ) -> Result<()> {
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
        self.complete_segments(false).await
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
        if self.attempt.is_some() {
            self.complete_segments(true).await?;
            objects.extend(self.objs.iter().filter_map(|o| o.done.clone()));
        } else {
            for i in 0..self.objs.len() {
                objects.push(self.complete_object(i, self.obj_name(i)).await?);
            }
        }
        if objects.len() != self.objs.len() {
            return Err(Error::Task("a segment was never completed".into()));
        }
        let reused = self
            .attempt
            .as_mut()
            .map(|a| std::mem::take(&mut a.reused))
            .unwrap_or_default();
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
            reused,
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
        if let Some(mut a) = self.attempt.take() {
            a.report.deleted = self.clean_after_commit(&commit).await;
            a.report.bytes_uploaded = self.total;
            self.report.retake = Some(a.report);
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
        // An attempt's completed segments stay, with their indexes, for a retake.
        for (i, o) in self.objs.iter().enumerate() {
            if o.done.is_none() {
                let key = self.loc.key(&self.obj_name(i));
                let _ = self.client.abort_multipart(&key, &o.upload_id).await;
            }
        }
    }
}
