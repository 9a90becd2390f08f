//! Where bulk work runs.
//!
//! A backup shares the machine with the server it copies. Its bulk work
//! (reading and checking data file pages, hashing, compressing, encrypting)
//! is elastic; the server's is not. [`Bulk`] runs such jobs either on a small
//! pool of dedicated threads in the Linux `SCHED_IDLE` CPU class and the idle
//! I/O class ([`Priority::Idle`], the default), which only get a CPU that no
//! normal thread wants and are dispatched after other I/O by schedulers that
//! honour I/O priorities (mq-deadline, bfq), or on tokio's blocking pool
//! ([`Priority::Normal`], `--priority normal`).
//!
//! Measured on a 2-core VM (bench/README.md), with the busy-server read cap
//! (`backup::load`) on: 0.79x of a sysbench server's idle TPS on average
//! during a backup in the idle class, 0.74x at normal priority (per-run
//! spread 0.56-0.97 for both).
//!
//! Reads ([`Bulk::start_io`]) get idle-class threads of their own: on the
//! shared queue they waited behind compression jobs while the device idled,
//! and the compressors then waited for them (4-5 % iowait on 2 cores).
//!
//! The switch is one-way: [`Bulk::escalate`] sends every job from then on to
//! the normal pool, with no privilege needed (the idle threads are never
//! raised, they just get no more work). The backup escalates before it takes
//! the locks that block the server's writes, so nothing the server waits for
//! runs in the idle class.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use crate::error::{Classify, ErrorClass};

/// Scheduling of bulk work.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Priority {
    /// Tokio's blocking pool, normal priority.
    Normal,
    /// Dedicated threads in the `SCHED_IDLE` class until escalated.
    Idle,
}

/// A bulk job failed to complete.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The job panicked.
    #[error("a bulk worker panicked: {0}")]
    Panic(String),
    /// The pool is gone (runtime shutting down).
    #[error("the bulk worker pool shut down")]
    Gone,
}

impl Classify for Error {
    fn class(&self) -> ErrorClass {
        match self {
            Error::Panic(_) | Error::Gone => ErrorClass::Failed,
        }
    }
}

type Job = Box<dyn FnOnce() + Send + 'static>;

struct Inner {
    idle: AtomicBool,
    /// Whether the load monitor last saw the server quiet.
    server_quiet: AtomicBool,
    /// The idle threads' queue (`Priority::Idle` with at least one thread).
    jobs: Option<mpsc::Sender<Job>>,
    /// The idle I/O threads' queue, for jobs that mostly wait on the disk
    /// ([`Bulk::start_io`]); `None`: they share `jobs`.
    io_jobs: Option<mpsc::Sender<Job>>,
    /// Whether the idle threads really are in the idle class.
    idle_class: bool,
}

/// Executor for bulk jobs. Cheap to clone.
#[derive(Clone)]
pub struct Bulk {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Bulk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bulk")
            .field("idle", &self.inner.idle.load(Ordering::Relaxed))
            .finish()
    }
}

impl Default for Bulk {
    fn default() -> Self {
        Bulk::new(Priority::Normal, 0)
    }
}

impl Bulk {
    /// An executor; for [`Priority::Idle`], starts `threads` (at least 1) idle-class threads.
    #[must_use]
    pub fn new(priority: Priority, threads: usize) -> Bulk {
        Bulk::with_io(priority, threads, 0)
    }

    /// An executor with, for [`Priority::Idle`], `io_threads` more
    /// idle-class threads of their own for [`Bulk::start_io`] jobs, so that a
    /// read never queues behind CPU work (a device left idle while every
    /// thread compresses starves the compressors a moment later).
    #[must_use]
    pub fn with_io(priority: Priority, threads: usize, io_threads: usize) -> Bulk {
        let (jobs, idle_class) = match priority {
            Priority::Normal => (None, false),
            Priority::Idle => start_idle_threads(threads.max(1), "bulk"),
        };
        let (io_jobs, io_idle) = match priority {
            Priority::Idle if io_threads > 0 && jobs.is_some() => {
                start_idle_threads(io_threads, "io")
            }
            _ => (None, true),
        };
        Bulk {
            inner: Arc::new(Inner {
                idle: AtomicBool::new(jobs.is_some()),
                server_quiet: AtomicBool::new(false),
                jobs,
                io_jobs,
                idle_class: idle_class && io_idle,
            }),
        }
    }

    /// Whether jobs currently go to the idle-class threads.
    #[must_use]
    pub fn is_idle(&self) -> bool {
        self.inner.idle.load(Ordering::Relaxed)
    }

    /// Whether the idle threads could enter `SCHED_IDLE` (false on other
    /// platforms or when the kernel refused; they then run at normal priority).
    #[must_use]
    pub fn idle_class_active(&self) -> bool {
        self.is_idle() && self.inner.idle_class
    }

    /// Record whether the server is quiet (the load monitor's verdict; until
    /// one comes, it is assumed busy).
    pub fn set_server_quiet(&self, quiet: bool) {
        self.inner.server_quiet.store(quiet, Ordering::Relaxed);
    }

    /// Whether bulk work must yield to the server now: jobs go to the idle
    /// class and the server is not known to be quiet. When it need not, a
    /// caller may do a small job (hashing a frame) on its own thread: a
    /// handoff to the pool costs two thread wakeups, and the idle class only
    /// matters while the server wants the CPU.
    #[must_use]
    pub fn yields(&self) -> bool {
        self.is_idle() && !self.inner.server_quiet.load(Ordering::Relaxed)
    }

    /// From now on run every job at normal priority. Jobs already queued on
    /// the idle threads finish there.
    pub fn escalate(&self) {
        self.inner.idle.store(false, Ordering::Relaxed);
    }

    /// Run `f` on the current pool and wait for it.
    ///
    /// # Errors
    /// The job panicked, or the pool is gone.
    pub async fn run<F, R>(&self, f: F) -> Result<R, Error>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        self.start(f).await
    }

    /// Submit `f` to the current pool now (not when first polled, unlike
    /// [`Bulk::run`]), so that a caller can queue the next read while it
    /// still handles the previous one; the returned future yields its result.
    /// Must be called within a tokio runtime.
    ///
    /// # Errors
    /// (of the future) The job panicked, or the pool is gone.
    pub fn start<F, R>(&self, f: F) -> impl std::future::Future<Output = Result<R, Error>> + Send
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        self.submit(self.inner.jobs.as_ref(), f)
    }

    /// [`Bulk::start`] for a job that mostly waits on the disk (a read): on
    /// the I/O threads where there are some, never behind CPU jobs.
    pub fn start_io<F, R>(&self, f: F) -> impl std::future::Future<Output = Result<R, Error>> + Send
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        self.submit(self.inner.io_jobs.as_ref().or(self.inner.jobs.as_ref()), f)
    }

    fn submit<F, R>(
        &self,
        queue: Option<&mpsc::Sender<Job>>,
        f: F,
    ) -> impl std::future::Future<Output = Result<R, Error>> + Send
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        enum Handle<R> {
            Idle(oneshot::Receiver<Result<R, String>>),
            Blocking(tokio::task::JoinHandle<R>),
            Gone,
        }
        let handle = match queue {
            Some(sender) if self.is_idle() => {
                let (tx, rx) = oneshot::channel();
                let job: Job = Box::new(move || {
                    let r = catch_unwind(AssertUnwindSafe(f)).map_err(panic_text);
                    let _ = tx.send(r);
                });
                if sender.send(job).is_ok() {
                    Handle::Idle(rx)
                } else {
                    Handle::Gone
                }
            }
            _ => Handle::Blocking(tokio::task::spawn_blocking(f)),
        };
        async move {
            match handle {
                Handle::Idle(rx) => match rx.await {
                    Ok(r) => r.map_err(Error::Panic),
                    Err(_) => Err(Error::Gone),
                },
                Handle::Blocking(h) => h.await.map_err(|e| {
                    if e.is_panic() {
                        Error::Panic(panic_text(e.into_panic()))
                    } else {
                        Error::Gone
                    }
                }),
                Handle::Gone => Err(Error::Gone),
            }
        }
    }
}

/// Start `n` idle-class worker threads on one queue. Returns the queue
/// (`None` if no thread could start) and whether every thread entered the class.
fn start_idle_threads(n: usize, kind: &str) -> (Option<mpsc::Sender<Job>>, bool) {
    let (tx, rx) = mpsc::channel::<Job>();
    let rx = Arc::new(Mutex::new(rx));
    let mut all_idle = true;
    let mut started = 0;
    for i in 0..n {
        let rx = rx.clone();
        let (ok_tx, ok_rx) = mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name(format!("hotbak-{kind}-{i}"))
            .spawn(move || {
                let _ = ok_tx.send(crate::sys::enter_idle_class());
                loop {
                    let job = match rx.lock() {
                        Ok(r) => r.recv(),
                        Err(_) => return,
                    };
                    match job {
                        Ok(job) => job(),
                        Err(_) => return,
                    }
                }
            });
        if spawned.is_ok() {
            started += 1;
            all_idle &= ok_rx.recv().unwrap_or(false);
        }
    }
    if started == 0 {
        return (None, false);
    }
    (Some(tx), all_idle)
}

fn panic_text(p: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "(non-text panic)".into()
    }
}

/// The calling thread's scheduling policy (Linux), for tests.
#[cfg(target_os = "linux")]
#[must_use]
pub fn current_policy_is_idle() -> bool {
    // /proc/thread-self/sched shows "policy : 5" for SCHED_IDLE.
    std::fs::read_to_string("/proc/thread-self/sched")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("policy"))
                .and_then(|l| l.split(':').nth(1))
                .map(|v| v.trim() == "5")
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime")
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn idle_jobs_run_in_the_idle_class_until_escalated() {
        rt().block_on(async {
            let b = Bulk::new(Priority::Idle, 2);
            assert!(b.idle_class_active(), "SCHED_IDLE refused");
            assert!(b.run(current_policy_is_idle).await.expect("job"));
            b.escalate();
            assert!(!b.is_idle());
            assert!(!b.run(current_policy_is_idle).await.expect("job"));
        });
    }

    #[test]
    fn normal_jobs_never_run_idle_and_results_come_back() {
        rt().block_on(async {
            let b = Bulk::new(Priority::Normal, 4);
            assert!(!b.is_idle());
            #[cfg(target_os = "linux")]
            assert!(!b.run(current_policy_is_idle).await.expect("job"));
            let v = b.run(|| (1..=10u64).sum::<u64>()).await.expect("job");
            assert_eq!(v, 55);
        });
    }

    #[test]
    fn a_panicking_job_is_an_error_and_the_pool_survives() {
        rt().block_on(async {
            for p in [Priority::Idle, Priority::Normal] {
                let b = Bulk::new(p, 1);
                let e = b
                    .run(|| -> u32 { panic!("boom in job") })
                    .await
                    .expect_err("panic");
                assert!(e.to_string().contains("boom in job"), "{e}");
                assert_eq!(b.run(|| 7).await.expect("after panic"), 7);
            }
        });
    }

    #[test]
    fn a_started_job_runs_before_anyone_awaits_it() {
        rt().block_on(async {
            for p in [Priority::Idle, Priority::Normal] {
                let b = Bulk::new(p, 1);
                let (tx, rx) = std::sync::mpsc::channel();
                let job = b.start(move || {
                    tx.send(()).expect("send");
                    3
                });
                // Not awaited yet: the job must still run (read-ahead relies on it).
                let ran = tokio::task::spawn_blocking(move || {
                    rx.recv_timeout(std::time::Duration::from_secs(10)).is_ok()
                })
                .await
                .expect("wait");
                assert!(ran, "{p:?}: a started job did not run until awaited");
                assert_eq!(job.await.expect("result"), 3);
            }
        });
    }

    #[test]
    fn bulk_work_yields_only_while_idle_class_and_server_not_known_quiet() {
        rt().block_on(async {
            let b = Bulk::new(Priority::Idle, 1);
            assert!(b.yields(), "a server not yet sampled counts as busy");
            b.set_server_quiet(true);
            assert!(!b.yields());
            b.set_server_quiet(false);
            assert!(b.yields());
            b.escalate();
            assert!(!b.yields(), "escalated work never yields");
            assert!(!Bulk::new(Priority::Normal, 1).yields());
        });
    }

    #[test]
    fn io_jobs_never_wait_behind_cpu_jobs() {
        rt().block_on(async {
            let b = Bulk::with_io(Priority::Idle, 1, 1);
            assert!(b.idle_class_active(), "SCHED_IDLE refused");
            // Occupy the only CPU thread until released.
            let (release, hold) = std::sync::mpsc::channel::<()>();
            let cpu = b.start(move || {
                hold.recv_timeout(std::time::Duration::from_secs(30))
                    .is_ok()
            });
            let io = b.start_io(|| 5);
            let got = tokio::time::timeout(std::time::Duration::from_secs(10), io).await;
            assert_eq!(
                got.expect("the I/O job waited behind the CPU job")
                    .expect("result"),
                5
            );
            release.send(()).expect("release");
            assert!(cpu.await.expect("cpu job"));
            // Escalated: both kinds run at normal priority.
            b.escalate();
            assert_eq!(b.start_io(|| 6).await.expect("result"), 6);
        });
    }
}
