//! Carrying out a restore's operations: `--parallel` workers copying (by
//! `copy_file_range`, through `std::io::copy` between files) or renaming
//! files, owner and mode set on each file as it is written, progress
//! lines, an optional rate cap, and durability at the end: one `syncfs`
//! per target filesystem, then an `fsync` of every directory an entry was
//! made in, through the [`Syncer`] seam.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::plan::{Job, Ops};
use super::{io, Error, Result};

/// Mode of restored files.
pub const FILE_MODE: u32 = 0o640;
/// Mode of restored directories.
pub const DIR_MODE: u32 = 0o750;

/// How a restore makes its writes durable. [`SystemSyncer`] calls the
/// kernel; tests count the calls.
pub trait Syncer: Sync {
    /// Write back every dirty page and inode of the filesystem that holds
    /// the directory `dir`, and wait (`syncfs`).
    ///
    /// # Errors
    /// The call's error.
    fn sync_filesystem(&self, dir: &Path) -> std::io::Result<()>;
    /// `fsync` the directory `dir` (its entries).
    ///
    /// # Errors
    /// The call's error.
    fn sync_dir(&self, dir: &Path) -> std::io::Result<()>;
}

/// The real thing: `syncfs(2)` and `fsync(2)`.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemSyncer;

impl Syncer for SystemSyncer {
    fn sync_filesystem(&self, dir: &Path) -> std::io::Result<()> {
        crate::sys::syncfs(&File::open(dir)?)
    }
    fn sync_dir(&self, dir: &Path) -> std::io::Result<()> {
        File::open(dir)?.sync_all()
    }
}

/// How to carry the operations out.
pub(super) struct Exec<'a> {
    /// Owner ids for everything written.
    pub ids: Option<(u32, u32)>,
    /// Rename instead of copy (copy and remove the source after the sync
    /// across filesystems).
    pub move_files: bool,
    /// Worker threads.
    pub parallel: usize,
    /// Bytes per second, all workers together.
    pub max_rate: Option<u64>,
    /// The progress display of the copy.
    pub progress: ProgressMode,
    /// Durability.
    pub syncer: &'a dyn Syncer,
}

/// What the operations did.
#[derive(Debug, Default)]
pub(super) struct Done {
    pub files: usize,
    pub outside: usize,
    pub bytes: u64,
    pub renamed: usize,
    /// Sources copied across filesystems for a move, to remove after the sync.
    pub remove_after_sync: Vec<PathBuf>,
    /// Every directory an entry was made in (to fsync).
    pub touched: BTreeSet<PathBuf>,
}

use crate::progress::{Display, Meter, ProgressMode};

/// Set mode and owner of a path (not following a final symlink for the owner).
pub(super) fn set_owner_mode(p: &Path, ids: Option<(u32, u32)>, dir: bool) -> Result<()> {
    let mode = if dir { DIR_MODE } else { FILE_MODE };
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).map_err(io(p))?;
    if let Some((u, g)) = ids {
        std::os::unix::fs::chown(p, Some(u), Some(g)).map_err(io(p))?;
    }
    Ok(())
}

/// Make a symlink with the owner.
pub(super) fn symlink(link: &Path, target: &Path, ids: Option<(u32, u32)>) -> Result<()> {
    std::os::unix::fs::symlink(target, link).map_err(io(link))?;
    if let Some((u, g)) = ids {
        std::os::unix::fs::lchown(link, Some(u), Some(g)).map_err(io(link))?;
    }
    Ok(())
}

/// Create `dir` and its missing parents, each with the owner and mode;
/// record where entries were made.
pub(super) fn create_dirs(
    dir: &Path,
    ids: Option<(u32, u32)>,
    touched: &mut BTreeSet<PathBuf>,
) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        create_dirs(parent, ids, touched)?;
        touched.insert(parent.to_path_buf());
    }
    match std::fs::create_dir(dir) {
        Ok(()) => set_owner_mode(dir, ids, true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(io(dir)(e)),
    }
}

/// A shared byte budget for `--max-rate`.
struct Pacer {
    started: Instant,
    rate: u64,
    sent: AtomicU64,
}

impl Pacer {
    fn take(&self, n: u64) {
        let total = self.sent.fetch_add(n, Ordering::Relaxed) + n;
        let due = Duration::from_secs_f64(total as f64 / self.rate as f64);
        let el = self.started.elapsed();
        if due > el {
            std::thread::sleep(due - el);
        }
    }
}

/// What the workers share: the next job, the progress display's counters.
struct Shared<'m> {
    next: AtomicUsize,
    meter: &'m Meter,
    failed: AtomicBool,
}

/// Copy pieces: large enough for `copy_file_range` to run at disk speed,
/// small enough for progress lines to move (1 MiB under a rate cap).
const PIECE: u64 = 64 << 20;
const PACED_PIECE: u64 = 1 << 20;

impl Exec<'_> {
    /// Create the directories, write the texts, run the jobs on the
    /// workers, make the symlinks (unless `defer_symlinks`).
    pub fn run(&self, ops: &Ops, defer_symlinks: bool) -> Result<Done> {
        let mut done = Done::default();
        for d in &ops.mkdirs {
            create_dirs(d, self.ids, &mut done.touched)?;
        }
        for (dst, src, text) in &ops.texts {
            if dst == src {
                // Rewritten in place: a new file renamed over the old one,
                // so an interruption leaves one or the other.
                let mut tmp = dst.clone().into_os_string();
                tmp.push(".hotbak-new");
                let tmp = PathBuf::from(tmp);
                std::fs::write(&tmp, text).map_err(io(&tmp))?;
                set_owner_mode(&tmp, self.ids, false)?;
                std::fs::rename(&tmp, dst).map_err(io(dst))?;
            } else {
                if self.move_files {
                    done.remove_after_sync.push(src.clone());
                }
                std::fs::write(dst, text).map_err(io(dst))?;
                set_owner_mode(dst, self.ids, false)?;
            }
            if let Some(p) = dst.parent() {
                done.touched.insert(p.to_path_buf());
            }
            done.files += 1;
        }
        let total = ops.bytes();
        let display = Arc::new(Display::new("restore", self.progress, false));
        display.meter().add_total(ops.jobs.len() as u64, total);
        let shared = Shared {
            next: AtomicUsize::new(0),
            meter: display.meter(),
            failed: AtomicBool::new(false),
        };
        let pacer = self.max_rate.map(|rate| Pacer {
            started: Instant::now(),
            rate: rate.max(1),
            sent: AtomicU64::new(0),
        });
        let results: Mutex<Vec<Result<JobDone>>> = Mutex::new(Vec::new());
        std::thread::scope(|s| {
            let workers: Vec<_> = (0..self.parallel.max(1))
                .map(|_| {
                    s.spawn(|| {
                        let mut mine = Vec::new();
                        while !shared.failed.load(Ordering::Relaxed) {
                            let i = shared.next.fetch_add(1, Ordering::Relaxed);
                            let Some(job) = ops.jobs.get(i) else {
                                break;
                            };
                            let r = self.one(job, &shared, pacer.as_ref());
                            if r.is_err() {
                                shared.failed.store(true, Ordering::Relaxed);
                            }
                            shared.meter.file_done();
                            mine.push(r);
                        }
                        if let Ok(mut g) = results.lock() {
                            g.extend(mine);
                        }
                    })
                })
                .collect();
            let ticker = display.start();
            for w in workers {
                let _ = w.join();
            }
            drop(ticker);
        });
        display.finish();
        let results = results.into_inner().map_err(|_| panicked())?;
        if results.len() != ops.jobs.len() && !shared.failed.load(Ordering::Relaxed) {
            return Err(panicked());
        }
        for r in results {
            let j = r?;
            done.files += 1;
            done.bytes += j.bytes;
            if j.outside {
                done.outside += 1;
            }
            if j.renamed {
                done.renamed += 1;
            } else if self.move_files {
                done.remove_after_sync.push(j.src.clone());
            }
            if let Some(p) = j.dst.parent() {
                done.touched.insert(p.to_path_buf());
            }
        }
        if !defer_symlinks {
            self.symlinks(&ops.symlinks, &mut done)?;
        }
        Ok(done)
    }

    /// Make symlinks (link, target).
    pub fn symlinks(&self, links: &[(PathBuf, PathBuf)], done: &mut Done) -> Result<()> {
        for (link, target) in links {
            symlink(link, target, self.ids)?;
            if let Some(p) = link.parent() {
                done.touched.insert(p.to_path_buf());
            }
        }
        Ok(())
    }

    fn one(&self, job: &Job, shared: &Shared, pacer: Option<&Pacer>) -> Result<JobDone> {
        let mut renamed = false;
        let bytes;
        if self.move_files {
            match std::fs::rename(&job.src, &job.dst) {
                Ok(()) => renamed = true,
                // Another filesystem: copy now, remove the source after the sync.
                Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {}
                Err(e) => return Err(io(&job.dst)(e)),
            }
        }
        if renamed {
            set_owner_mode(&job.dst, self.ids, false)?;
            bytes = job.len;
            shared.meter.add_bytes(bytes);
        } else {
            bytes = self.copy(job, shared, pacer)?;
        }
        Ok(JobDone {
            src: job.src.clone(),
            dst: job.dst.clone(),
            bytes,
            outside: job.outside,
            renamed,
        })
    }

    /// Copy one file (never over an existing one), owner and mode set on
    /// the open file.
    fn copy(&self, job: &Job, shared: &Shared, pacer: Option<&Pacer>) -> Result<u64> {
        let mut from = File::open(&job.src).map_err(io(&job.src))?;
        let mut to = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(FILE_MODE)
            .open(&job.dst)
            .map_err(io(&job.dst))?;
        let piece = if pacer.is_some() { PACED_PIECE } else { PIECE };
        let mut n = 0u64;
        loop {
            // `io::copy` between two files is `copy_file_range` on Linux
            // (in-kernel, no user buffer; a reflink where the filesystem can).
            let k = std::io::copy(&mut (&mut from).take(piece), &mut to).map_err(io(&job.dst))?;
            if k == 0 {
                break;
            }
            // The source is read once: its pages leave the page cache at
            // once (as mariabackup's copy-back does), so that a restore
            // larger than the free memory does not make its writes wait
            // for the kernel to reclaim them.
            let _ = crate::sys::drop_cached(&from, n, k);
            n += k;
            shared.meter.add_bytes(k);
            if let Some(p) = pacer {
                p.take(k);
            }
        }
        // The umask may have narrowed the mode given at creation.
        to.set_permissions(std::fs::Permissions::from_mode(FILE_MODE))
            .map_err(io(&job.dst))?;
        if let Some((u, g)) = self.ids {
            std::os::unix::fs::fchown(&to, Some(u), Some(g)).map_err(io(&job.dst))?;
        }
        Ok(n)
    }

    /// Make everything durable: one `syncfs` per filesystem among `roots`,
    /// then an `fsync` of each touched directory. Returns (filesystems,
    /// directories) synced.
    pub fn sync(&self, roots: &[PathBuf], touched: &BTreeSet<PathBuf>) -> Result<(usize, usize)> {
        let mut devs = BTreeSet::new();
        let mut fs = 0;
        for r in roots {
            let md = std::fs::metadata(r).map_err(io(r))?;
            if devs.insert(md.dev()) {
                self.syncer
                    .sync_filesystem(r)
                    .map_err(|source| Error::Sync {
                        path: r.display().to_string(),
                        source,
                    })?;
                fs += 1;
            }
        }
        let mut dirs = 0;
        for d in touched {
            self.syncer.sync_dir(d).map_err(|source| Error::Sync {
                path: d.display().to_string(),
                source,
            })?;
            dirs += 1;
        }
        Ok((fs, dirs))
    }
}

fn panicked() -> Error {
    Error::Io {
        path: "restore".into(),
        source: std::io::Error::other("a copy worker panicked"),
    }
}

struct JobDone {
    src: PathBuf,
    dst: PathBuf,
    bytes: u64,
    outside: bool,
    renamed: bool,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// Counts the calls instead of making them.
    #[derive(Default)]
    struct Counting {
        fs: AtomicUsize,
        dirs: Mutex<Vec<PathBuf>>,
    }

    impl Syncer for Counting {
        fn sync_filesystem(&self, _dir: &Path) -> std::io::Result<()> {
            self.fs.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
        fn sync_dir(&self, dir: &Path) -> std::io::Result<()> {
            self.dirs.lock().unwrap().push(dir.to_path_buf());
            Ok(())
        }
    }

    #[test]
    fn parallel_copy_then_one_syncfs_per_filesystem_and_each_directory() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("src");
        std::fs::create_dir_all(&src).unwrap();
        let out = t.path().join("out");
        let mut ops = Ops::default();
        ops.mkdirs.push(out.join("db"));
        for i in 0..10u8 {
            let p = src.join(format!("f{i}"));
            std::fs::write(&p, vec![i; 1000 * usize::from(i)]).unwrap();
            ops.jobs.push(Job {
                src: p,
                dst: out.join("db").join(format!("f{i}")),
                len: 1000 * u64::from(i),
                outside: false,
            });
        }
        ops.order();
        let c = Counting::default();
        let e = Exec {
            ids: None,
            move_files: false,
            parallel: 3,
            max_rate: None,
            progress: ProgressMode::Quiet,
            syncer: &c,
        };
        let done = e.run(&ops, false).unwrap();
        assert_eq!(done.files, 10);
        assert_eq!(done.bytes, 45_000);
        for i in 0..10u8 {
            let p = out.join("db").join(format!("f{i}"));
            assert_eq!(std::fs::read(&p).unwrap(), vec![i; 1000 * usize::from(i)]);
            assert_eq!(std::fs::metadata(&p).unwrap().mode() & 0o777, FILE_MODE);
        }
        assert_eq!(
            std::fs::metadata(out.join("db")).unwrap().mode() & 0o777,
            DIR_MODE
        );
        // Both roots on one filesystem: one syncfs; the new directories'
        // parents and the directory of the files.
        let (fs, dirs) = e
            .sync(&[out.clone(), out.join("db")], &done.touched)
            .unwrap();
        assert_eq!((fs, c.fs.load(Ordering::Relaxed)), (1, 1));
        assert_eq!(dirs, 3);
        assert_eq!(
            *c.dirs.lock().unwrap(),
            [t.path().to_path_buf(), out.clone(), out.join("db")]
        );
        // Never over an existing file.
        let err = e.run(&ops, false).unwrap_err();
        assert!(err.to_string().contains("exists"), "{err}");
    }

    #[test]
    fn a_rate_cap_paces_the_copy() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("a");
        std::fs::write(&p, vec![7u8; 3 << 20]).unwrap();
        let ops = Ops {
            jobs: vec![Job {
                src: p,
                dst: t.path().join("b"),
                len: 3 << 20,
                outside: false,
            }],
            ..Ops::default()
        };
        let e = Exec {
            ids: None,
            move_files: false,
            parallel: 1,
            max_rate: Some(10 << 20),
            progress: ProgressMode::Quiet,
            syncer: &SystemSyncer,
        };
        let started = Instant::now();
        e.run(&ops, false).unwrap();
        assert!(started.elapsed() >= Duration::from_millis(250));
        assert_eq!(std::fs::read(t.path().join("b")).unwrap().len(), 3 << 20);
    }
}
