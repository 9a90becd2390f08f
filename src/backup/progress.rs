//! Progress on stderr: files, bytes, rate, ETA and redo lag. A bar that
//! redraws in place on a terminal, plain lines otherwise; warnings always
//! go on their own line. With `--log-format json` ([`crate::events`]) the
//! same become `phase`, `message`, `lock`, `progress` and `warning` events.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::events;

/// Which progress display to show.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ProgressMode {
    /// A bar on a terminal, plain lines otherwise.
    #[default]
    Auto,
    /// Plain lines.
    Lines,
    /// Nothing but the summary.
    Quiet,
}

/// Shared counters.
pub struct Progress {
    started: Instant,
    mode: Mode,
    files_total: AtomicU64,
    files_done: AtomicU64,
    bytes_total: AtomicU64,
    bytes_done: AtomicU64,
    redo_copied: AtomicU64,
    redo_lag: AtomicU64,
    /// Redo headroom, per mille of the log's capacity (1000 until known).
    redo_free_permille: AtomicU64,
    phase: Mutex<String>,
    drawn: AtomicBool,
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

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Bar,
    Lines,
    Quiet,
}

/// Human-readable bytes.
#[must_use]
pub fn human(b: u64) -> String {
    const U: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut i = 0;
    while v >= 1024.0 && i < U.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", U[i])
    }
}

impl Progress {
    /// New progress for the chosen display.
    #[must_use]
    pub fn new(wanted: ProgressMode) -> Self {
        let json = events::is_json();
        let mode = match wanted {
            ProgressMode::Quiet => Mode::Quiet,
            ProgressMode::Lines => Mode::Lines,
            ProgressMode::Auto => {
                if std::io::stderr().is_terminal() && !json {
                    Mode::Bar
                } else {
                    Mode::Lines
                }
            }
        };
        Progress {
            started: Instant::now(),
            mode,
            files_total: AtomicU64::new(0),
            files_done: AtomicU64::new(0),
            bytes_total: AtomicU64::new(0),
            bytes_done: AtomicU64::new(0),
            redo_copied: AtomicU64::new(0),
            redo_lag: AtomicU64::new(0),
            redo_free_permille: AtomicU64::new(1000),
            phase: Mutex::new(String::from("starting")),
            drawn: AtomicBool::new(false),
            json,
            held: Mutex::new(Vec::new()),
            timings: Mutex::new(Vec::new()),
        }
    }

    /// Add work to the totals.
    pub fn add_total(&self, files: u64, bytes: u64) {
        self.files_total.fetch_add(files, Ordering::Relaxed);
        self.bytes_total.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Count copied bytes.
    pub fn add_bytes(&self, n: u64) {
        self.bytes_done.fetch_add(n, Ordering::Relaxed);
    }

    /// Count a finished file.
    pub fn file_done(&self) {
        self.files_done.fetch_add(1, Ordering::Relaxed);
    }

    /// Redo copied so far and the lag behind the server.
    pub fn set_redo(&self, copied: u64, lag: u64) {
        self.redo_copied.store(copied, Ordering::Relaxed);
        self.redo_lag.store(lag, Ordering::Relaxed);
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
        self.clear_bar();
        events::warn(w);
    }

    /// An informational line (suppressed in quiet mode; always a JSON event).
    pub fn line(&self, s: &str) {
        if self.mode == Mode::Quiet && !self.json {
            return;
        }
        self.clear_bar();
        events::line(
            format_args!(
                "hotbak: [{:7.1}s] {s}",
                self.started.elapsed().as_secs_f64()
            ),
            s,
        );
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

    fn clear_bar(&self) {
        if self.drawn.swap(false, Ordering::Relaxed) {
            eprint!("\r\x1b[2K");
        }
    }

    /// Every lock taken so far, in order, with its wait and hold times.
    #[must_use]
    pub fn lock_timings(&self) -> Vec<LockTiming> {
        self.timings.lock().map(|t| t.clone()).unwrap_or_default()
    }

    /// The counters now.
    #[must_use]
    pub fn sample(&self) -> events::Sample {
        let el = self.started.elapsed().as_secs_f64().max(0.001);
        let done = self.bytes_done.load(Ordering::Relaxed);
        // Files grow while they are copied: never show more than 100%.
        let total = self.bytes_total.load(Ordering::Relaxed).max(done);
        let rate = done as f64 / el;
        events::Sample {
            files_done: self.files_done.load(Ordering::Relaxed),
            files_total: self.files_total.load(Ordering::Relaxed),
            bytes_done: done,
            bytes_total: total,
            rate_bps: rate as u64,
            eta_s: (rate > 0.0 && total > done).then(|| ((total - done) as f64 / rate) as u64),
            redo_copied: self.redo_copied.load(Ordering::Relaxed),
            redo_lag: self.redo_lag.load(Ordering::Relaxed),
        }
    }

    /// One status line.
    #[must_use]
    pub fn status(&self) -> String {
        let el = self.started.elapsed().as_secs_f64().max(0.001);
        let s = self.sample();
        let rate = s.bytes_done as f64 / el;
        let eta = if rate > 0.0 && s.bytes_total > s.bytes_done {
            format!("{:.0}s", (s.bytes_total - s.bytes_done) as f64 / rate)
        } else {
            "-".into()
        };
        format!(
            "{}/{} files, {}/{} ({:.0}%), {}/s, ETA {}, redo copied {} lag {}",
            s.files_done,
            s.files_total,
            human(s.bytes_done),
            human(s.bytes_total),
            if s.bytes_total > 0 {
                s.bytes_done as f64 * 100.0 / s.bytes_total as f64
            } else {
                0.0
            },
            human(rate as u64),
            eta,
            human(s.redo_copied),
            human(s.redo_lag),
        )
    }

    /// Seconds since start.
    #[must_use]
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Bytes copied.
    #[must_use]
    pub fn bytes_done(&self) -> u64 {
        self.bytes_done.load(Ordering::Relaxed)
    }

    /// Draw once (called by the ticker).
    pub fn tick(&self) {
        if self.json {
            if self.mode != Mode::Quiet {
                events::progress("backup", &self.sample());
            }
            return;
        }
        match self.mode {
            Mode::Quiet => {}
            Mode::Lines => eprintln!(
                "hotbak: [{:7.1}s] {}",
                self.started.elapsed().as_secs_f64(),
                self.status()
            ),
            Mode::Bar => {
                let total = self.bytes_total.load(Ordering::Relaxed).max(1);
                let done = self.bytes_done.load(Ordering::Relaxed).min(total);
                let w = 24usize;
                let fill = usize::try_from(done * w as u64 / total).unwrap_or(w).min(w);
                eprint!(
                    "\r\x1b[2K[{}{}] {}",
                    "#".repeat(fill),
                    " ".repeat(w - fill),
                    self.status()
                );
                let _ = std::io::stderr().flush();
                self.drawn.store(true, Ordering::Relaxed);
            }
        }
    }

    /// Interval between ticks for this mode.
    #[must_use]
    pub fn interval(&self) -> Duration {
        match self.mode {
            Mode::Bar => Duration::from_millis(250),
            _ if self.json => Duration::from_secs(2),
            _ => Duration::from_secs(5),
        }
    }

    /// Stop drawing (JSON: one last progress sample).
    pub fn done(&self) {
        self.clear_bar();
        if self.json && self.mode != Mode::Quiet {
            events::progress("backup", &self.sample());
        }
    }
}
