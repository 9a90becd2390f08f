//! The load monitor: while the data files are copied, every 500 ms
//! - the pacing controller ([`super::pacing`]) gets the latencies of the
//!   reads since the last round, the rate they achieved and the redo log's
//!   free space, and sets the read cap: reads slow down only while they
//!   measurably wait behind the server's own I/O;
//! - the server's activity (statements and redo per second) decides the
//!   CPU class of the bulk work (idle class while the server serves
//!   queries, so our page checks and compression take only CPU it leaves;
//!   this is about CPU, not the disk, and caps nothing).

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::datafiles::RateLimit;
use super::pacing::{self, Pacer, Reason};
use super::progress::Progress;
use crate::mysql::{Activity, ConnectOptions, Session};

/// Sampling interval.
pub const INTERVAL: Duration = Duration::from_millis(500);
/// Statements per second above which the server counts as busy (for the
/// CPU class). Our own sampling (this monitor and the redo follower)
/// stays far below.
pub const BUSY_QPS: f64 = 50.0;
/// The shortest gap between the sample taken before the copy and the
/// monitor's first for a throughput estimate worth acting on.
pub const MIN_GAP: Duration = Duration::from_millis(20);
/// Redo bytes per second above which the server counts as busy (bulk
/// writes with few statements).
pub const BUSY_REDO: f64 = 1_000_000.0;

/// The running monitor. [`Monitor::stop`] ends it and closes its
/// connection; dropping it (an error path) aborts it.
pub struct Monitor {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Summary>,
}

/// What the pacing did over the copy.
#[derive(Debug, Default, Clone)]
pub struct Summary {
    /// Rounds with a cap in force, and rounds in all.
    pub capped_rounds: u64,
    /// Rounds in all.
    pub rounds: u64,
    /// The lowest cap set, bytes/s.
    pub lowest: Option<u64>,
    /// The last reason the cap was set for.
    pub last_busy: Option<String>,
    /// Probes of the server's own throughput (intervals without reads).
    pub probes: u64,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let probes = match self.probes {
            0 => String::new(),
            n => format!(
                "; {n} probe{} of the server alone ({:.1}s without reads)",
                if n == 1 { "" } else { "s" },
                n as f64 * INTERVAL.as_secs_f64()
            ),
        };
        if self.capped_rounds == 0 {
            return write!(
                f,
                "reads never slowed the server (its I/O or its throughput): full speed{probes}"
            );
        }
        write!(
            f,
            "reads paced for {:.1}s of {:.1}s, lowest cap {} MB/s",
            self.capped_rounds as f64 * INTERVAL.as_secs_f64(),
            self.rounds as f64 * INTERVAL.as_secs_f64(),
            self.lowest.unwrap_or(0) / 1_000_000
        )?;
        f.write_str(&probes)?;
        if let Some(w) = &self.last_busy {
            write!(f, " ({w})")?;
        }
        Ok(())
    }
}

impl Monitor {
    /// Start on a connection of its own; `pacing` `None` leaves the reads
    /// uncapped (only `--max-rate` applies). `before` is a sample of the
    /// server's activity taken before the backup began to read (the
    /// throughput the pacing keeps).
    #[must_use]
    pub fn start(
        conn: ConnectOptions,
        limit: Arc<RateLimit>,
        exec: crate::sched::Bulk,
        progress: Arc<Progress>,
        pacing: Option<pacing::Config>,
        before: Option<(Instant, Activity)>,
    ) -> Monitor {
        let (tx, rx) = tokio::sync::oneshot::channel();
        Monitor {
            stop: Some(tx),
            task: tokio::spawn(run(conn, limit, exec, progress, pacing, before, rx)),
        }
    }

    /// Stop, wait for the connection to close, and say what the pacing did.
    pub async fn stop(mut self) -> Summary {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        (&mut self.task).await.unwrap_or_default()
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Statements per second other clients ran between two samples `dt`
/// apart (ours, the monitor's and the follower's, not counted).
#[must_use]
pub fn others_qps(prev: Activity, now: Activity, dt: Duration) -> f64 {
    let secs = dt.as_secs_f64().max(1e-3);
    let all = now.questions.saturating_sub(prev.questions);
    let ours = now.own.saturating_sub(prev.own);
    all.saturating_sub(ours) as f64 / secs
}

/// Whether the server was busy between two samples `dt` apart.
#[must_use]
pub fn busy(prev: Activity, now: Activity, dt: Duration) -> bool {
    let secs = dt.as_secs_f64().max(1e-3);
    let qps = others_qps(prev, now, dt);
    let redo = match (prev.lsn, now.lsn) {
        (Some(a), Some(b)) => b.saturating_sub(a) as f64 / secs,
        _ => 0.0,
    };
    qps > BUSY_QPS || redo > BUSY_REDO
}

/// Run until told to stop. Without a monitoring connection the CPU class
/// stays idle (the cautious choice); the pacing goes on, it needs none.
async fn run(
    conn: ConnectOptions,
    limit: Arc<RateLimit>,
    exec: crate::sched::Bulk,
    progress: Arc<Progress>,
    pacing: Option<pacing::Config>,
    before: Option<(Instant, Activity)>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) -> Summary {
    let mut session = match Session::connect(&conn).await {
        Ok(s) => Some(s),
        Err(e) => {
            progress.warn(&format!(
                "load monitor: {e}; the bulk work stays in the idle CPU class"
            ));
            exec.set_server_quiet(false);
            None
        }
    };
    let mut pacer = pacing.map(Pacer::new);
    let mut summary = Summary::default();
    let mut prev: Option<(Instant, Activity)> = None;
    let t0 = Instant::now();
    // What the server ran before we read anything: a busy server gets a
    // slow start (too short a gap to measure: no verdict).
    let mut started = false;
    let mut last_bytes = progress.bytes_done();
    let mut last_t = Instant::now();
    let mut last_kind: Option<std::mem::Discriminant<Reason>> = None;
    let mut last_said = Instant::now() - Duration::from_secs(60);
    loop {
        let mut serve = None;
        if let Some(s) = session.as_mut() {
            match s.activity().await {
                Ok(a) => {
                    let now = (Instant::now(), a);
                    if let Some((ta, a0)) = prev {
                        exec.set_server_quiet(!busy(a0, now.1, now.0 - ta));
                        serve = Some(others_qps(a0, now.1, now.0 - ta));
                    }
                    if !started {
                        started = true;
                        let pre = before
                            .filter(|(tb, _)| now.0.duration_since(*tb) >= MIN_GAP)
                            .map(|(tb, b)| others_qps(b, now.1, now.0 - tb));
                        if let Some(p) = pacer.as_mut() {
                            let d = p.start(pre);
                            if d.rate.is_some() {
                                limit.set_paced(d.rate);
                                progress.line(&d.describe());
                            }
                        }
                    }
                    prev = Some(now);
                }
                Err(e) => {
                    progress.warn(&format!(
                        "load monitor: {e}; the bulk work stays in the idle CPU class"
                    ));
                    exec.set_server_quiet(false);
                    session = None;
                }
            }
        }
        if let Some(p) = pacer.as_mut() {
            let now = Instant::now();
            let dt = now.duration_since(last_t).as_secs_f64().max(1e-3);
            let bytes = progress.bytes_done();
            let measured = bytes.saturating_sub(last_bytes) as f64 / dt;
            (last_bytes, last_t) = (bytes, now);
            let d = p.decide(
                t0.elapsed().as_secs_f64(),
                &limit.drain(),
                measured,
                Some(progress.redo_free()),
                serve,
            );
            limit.set_paced(d.rate);
            if d.pause {
                limit.pause(INTERVAL);
                summary.probes += 1;
            }
            summary.rounds += 1;
            if let Some(r) = d.rate {
                summary.capped_rounds += 1;
                summary.lowest = Some(summary.lowest.map_or(r, |l| l.min(r)));
            }
            let kind = std::mem::discriminant(&d.reason);
            if matches!(d.reason, Reason::Busy { .. } | Reason::Slower { .. }) {
                summary.last_busy = Some(d.describe());
            }
            // A line on every change of state, and every 5 s while busy.
            let hold = matches!(d.reason, Reason::Hold | Reason::Probed { .. });
            let changed = !hold && last_kind != Some(kind);
            let repeat = matches!(d.reason, Reason::Busy { .. } | Reason::Slower { .. })
                && last_said.elapsed() >= Duration::from_secs(5);
            if changed || repeat {
                progress.line(&d.describe());
                last_said = Instant::now();
            }
            if !hold {
                last_kind = Some(kind);
            }
        }
        tokio::select! {
            _ = &mut stop => {
                if let Some(s) = session.take() {
                    let _ = s.close().await;
                }
                limit.set_paced(None);
                return summary;
            }
            () = tokio::time::sleep(INTERVAL) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(questions: u64, lsn: Option<u64>) -> Activity {
        Activity {
            questions,
            own: 0,
            lsn,
        }
    }

    #[test]
    fn statements_or_redo_make_the_server_busy() {
        let s = Duration::from_secs(1);
        // Our own sampling: a few statements, no redo.
        assert!(!busy(a(100, Some(1000)), a(104, Some(1000)), s));
        // An OLTP load.
        assert!(busy(a(100, Some(1000)), a(5100, Some(3_000_000)), s));
        // Few statements, heavy redo (bulk load).
        assert!(busy(a(100, Some(0)), a(101, Some(20_000_000)), s));
        // Rates, not counts: 60 statements over 2 s is 30/s.
        assert!(!busy(a(0, None), a(60, None), Duration::from_secs(2)));
        assert!(busy(a(0, None), a(60, None), Duration::from_millis(500)));
        // Counters that went backwards (server restarted) are not a load.
        assert!(!busy(a(500, Some(9)), a(3, Some(1)), s));
    }
}
