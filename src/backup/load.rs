//! The load monitor: while the data files are copied, sample the server's
//! activity twice a second and cap the read rate while it serves queries
//! (`--max-rate-busy`), so a backup of a busy server leaves it most of the
//! disk. An idle server is copied at full speed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::datafiles::RateLimit;
use super::progress::Progress;
use crate::mysql::{Activity, ConnectOptions, Session};

/// Sampling interval.
pub const INTERVAL: Duration = Duration::from_millis(500);
/// Statements per second above which the server counts as busy. Our own
/// sampling (this monitor and the redo follower) stays far below.
pub const BUSY_QPS: f64 = 50.0;
/// Redo bytes per second above which the server counts as busy (bulk
/// writes with few statements).
pub const BUSY_REDO: f64 = 1_000_000.0;

/// The running monitor. [`Monitor::stop`] ends it and closes its
/// connection; dropping it (an error path) aborts it.
pub struct Monitor {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Monitor {
    /// Start sampling on a connection of its own.
    #[must_use]
    pub fn start(
        conn: ConnectOptions,
        limit: Arc<RateLimit>,
        exec: crate::sched::Bulk,
        progress: Arc<Progress>,
    ) -> Monitor {
        let (tx, rx) = tokio::sync::oneshot::channel();
        Monitor {
            stop: Some(tx),
            task: tokio::spawn(run(conn, limit, exec, progress, rx)),
        }
    }

    /// Stop and wait for the connection to close.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.task).await;
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Whether the server was busy between two samples `dt` apart.
#[must_use]
pub fn busy(prev: Activity, now: Activity, dt: Duration) -> bool {
    let secs = dt.as_secs_f64().max(1e-3);
    let qps = now.questions.saturating_sub(prev.questions) as f64 / secs;
    let redo = match (prev.lsn, now.lsn) {
        (Some(a), Some(b)) => b.saturating_sub(a) as f64 / secs,
        _ => 0.0,
    };
    qps > BUSY_QPS || redo > BUSY_REDO
}

/// Run until told to stop. On a connection or query failure the server is
/// assumed busy (the cautious choice) and the monitor stops.
async fn run(
    conn: ConnectOptions,
    limit: Arc<RateLimit>,
    exec: crate::sched::Bulk,
    progress: Arc<Progress>,
    stop: tokio::sync::oneshot::Receiver<()>,
) {
    if let Err(e) = sample(&conn, &limit, &exec, &progress, stop).await {
        limit.set_busy(true);
        exec.set_server_quiet(false);
        progress.warn(&format!(
            "load monitor: {e}; capping reads at {} MB/s from now on",
            limit.rate() / 1_000_000
        ));
    }
}

async fn sample(
    conn: &ConnectOptions,
    limit: &RateLimit,
    exec: &crate::sched::Bulk,
    progress: &Progress,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) -> Result<(), crate::mysql::Error> {
    let mut s = Session::connect(conn).await?;
    let mut prev: Option<(Instant, Activity)> = None;
    let mut was_busy = false;
    loop {
        let activity = s.activity().await?;
        let now = (Instant::now(), activity);
        if let Some((t0, a0)) = prev {
            let b = busy(a0, now.1, now.0 - t0);
            exec.set_server_quiet(!b);
            if b != was_busy {
                was_busy = b;
                limit.set_busy(b);
                if b {
                    progress.line(&format!(
                        "server busy: data-file reads capped at {} MB/s (--max-rate-busy)",
                        limit.rate() / 1_000_000
                    ));
                } else {
                    progress.line("server idle: data-file reads at full speed");
                }
            }
        }
        prev = Some(now);
        tokio::select! {
            _ = &mut stop => {
                let _ = s.close().await;
                return Ok(());
            }
            () = tokio::time::sleep(INTERVAL) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(questions: u64, lsn: Option<u64>) -> Activity {
        Activity { questions, lsn }
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
