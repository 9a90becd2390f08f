//! The backup's progress: the shared display ([`crate::progress`]: a bar on
//! a terminal, timestamped lines otherwise, JSON events) with what only a
//! backup has: the phase, the server locks held and the redo log's free
//! space. With `--log-format json` ([`crate::events`]) phases and locks
//! become `phase` and `lock` events.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::events;
pub use crate::progress::{human, ProgressMode};
use crate::progress::{Display, Ticker};

/// The backup's counters and display.
pub struct Progress {
    display: Arc<Display>,
    /// Redo headroom, per mille of the log's capacity (1000 until known).
    redo_free_permille: AtomicU64,
    phase: Mutex<String>,
    /// JSON events instead of text ([`crate::events::is_json`]).
    json: bool,
    /// Locks held: name and when taken.
    held: Mutex<Vec<(&'static str, Instant)>>,
    /// Every lock taken this run, with its wait and (once released) hold.
    timings: Mutex<Vec<LockTiming>>,
}

/// One lock of a backup: how long it was waited for and held.
#[derive(Clone, Debug, PartialEq)]
pub struct LockTiming {
    /// The statement (`BACKUP STAGE BLOCK_DDL`, `FLUSH TABLES WITH READ LOCK`, …).
    pub stage: &'static str,
    /// Time from asking to holding it.
    pub waited: Duration,
    /// Time held (`None`: never released, the run failed).
    pub held: Option<Duration>,
}

impl Progress {
    /// New progress for the chosen display.
    #[must_use]
    pub fn new(wanted: ProgressMode) -> Self {
        Progress {
            display: Arc::new(Display::new("backup", wanted, true)),
            redo_free_permille: AtomicU64::new(1000),
            phase: Mutex::new(String::from("starting")),
            json: events::is_json(),
            held: Mutex::new(Vec::new()),
            timings: Mutex::new(Vec::new()),
        }
    }

    /// Draw on a thread of its own until the [`Ticker`] is dropped.
    #[must_use]
    pub fn start(&self) -> Ticker {
        self.display.start()
    }

    /// Add work to the totals.
    pub fn add_total(&self, files: u64, bytes: u64) {
        self.display.meter().add_total(files, bytes);
    }

    /// Count copied bytes.
    pub fn add_bytes(&self, n: u64) {
        self.display.meter().add_bytes(n);
    }

    /// Count a finished file.
    pub fn file_done(&self) {
        self.display.meter().file_done();
    }

    /// Redo copied so far and the lag behind the server.
    pub fn set_redo(&self, copied: u64, lag: u64) {
        self.display.meter().set_redo(copied, lag);
    }

    /// Record the redo log's free space (headroom over capacity).
    pub fn set_redo_headroom(&self, headroom: u64, capacity: u64) {
        let pm = if capacity == 0 {
            1000
        } else {
            (u128::from(headroom) * 1000 / u128::from(capacity)).min(1000) as u64
        };
        self.redo_free_permille.store(pm, Ordering::Relaxed);
    }

    /// The redo log's free fraction (0..=1) as last recorded.
    #[must_use]
    pub fn redo_free(&self) -> f64 {
        self.redo_free_permille.load(Ordering::Relaxed) as f64 / 1000.0
    }

    /// Announce a phase: `name` is its stable name in the JSON `phase`
    /// event (`format-spec/events.md`), `p` the line shown (always its own
    /// line, except in quiet mode).
    pub fn phase(&self, name: &'static str, p: &str) {
        if let Ok(mut g) = self.phase.lock() {
            p.clone_into(&mut g);
        }
        if self.json {
            events::phase(name, p);
        } else {
            self.line(p);
        }
    }

    /// A warning line.
    pub fn warn(&self, w: &str) {
        self.display.warn(w);
    }

    /// An informational line (suppressed in quiet mode; always a JSON event).
    pub fn line(&self, s: &str) {
        self.display.line(s);
    }

    /// A server lock was taken (`lock`: its name in the `lock` event) after
    /// waiting `waited`; `text` is the line shown.
    pub fn lock_taken(&self, lock: &'static str, waited: Duration, text: &str) {
        if let Ok(mut h) = self.held.lock() {
            h.push((lock, Instant::now()));
        }
        if let Ok(mut t) = self.timings.lock() {
            t.push(LockTiming {
                stage: lock,
                waited,
                held: None,
            });
        }
        if self.json {
            events::lock_taken(lock, waited.as_secs_f64(), text);
        } else {
            self.line(text);
        }
    }

    /// Every lock taken is released (latest first, each with the time it
    /// was held); `text` is the line shown.
    pub fn locks_released(&self, text: &str) {
        let held = self.held.lock().map(|mut h| std::mem::take(&mut *h));
        if let (Ok(held), Ok(mut t)) = (&held, self.timings.lock()) {
            for (lock, at) in held {
                if let Some(x) = t
                    .iter_mut()
                    .rev()
                    .find(|x| x.stage == *lock && x.held.is_none())
                {
                    x.held = Some(at.elapsed());
                }
            }
        }
        if self.json {
            for (lock, at) in held.unwrap_or_default().into_iter().rev() {
                events::lock_released(lock, at.elapsed().as_secs_f64());
            }
        }
        self.line(text);
    }

    /// Every lock taken so far, in order, with its wait and hold times.
    #[must_use]
    pub fn lock_timings(&self) -> Vec<LockTiming> {
        self.timings.lock().map(|t| t.clone()).unwrap_or_default()
    }

    /// The counters now.
    #[must_use]
    pub fn sample(&self) -> events::Sample {
        self.display.meter().sample()
    }

    /// Time since start.
    #[must_use]
    pub fn elapsed(&self) -> Duration {
        self.display.meter().elapsed()
    }

    /// Bytes copied.
    #[must_use]
    pub fn bytes_done(&self) -> u64 {
        self.display.meter().bytes_done()
    }

    /// Stop drawing, success or failure: the bar is cleared; lines mode
    /// prints the last status line, JSON the last `progress` event.
    pub fn done(&self) {
        self.display.finish();
    }
}
