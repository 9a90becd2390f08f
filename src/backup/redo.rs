//! The redo-log follower: tails the server's `ib_logfile0` from the start
//! checkpoint, validates every mini-transaction (sequence bit and CRC-32C
//! through [`crate::innodb::redo`]), and appends it linearly to the
//! backup's `ib_logfile0` with its termination byte forced to 1.
//!
//! The backup log's 12 KiB prefix (header + checkpoint block) is final from
//! the start, so the file streams without seeks. Each poll also re-reads the
//! server's checkpoint blocks, and a second connection samples the
//! server's LSN once a second: when `server_lsn - capacity > copied_lsn`
//! the log we still need was overwritten and the backup fails, naming the
//! LSNs; when the headroom falls under the warning threshold, it warns with
//! an estimate of the time left.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::sync::{oneshot, watch, Notify};

use super::ddl::Tracker;
use super::progress::Progress;
use super::spool::{self, Spool};
use super::Error;
use crate::encrypt::mariadb::LogKey;
use crate::format::path::RelPath;
use crate::innodb::redo::{self, FollowerSafety, LogGeometry, MtrParse};
use crate::innodb::Lsn;
use crate::mysql::keys::FileKeys;
use crate::mysql::{ConnectOptions, Session};
use crate::sink::{FileMeta, GraphInput};

/// Largest read from the ring per poll step.
const READ_STEP_MAX: u64 = 4 << 20;
/// Smallest read from the ring per poll step. Each poll starts here and
/// doubles while the log fills the read, so an idle server costs a 64 KiB
/// read per poll, not a 4 MiB one.
const READ_STEP_MIN: u64 = 64 << 10;
/// Name of the log in the backup.
pub const LOG_NAME: &str = "ib_logfile0";

/// What the follower shares while it runs: how far it has copied, the
/// file records seen so far, and a way to wake it before its next poll.
struct Shared {
    copied: watch::Receiver<Lsn>,
    tracker: Arc<std::sync::Mutex<Tracker>>,
    poke: Arc<Notify>,
}

/// Handle to the running follower.
pub struct Follower {
    stop: Option<oneshot::Sender<Lsn>>,
    shared: Shared,
    task: tokio::task::JoinHandle<Result<FollowerReport, Error>>,
    /// The checkpoint the backup log starts at.
    pub start_checkpoint: Lsn,
    /// Capacity of the server's log ring.
    pub capacity: u64,
}

/// What the follower did.
#[derive(Clone, Debug)]
pub struct FollowerReport {
    /// First LSN of the backup log (the start checkpoint).
    pub first_lsn: Lsn,
    /// End of the copied log.
    pub last_lsn: Lsn,
    /// Bytes of redo copied.
    pub bytes: u64,
    /// The newest server checkpoint seen at the end.
    pub server_checkpoint: Lsn,
    /// The file records (create/rename/delete/modify) of the copied log.
    pub tracker: Tracker,
    /// The smallest headroom seen, in bytes.
    pub min_headroom: u64,
    /// What the spool between the follower and the graph held.
    pub spool: spool::Stats,
}

struct Ring {
    /// The log key when the log is encrypted and the keys are at hand:
    /// file records are read from decrypted copies of their mtrs.
    key: Option<Arc<LogKey>>,
    file: File,
    /// Opened with `O_DIRECT`: reads must be aligned to [`super::direct::ALIGN`].
    direct: bool,
    path: PathBuf,
    geo: LogGeometry,
}

/// Open the server's log for reading. `O_DIRECT` where the file system has
/// it: the server writes the log with `O_DIRECT` (the default
/// `innodb_log_file_buffering=OFF`), and a buffered reader racing those
/// writes can keep a stale page in the page cache. A direct read always
/// sees the disk, and the kernel writes dirty cached pages back before it,
/// so a server that buffers its log is read correctly too.
fn open_log(path: &Path) -> Result<(File, bool), Error> {
    super::direct::open(path).map_err(|source| Error::Io {
        path: path.display().to_string(),
        source,
    })
}

impl Ring {
    fn read(&self, lsn: Lsn, len: u64) -> Result<Vec<u8>, Error> {
        let plan = self
            .geo
            .split_read(lsn, len)
            .map_err(|e| Error::Redo(format!("{}: {e}", self.path.display())))?;
        let mut out = vec![0u8; len as usize];
        let first = plan.first.len as usize;
        self.read_exact_at(&mut out[..first], plan.first.offset)?;
        if let Some(s) = plan.second {
            self.read_exact_at(&mut out[first..first + s.len as usize], s.offset)?;
        }
        Ok(out)
    }

    fn read_exact_at(&self, buf: &mut [u8], off: u64) -> Result<(), Error> {
        let io = |source| Error::Io {
            path: self.path.display().to_string(),
            source,
        };
        if !self.direct {
            return self.file.read_exact_at(buf, off).map_err(io);
        }
        // Read the aligned span around [off, off + len), then copy the
        // wanted bytes out.
        let align = super::direct::ALIGN as u64;
        let len = buf.len() as u64;
        let start = off - off % align;
        let span = usize::try_from((off + len).div_ceil(align) * align - start).map_err(|_| {
            Error::Redo(format!(
                "{}: read of {len} bytes too large",
                self.path.display()
            ))
        })?;
        let got = super::direct::read_aligned(&self.file, start, span).map_err(io)?;
        let from = (off - start) as usize;
        let Some(wanted) = got.get(from..from + buf.len()) else {
            return Err(io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!(
                    "log ends at {} reading {len} bytes at offset {off}",
                    start + got.len() as u64
                ),
            )));
        };
        buf.copy_from_slice(wanted);
        Ok(())
    }

    fn prefix(&self) -> Result<redo::LogFileInfo, Error> {
        let mut b = vec![0u8; redo::START_OFFSET as usize];
        self.read_exact_at(&mut b, 0)?;
        redo::parse_log_prefix(&b).map_err(|e| Error::Redo(format!("{}: {e}", self.path.display())))
    }
}

/// Options of the follower.
pub struct FollowerOptions {
    /// Poll interval.
    pub interval: Duration,
    /// Warn when headroom falls under this fraction of the capacity (percent).
    pub warn_percent: u64,
    /// A connection for sampling the server LSN.
    pub conn: ConnectOptions,
    /// Where copied redo waits when the graph is slower than the log:
    /// memory up to `spool_memory` bytes, then a file in `spool_dir`.
    pub spool_dir: PathBuf,
    /// The spool's memory budget.
    pub spool_memory: usize,
    /// The key-management plugin's keys, when readable here: an encrypted
    /// log's file records (DDL tracking) are read through them. Without
    /// them, DDL during the backup of an encrypted log fails the backup.
    pub log_keys: Option<FileKeys>,
}

impl Follower {
    /// Open the server's log, write the backup log's prefix into the graph,
    /// copy what is there, and start tailing.
    ///
    /// # Errors
    /// Unsupported or corrupt log, I/O errors, a closed graph.
    pub async fn start(
        log_path: &Path,
        input: &GraphInput,
        opts: FollowerOptions,
        progress: Arc<Progress>,
    ) -> Result<Follower, Error> {
        let path = log_path.to_path_buf();
        let (file, direct) = open_log(&path)?;
        let size = file
            .metadata()
            .map_err(|source| Error::Io {
                path: path.display().to_string(),
                source,
            })?
            .len();
        let mut ring = Ring {
            key: None,
            file,
            direct,
            path: path.clone(),
            geo: LogGeometry::new(Lsn(redo::START_OFFSET), size.max(redo::START_OFFSET + 64))
                .map_err(|e| Error::Redo(e.to_string()))?,
        };
        let info = ring.prefix()?;
        ring.geo = LogGeometry::for_header(&info.header, size)
            .map_err(|e| Error::Redo(format!("{}: {e}", path.display())))?;
        if let (Some(crypt), Some(k)) = (&info.header.crypt, &opts.log_keys) {
            let key = LogKey::from_key_file(crypt, &k.keys, k.algorithm).map_err(|e| {
                Error::Redo(format!(
                    "{}: the log is encrypted with key id {} version {}: {}: {e}",
                    path.display(),
                    crypt.key_id,
                    crypt.key_version,
                    k.path.display()
                ))
            })?;
            ring.key = Some(Arc::new(key));
        }
        let ck = info.newest;
        // An encrypted log keeps the server's encryption parameters, so the
        // same keys decrypt the copy.
        let prefix = redo::build_backup_log_prefix_with(
            ck,
            redo::DEFAULT_BACKUP_CREATOR,
            info.header.crypt.as_ref(),
        )
        .map_err(|e| Error::Redo(e.to_string()))?;
        let mut out = input
            .open(FileMeta::new(
                RelPath::new(LOG_NAME).expect("constant is valid"),
            ))
            .await?;
        out.write(Bytes::from(prefix)).await?;
        // The follower never waits for the graph: what the graph cannot
        // take yet waits in the spool (memory, then a file in --tmpdir).
        let spool = Spool::new(opts.spool_memory, &opts.spool_dir);
        let drainer = tokio::spawn(spool.clone().drain(out));
        let capacity = ring.geo.capacity();
        let (stop_tx, stop_rx) = oneshot::channel();
        let lsn_session = Session::connect(&opts.conn).await?;
        let (copied_tx, copied_rx) = watch::channel(ck.checkpoint_lsn);
        let tracker = Arc::new(std::sync::Mutex::new(Tracker::default()));
        let poke = Arc::new(Notify::new());
        let task = tokio::spawn(follow(
            ring,
            ck.checkpoint_lsn,
            Out {
                spool,
                drainer: Some(drainer),
            },
            stop_rx,
            opts,
            lsn_session,
            progress,
            Live {
                copied: copied_tx,
                tracker: tracker.clone(),
                poke: poke.clone(),
            },
        ));
        Ok(Follower {
            stop: Some(stop_tx),
            shared: Shared {
                copied: copied_rx,
                tracker,
                poke,
            },
            task,
            start_checkpoint: ck.checkpoint_lsn,
            capacity,
        })
    }

    /// Copy at least up to `target`, then close the log and report.
    ///
    /// # Errors
    /// The follower's error (overrun, I/O, server gone).
    pub async fn finish(mut self, target: Lsn) -> Result<FollowerReport, Error> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(target);
        }
        match self.task.await {
            Ok(r) => r,
            Err(e) => Err(Error::Redo(format!("redo follower task failed: {e}"))),
        }
    }

    /// Wait until the log is copied at least up to `lsn` (the follower is
    /// woken at once instead of at its next poll), and return the file
    /// records seen so far. The follower goes on running.
    ///
    /// # Errors
    /// The follower's failure, or no progress towards `lsn` for 60 s.
    pub async fn sync_to(&mut self, lsn: Lsn) -> Result<Tracker, Error> {
        let mut last = *self.shared.copied.borrow();
        let mut since = Instant::now();
        loop {
            let now = *self.shared.copied.borrow_and_update();
            if now >= lsn {
                break;
            }
            if now > last {
                last = now;
                since = Instant::now();
            }
            if self.has_failed() {
                return Err(Error::Redo(format!(
                    "the redo follower stopped at LSN {now} before reaching LSN {lsn}"
                )));
            }
            if since.elapsed() > Duration::from_secs(60) {
                return Err(Error::RedoOverrun(format!(
                    "the redo copy did not get past LSN {now} towards LSN {lsn} in 60 s"
                )));
            }
            self.shared.poke.notify_one();
            let _ =
                tokio::time::timeout(Duration::from_millis(50), self.shared.copied.changed()).await;
        }
        let t = self
            .shared
            .tracker
            .lock()
            .map_err(|_| Error::Task("redo follower state poisoned".into()))?
            .clone();
        Ok(t)
    }

    /// Stop without a report (the backup failed elsewhere).
    pub fn abort(self) {
        self.task.abort();
    }

    /// Whether the task already ended (with an error: it only ends on stop or error).
    #[must_use]
    pub fn has_failed(&self) -> bool {
        self.task.is_finished() && self.stop.is_some()
    }

    /// Wait for the task's error if it ended early.
    pub async fn take_error(self) -> Option<Error> {
        if self.task.is_finished() {
            match self.task.await {
                Ok(Err(e)) => Some(e),
                Ok(Ok(_)) => None,
                Err(e) => Some(Error::Redo(e.to_string())),
            }
        } else {
            self.task.abort();
            None
        }
    }
}

/// Where the follower's copy goes: the spool, and the task draining it
/// into the graph.
struct Out {
    spool: Arc<Spool>,
    drainer: Option<tokio::task::JoinHandle<Result<(), Error>>>,
}

impl Drop for Out {
    /// A follower that stops early (aborted, failed) takes its drainer
    /// with it, so the graph sees the log's writer go away.
    fn drop(&mut self) {
        if let Some(d) = self.drainer.take() {
            d.abort();
        }
    }
}

impl Out {
    async fn write(&self, chunk: Bytes) -> Result<(), Error> {
        let spool = self.spool.clone();
        tokio::task::spawn_blocking(move || spool.push(chunk))
            .await
            .map_err(|e| Error::Task(e.to_string()))?
    }

    /// Close the spool, wait until the graph has every byte, and report.
    async fn finish(mut self) -> Result<spool::Stats, Error> {
        self.spool.close()?;
        if let Some(d) = self.drainer.take() {
            d.await
                .map_err(|e| Error::Task(format!("redo spool task failed: {e}")))??;
        }
        Ok(self.spool.stats())
    }
}

/// The follower task's side of [`Shared`].
struct Live {
    copied: watch::Sender<Lsn>,
    tracker: Arc<std::sync::Mutex<Tracker>>,
    poke: Arc<Notify>,
}

#[allow(clippy::too_many_arguments)]
async fn follow(
    ring: Ring,
    start: Lsn,
    out: Out,
    mut stop_rx: oneshot::Receiver<Lsn>,
    opts: FollowerOptions,
    mut session: Session,
    progress: Arc<Progress>,
    live: Live,
) -> Result<FollowerReport, Error> {
    let ring = Arc::new(ring);
    let capacity = ring.geo.capacity();
    let mut copied = start;
    let mut target: Option<Lsn> = None;
    let mut server_lsn = start;
    let mut server_ck = start;
    let mut last_lsn_sample = Instant::now() - Duration::from_secs(10);
    let mut rate_sample: Option<(Instant, Lsn)> = None;
    let mut write_rate = 0.0f64;
    let mut min_headroom = u64::MAX;
    let mut last_warn = Instant::now() - Duration::from_secs(60);
    let mut stalled_since: Option<Instant> = None;
    // Where and why the last read found nothing valid (for the stall error).
    let mut last_stop: Option<(Lsn, Option<redo::EndOfLog>, Vec<u8>)> = None;
    let warn_at = capacity / 100 * opts.warn_percent.min(100);
    loop {
        out.spool.check()?;
        // 1. Copy everything valid that the server has made durable. The
        // bound is sampled before the read: the log below the flushed LSN
        // is on disk and never changes (a rewrite of the last partial block
        // repeats those bytes), while past it the file holds whatever the
        // server's write left after its end marker, including whole stale
        // mini-transactions of the same lap from its buffer, with valid
        // checksums and sequence bits (seen here: a follower that took such
        // bytes as log stalled at a position the server never wrote).
        // The server reports its checkpoint; the log's own checkpoint
        // blocks are read only when it does not.
        let mut need_prefix = true;
        let durable = match session.innodb_lsn().await {
            Ok(st) => {
                server_lsn = server_lsn.max(Lsn(st.current));
                if let Some(c) = st.last_checkpoint {
                    server_ck = server_ck.max(Lsn(c));
                    need_prefix = false;
                }
                st.flushed.map(Lsn)
            }
            Err(e) => {
                return Err(Error::ServerGone(format!(
                    "redo follower lost the server: {e}"
                )))
            }
        };
        let mut step = READ_STEP_MIN.min(capacity);
        loop {
            let r = ring.clone();
            let at = copied;
            let avail = durable.map_or(u64::MAX, |d| d.0.saturating_sub(at.0));
            if avail == 0 {
                break;
            }
            let step_now = step.min(avail);
            let (buf, info) = tokio::task::spawn_blocking(move || -> Result<_, Error> {
                let b = r.read(at, step_now)?;
                let i = if need_prefix { Some(r.prefix()?) } else { None };
                Ok((b, i))
            })
            .await
            .map_err(|e| Error::Redo(e.to_string()))??;
            if let Some(info) = info {
                server_ck = server_ck.max(info.newest.checkpoint_lsn);
                server_lsn = server_lsn.max(info.newest.end_lsn);
                need_prefix = false;
            }
            let (chunk, n, stop) = {
                let mut t = live
                    .tracker
                    .lock()
                    .map_err(|_| Error::Task("redo follower state poisoned".into()))?;
                take_valid(&ring.geo, ring.key.as_deref(), at, &buf, &mut t)?
            };
            let cut = stop.is_none();
            if n == 0 {
                last_stop = Some((at, stop, buf.iter().take(16).copied().collect()));
                // A mini-transaction longer than the read: read more at once
                // (not when the read was cut at the durable LSN: wait for it).
                if cut && step_now == step && step < READ_STEP_MAX.min(capacity) {
                    step = (step * 2).min(READ_STEP_MAX).min(capacity);
                    continue;
                }
                break;
            }
            copied = Lsn(at.0 + n as u64);
            out.write(chunk).await?;
            live.copied.send_replace(copied);
            progress.set_redo(copied.0 - start.0, server_lsn.0.saturating_sub(copied.0));
            if (n as u64) < step_now / 2 || step_now < step {
                break;
            }
            step = (step * 2).min(READ_STEP_MAX).min(capacity);
        }
        // 2. The server's write rate, about once a second.
        if last_lsn_sample.elapsed() >= Duration::from_secs(1) {
            last_lsn_sample = Instant::now();
            let now = Instant::now();
            if let Some((t0, l0)) = rate_sample {
                let dt = now.duration_since(t0).as_secs_f64();
                if dt > 0.0 {
                    write_rate = (server_lsn.0.saturating_sub(l0.0)) as f64 / dt;
                }
            }
            rate_sample = Some((now, server_lsn));
        }
        progress.set_redo(copied.0 - start.0, server_lsn.0.saturating_sub(copied.0));
        // 3. Safety.
        match redo::follower_safety(copied, server_ck, server_lsn, capacity) {
            FollowerSafety::Overwritten { lost_bytes } => {
                return Err(Error::RedoOverrun(format!(
                    "the server overwrote redo log not yet copied: copied up to LSN {copied}, server at LSN {server_lsn}, \
                     log capacity {capacity} bytes ({lost_bytes} bytes lost). The backup cannot be consistent. \
                     Increase innodb_log_file_size (now {} bytes), lower --log-copy-interval, or back up at a quieter time.",
                    capacity + redo::START_OFFSET
                )));
            }
            FollowerSafety::AtRisk { headroom_bytes } | FollowerSafety::Ok { headroom_bytes } => {
                min_headroom = min_headroom.min(headroom_bytes);
                progress.set_redo_headroom(headroom_bytes, capacity);
                if headroom_bytes < warn_at && last_warn.elapsed() >= Duration::from_secs(5) {
                    last_warn = Instant::now();
                    let eta = if write_rate > 1.0 {
                        format!(
                            ", about {:.0}s left at the current write rate",
                            headroom_bytes as f64 / write_rate
                        )
                    } else {
                        String::new()
                    };
                    progress.warn(&format!(
                        "redo log headroom is low: {headroom_bytes} of {capacity} bytes (copied LSN {copied}, server LSN {server_lsn}){eta}; \
                         consider a larger innodb_log_file_size"
                    ));
                }
            }
        }
        // Stall: the server is ahead but nothing valid appears at our position for 5 s.
        if server_lsn > copied {
            let since = *stalled_since.get_or_insert_with(Instant::now);
            if since.elapsed() > Duration::from_secs(5) && target.is_some_and(|t| t > copied) {
                let why = match &last_stop {
                    Some((at, stop, head)) if *at == copied => {
                        let why = stop.map_or_else(
                            || "mini-transaction cut off by the read".to_owned(),
                            |e| e.to_string(),
                        );
                        let head: String = head.iter().map(|b| format!("{b:02x}")).collect();
                        format!(" (what is at LSN {copied}: {why}; first bytes {head})")
                    }
                    _ => String::new(),
                };
                return Err(Error::RedoOverrun(format!(
                    "was only able to copy redo log up to LSN {copied}, not {}; the server is at {server_lsn}{why}. \
                     Try increasing innodb_log_file_size.",
                    target.unwrap_or(server_lsn)
                )));
            }
        } else {
            stalled_since = None;
        }
        if server_lsn <= copied {
            stalled_since = None;
        }
        // 4. Done?
        if let Some(t) = target {
            if copied >= t {
                let spool = out.finish().await?;
                // A clean goodbye: the server logs dropped connections as aborted.
                let _ = session.close().await;
                return Ok(FollowerReport {
                    first_lsn: start,
                    last_lsn: copied,
                    bytes: copied.0 - start.0,
                    server_checkpoint: server_ck,
                    tracker: live
                        .tracker
                        .lock()
                        .map_err(|_| Error::Task("redo follower state poisoned".into()))?
                        .clone(),
                    min_headroom: if min_headroom == u64::MAX {
                        capacity
                    } else {
                        min_headroom
                    },
                    spool,
                });
            }
            stalled_since.get_or_insert_with(Instant::now);
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        tokio::select! {
            t = &mut stop_rx => {
                match t {
                    Ok(t) => { target = Some(t); stalled_since = None; }
                    Err(_) => return Err(Error::Redo("redo follower stopped without a target".into())),
                }
            }
            () = tokio::time::sleep(opts.interval) => {}
            () = live.poke.notified() => {}
        }
    }
}

/// Take the complete valid mtrs at the front of `buf` (which starts at `lsn`),
/// with termination bytes forced to 1. Returns the bytes, their length, and
/// why the scan stopped: `None` at a mini-transaction cut off by the end of
/// `buf`, else the reason the next one is not valid.
fn take_valid(
    geo: &LogGeometry,
    key: Option<&LogKey>,
    lsn: Lsn,
    buf: &[u8],
    file_ops: &mut Tracker,
) -> Result<(Bytes, usize, Option<redo::EndOfLog>), Error> {
    let mut pos = 0usize;
    let mut out = BytesMut::new();
    loop {
        let at = Lsn(lsn.0 + pos as u64);
        match redo::parse_mtr(geo, at, &buf[pos..]).map_err(|e| Error::Redo(e.to_string()))? {
            MtrParse::Complete(span) => {
                let mtr = &buf[pos..pos + span.len];
                if geo.encrypted() {
                    observe_encrypted(key, at, mtr, span, file_ops)?;
                } else {
                    for op in redo::file_records(mtr).flatten() {
                        file_ops.observe(at, &op);
                    }
                }
                let start = out.len();
                out.extend_from_slice(mtr);
                out[start + span.term_offset()] = 1;
                pos += span.len;
            }
            MtrParse::NeedMore => return Ok((out.freeze(), pos, None)),
            MtrParse::End(e) => return Ok((out.freeze(), pos, Some(e))),
        }
    }
}

/// The file records of one mtr of an encrypted log. The record headers
/// are in clear, so mtrs without file records (nearly all) are never
/// decrypted; the others are decrypted into a copy (the backup keeps the
/// ciphertext). A record that does not parse after decryption means the
/// key is not the server's: the backup fails rather than miss a DDL.
fn observe_encrypted(
    key: Option<&LogKey>,
    at: Lsn,
    mtr: &[u8],
    span: redo::MtrSpan,
    file_ops: &mut Tracker,
) -> Result<(), Error> {
    let records = &mtr[..span.records_len()];
    let kinds = redo::file_record_kinds(records).unwrap_or(redo::FileKinds {
        ddl: true,
        modify: true,
    });
    if !kinds.any() {
        return Ok(());
    }
    let Some(key) = key else {
        if kinds.ddl {
            return Err(Error::Redo(format!(
                "a file was created, renamed or deleted (DDL) at LSN {at} during the backup, and the \
                 redo log is encrypted: tracking it needs the file_key_management key file, which \
                 could not be read here (see the warning at the start); make it readable, or avoid \
                 DDL during the backup"
            )));
        }
        // FILE_MODIFY only: the tablespace exists at the lock and is copied.
        return Ok(());
    };
    let plain = key
        .decrypt_mtr(mtr)
        .map_err(|e| Error::Redo(format!("at LSN {at}: {e}")))?;
    for op in redo::file_records(&plain[..span.records_len()]) {
        match op {
            Ok(op) => file_ops.observe(at, &op),
            Err(e) => {
                return Err(Error::Redo(format!(
                    "the encrypted redo log at LSN {at} does not decrypt to valid file records \
                     ({e}): the key file's key 1 is not the one the server encrypts with"
                )))
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads at any offset and length return the file's bytes, through
    /// `O_DIRECT` where the file system has it (aligned span, copied out);
    /// a read past the end is an error naming the file.
    #[test]
    fn ring_reads_are_exact_at_any_alignment() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ib_logfile0");
        let data: Vec<u8> = (0..5 * 4096 + 700u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        std::fs::write(&path, &data).expect("write");
        let (file, direct) = open_log(&path).expect("open");
        let ring = Ring {
            key: None,
            file,
            direct,
            path: path.clone(),
            geo: LogGeometry::new(Lsn(redo::START_OFFSET), data.len() as u64).expect("geometry"),
        };
        for (off, len) in [
            (0usize, 12288usize),
            (1, 1),
            (4095, 2),
            (4096, 4096),
            (5000, 9000),
            (3 * 4096 - 7, 2 * 4096 + 700 + 7),
            (data.len() - 1, 1),
        ] {
            let mut buf = vec![0u8; len];
            ring.read_exact_at(&mut buf, off as u64).expect("read");
            assert_eq!(
                buf,
                data[off..off + len],
                "off {off} len {len} direct {direct}"
            );
        }
        let mut past = vec![0u8; 10];
        let err = ring
            .read_exact_at(&mut past, data.len() as u64 - 5)
            .expect_err("past the end");
        assert!(err.to_string().contains("ib_logfile0"), "{err}");
    }
}
