//! The progress display of the long commands (backup, restore, verify):
//! one [`Meter`] of shared counters the workers update, and one
//! [`Display`] that shows it on stderr in the chosen mode:
//!
//! - **bar** (`--progress auto` with stderr on a terminal): an `indicatif`
//!   bar redrawn in place, laid out for the terminal's width by the pure
//!   [`view::bar_line`]; every text line printed meanwhile (through
//!   [`crate::events`]) goes above it, with the bar cleared and redrawn
//!   (`ProgressBar::suspend`), so lines and bar never interleave;
//! - **lines** (`--progress lines`, or `auto` when stderr is not a
//!   terminal): a status line every 5 seconds and one at the end, each line
//!   of the display starting with the UTC wall-clock time as the server's
//!   error log writes it (`2026-12-05 06:30:01`), so they can be matched;
//! - **none**: nothing but what the command prints at its end;
//! - **JSON** (`--log-format json`, whatever `--progress` says but `none`):
//!   a `progress` event every 2 seconds and one at the end, success or not.
//!
//! What is shown from a sample is decided in [`view`] (pure, unit-tested);
//! this module does the terminal I/O and the timing ([`Ticker`]).

pub mod view;

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::events::{self, Sample};
pub use view::human;
use view::View;

/// Which progress display to show (`--progress`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ProgressMode {
    /// A bar on a terminal, lines otherwise.
    #[default]
    Auto,
    /// Timestamped lines.
    Lines,
    /// Nothing but the summary.
    Quiet,
}

/// The counters of one command, updated from any thread.
pub struct Meter {
    started: Instant,
    files_total: AtomicU64,
    files_done: AtomicU64,
    bytes_total: AtomicU64,
    bytes_done: AtomicU64,
    redo_copied: AtomicU64,
    redo_lag: AtomicU64,
}

impl Default for Meter {
    fn default() -> Self {
        Meter {
            started: Instant::now(),
            files_total: AtomicU64::new(0),
            files_done: AtomicU64::new(0),
            bytes_total: AtomicU64::new(0),
            bytes_done: AtomicU64::new(0),
            redo_copied: AtomicU64::new(0),
            redo_lag: AtomicU64::new(0),
        }
    }
}

impl Meter {
    /// Add work to the totals (a total of 0 bytes stays unknown: no
    /// percentage, bar or ETA).
    pub fn add_total(&self, files: u64, bytes: u64) {
        self.files_total.fetch_add(files, Ordering::Relaxed);
        self.bytes_total.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Count bytes done.
    pub fn add_bytes(&self, n: u64) {
        self.bytes_done.fetch_add(n, Ordering::Relaxed);
    }

    /// Count a finished file.
    pub fn file_done(&self) {
        self.files_done.fetch_add(1, Ordering::Relaxed);
    }

    /// Redo copied so far and the lag behind the server (backup).
    pub fn set_redo(&self, copied: u64, lag: u64) {
        self.redo_copied.store(copied, Ordering::Relaxed);
        self.redo_lag.store(lag, Ordering::Relaxed);
    }

    /// Bytes done.
    #[must_use]
    pub fn bytes_done(&self) -> u64 {
        self.bytes_done.load(Ordering::Relaxed)
    }

    /// Time since the meter was made.
    #[must_use]
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// The counters now. Totals grow while files are listed (and files grow
    /// while they are copied): the total is never below what is done. An
    /// unknown byte total (0) stays 0 in the sample's view and is reported
    /// as what is done so far in events.
    #[must_use]
    pub fn sample(&self) -> Sample {
        let el = self.started.elapsed().as_secs_f64().max(0.001);
        let done = self.bytes_done();
        let raw_total = self.bytes_total.load(Ordering::Relaxed);
        let total = if raw_total == 0 {
            0
        } else {
            raw_total.max(done)
        };
        let rate = done as f64 / el;
        Sample {
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
}

enum Kind {
    Bar(ProgressBar),
    Lines,
    Quiet,
    /// JSON events; `samples`: `progress` events too (not with `none`).
    Json {
        samples: bool,
    },
}

/// The display of one command's [`Meter`] on stderr.
pub struct Display {
    /// The command: the `what` of the JSON `progress` event, the label of
    /// the status lines.
    what: &'static str,
    redo: bool,
    kind: Kind,
    meter: Meter,
    finished: AtomicBool,
}

impl Display {
    /// A display for `what` (`backup`, `restore`, `verify`) in `mode`;
    /// `redo`: show the redo copied and the lag (a backup). A bar takes
    /// over the text lines of [`crate::events`] until [`Display::finish`].
    #[must_use]
    pub fn new(what: &'static str, mode: ProgressMode, redo: bool) -> Self {
        let kind = if events::is_json() {
            Kind::Json {
                samples: mode != ProgressMode::Quiet,
            }
        } else {
            match mode {
                ProgressMode::Quiet => Kind::Quiet,
                ProgressMode::Lines => Kind::Lines,
                ProgressMode::Auto if std::io::stderr().is_terminal() => Kind::Bar(bar()),
                ProgressMode::Auto => Kind::Lines,
            }
        };
        Display {
            what,
            redo,
            kind,
            meter: Meter::default(),
            finished: AtomicBool::new(false),
        }
    }

    /// The counters.
    #[must_use]
    pub fn meter(&self) -> &Meter {
        &self.meter
    }

    /// The sample as the display sees it.
    fn view(&self) -> View {
        View {
            sample: self.meter.sample(),
            redo: self.redo,
        }
    }

    fn elapsed(&self) -> String {
        view::elapsed(self.meter.elapsed().as_secs_f64())
    }

    /// Draw once (the [`Ticker`] calls it); nothing after [`Display::finish`].
    pub fn tick(&self) {
        if !self.finished.load(Ordering::Relaxed) {
            self.draw();
        }
    }

    fn draw(&self) {
        match &self.kind {
            Kind::Quiet | Kind::Json { samples: false } => {}
            Kind::Json { samples: true } => {
                let mut s = self.meter.sample();
                // The event's total is what is known so far, never unknown.
                s.bytes_total = s.bytes_total.max(s.bytes_done);
                s.files_total = s.files_total.max(s.files_done);
                events::progress(self.what, &s);
            }
            Kind::Lines => events::text(format_args!(
                "{} {}: {} {}: {}",
                view::timestamp(chrono::Utc::now()),
                events::tool(),
                self.elapsed(),
                self.what,
                view::status(&self.view())
            )),
            Kind::Bar(pb) => {
                let (_, cols) = console::Term::stderr().size();
                pb.set_message(view::bar_line(&self.view(), usize::from(cols)));
            }
        }
    }

    /// An informational line: `TOOL: [  12.3s] TEXT` (timestamped in lines
    /// mode, above the bar in bar mode, nothing with `none`); a `message`
    /// event in JSON mode.
    pub fn line(&self, text: &str) {
        match &self.kind {
            Kind::Quiet => {}
            Kind::Lines => events::line(
                format_args!(
                    "{} {}: {} {text}",
                    view::timestamp(chrono::Utc::now()),
                    events::tool(),
                    self.elapsed()
                ),
                text,
            ),
            Kind::Bar(_) | Kind::Json { .. } => events::line(
                format_args!("{}: {} {text}", events::tool(), self.elapsed()),
                text,
            ),
        }
    }

    /// A warning, in every mode (timestamped in lines mode).
    pub fn warn(&self, text: &str) {
        match &self.kind {
            Kind::Lines => events::warn_line(
                format_args!(
                    "{} {}: warning: {text}",
                    view::timestamp(chrono::Utc::now()),
                    events::tool()
                ),
                text,
            ),
            _ => events::warn(text),
        }
    }

    /// Interval between ticks.
    #[must_use]
    pub fn interval(&self) -> Duration {
        match self.kind {
            Kind::Bar(_) => Duration::from_millis(250),
            Kind::Json { .. } => Duration::from_secs(2),
            Kind::Lines | Kind::Quiet => Duration::from_secs(5),
        }
    }

    /// The end, success or not (once; later calls do nothing): the bar is
    /// cleared and gives the text lines back; lines mode prints one last
    /// status line and JSON one last `progress` event, so a log shows how
    /// far the command got.
    pub fn finish(&self) {
        if self.finished.swap(true, Ordering::Relaxed) {
            return;
        }
        match &self.kind {
            Kind::Bar(pb) => {
                pb.finish_and_clear();
                events::set_text_guard(None);
            }
            Kind::Lines | Kind::Json { samples: true } => self.draw(),
            Kind::Quiet | Kind::Json { samples: false } => {}
        }
    }

    /// Draw every [`Display::interval`] on a thread of its own until the
    /// returned [`Ticker`] is dropped.
    #[must_use]
    pub fn start(self: &Arc<Self>) -> Ticker {
        let (stop, rx) = mpsc::channel::<()>();
        let d = Arc::clone(self);
        let thread = std::thread::Builder::new()
            .name("hotbak-progress".into())
            .spawn(move || {
                let iv = d.interval();
                while let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(iv) {
                    d.tick();
                }
            })
            .ok();
        Ticker {
            stop: Some(stop),
            thread,
        }
    }
}

impl Drop for Display {
    fn drop(&mut self) {
        // Never leave the text lines routed through a bar that is gone.
        if let Kind::Bar(pb) = &self.kind {
            if !self.finished.swap(true, Ordering::Relaxed) {
                pb.finish_and_clear();
                events::set_text_guard(None);
            }
        }
    }
}

/// The bar: `indicatif` draws our line (`{msg}`) on stderr at most 4 times
/// a second, and every text line goes above it.
fn bar() -> ProgressBar {
    let pb = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(4));
    if let Ok(style) = ProgressStyle::with_template("{msg}") {
        pb.set_style(style);
    }
    let above = pb.clone();
    events::set_text_guard(Some(Arc::new(move |print: &mut dyn FnMut()| {
        above.suspend(&mut *print);
    })));
    pb
}

/// The thread that draws a [`Display`]; dropping it stops the thread.
pub struct Ticker {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Ticker {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// An `AsyncRead` that counts what passes through it into a [`Meter`]
/// (the stream modes' bytes done).
pub struct Counted<R> {
    inner: R,
    display: Arc<Display>,
}

impl<R> Counted<R> {
    /// Count `inner`'s bytes in `display`'s meter.
    pub fn new(inner: R, display: Arc<Display>) -> Self {
        Counted { inner, display }
    }
}

impl<R: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Counted<R> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len().saturating_sub(before);
        self.display.meter().add_bytes(n as u64);
        r
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_meter_never_shows_more_done_than_known() {
        let m = Meter::default();
        m.add_total(2, 100);
        m.add_bytes(150);
        m.file_done();
        let s = m.sample();
        assert_eq!((s.bytes_done, s.bytes_total, s.eta_s), (150, 150, None));
        assert_eq!((s.files_done, s.files_total), (1, 2));
        let unknown = Meter::default();
        unknown.add_bytes(10);
        assert_eq!(
            unknown.sample().bytes_total,
            0,
            "an unknown total stays unknown"
        );
    }

    #[tokio::test]
    async fn counted_counts_what_it_reads() {
        use tokio::io::AsyncReadExt;
        let d = Arc::new(Display::new("verify", ProgressMode::Quiet, false));
        let mut r = Counted::new(&[7u8; 10_000][..], d.clone());
        let mut out = Vec::new();
        r.read_to_end(&mut out).await.unwrap();
        assert_eq!(out.len(), 10_000);
        assert_eq!(d.meter().bytes_done(), 10_000);
    }

    #[test]
    fn the_ticker_stops_when_dropped() {
        let d = Arc::new(Display::new("verify", ProgressMode::Quiet, false));
        let t = d.start();
        let started = Instant::now();
        drop(t);
        assert!(started.elapsed() < Duration::from_secs(2), "joined at once");
        assert_eq!(Arc::strong_count(&d), 1, "the thread let go of the display");
    }
}
