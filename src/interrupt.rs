//! SIGINT, SIGTERM and SIGHUP as values the engines can wait for, so that
//! a closed terminal, Ctrl-C or `timeout` ends a command cleanly instead of
//! killing it: the backup releases its locks and restarts a replica's SQL
//! thread, xbextract removes its staging directory, a `mariadbd` we started
//! is stopped.
//!
//! [`install`] (at the binaries' edge, inside the runtime) replaces the
//! default action of the three signals; [`wait`] resolves once one came;
//! [`received`] polls. Child processes registered with [`track_child`] get
//! SIGTERM from [`terminate_children`].

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use tokio::sync::watch;

use crate::error::{Classify, ErrorClass};

/// One of the signals that end a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// SIGINT (Ctrl-C).
    Int,
    /// SIGTERM (`kill`, `timeout`, systemd).
    Term,
    /// SIGHUP (the terminal closed).
    Hup,
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Signal::Int => "SIGINT",
            Signal::Term => "SIGTERM",
            Signal::Hup => "SIGHUP",
        })
    }
}

/// The command was stopped by a signal.
#[derive(Debug, thiserror::Error)]
#[error("interrupted by {0}")]
pub struct Interrupted(pub Signal);

impl Classify for Interrupted {
    fn class(&self) -> ErrorClass {
        ErrorClass::Interrupted
    }
}

fn slot() -> &'static watch::Sender<Option<Signal>> {
    static SLOT: OnceLock<watch::Sender<Option<Signal>>> = OnceLock::new();
    SLOT.get_or_init(|| watch::channel(None).0)
}

static DELIVERIES: AtomicU64 = AtomicU64::new(0);

/// How many signals were delivered so far (a second one ends the cleanup).
#[must_use]
pub fn deliveries() -> u64 {
    DELIVERIES.load(Ordering::Relaxed)
}

fn children() -> &'static Mutex<Vec<u32>> {
    static CHILDREN: OnceLock<Mutex<Vec<u32>>> = OnceLock::new();
    CHILDREN.get_or_init(|| Mutex::new(Vec::new()))
}

/// Listen for SIGINT, SIGTERM and SIGHUP (call once, inside a Tokio
/// runtime). From here on they no longer kill the process.
///
/// # Errors
/// The signal handlers cannot be registered.
#[cfg(unix)]
pub fn install() -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    for (kind, sig) in [
        (SignalKind::interrupt(), Signal::Int),
        (SignalKind::terminate(), Signal::Term),
        (SignalKind::hangup(), Signal::Hup),
    ] {
        let mut stream = signal(kind)?;
        tokio::spawn(async move {
            while stream.recv().await.is_some() {
                DELIVERIES.fetch_add(1, Ordering::Relaxed);
                slot().send_replace(Some(sig));
            }
        });
    }
    Ok(())
}

/// Record a signal as if it had been received (tests of the engines).
pub fn raise(sig: Signal) {
    slot().send_replace(Some(sig));
}

/// The signal received, if any.
#[must_use]
pub fn received() -> Option<Signal> {
    *slot().borrow()
}

/// Resolves when a signal has been received (never, if none comes).
pub async fn wait() -> Signal {
    let mut rx = slot().subscribe();
    loop {
        if let Some(s) = *rx.borrow_and_update() {
            return s;
        }
        if rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// `Err(Interrupted)` once a signal was received (for loops that poll).
///
/// # Errors
/// [`Interrupted`] with the signal.
pub fn check() -> Result<(), Interrupted> {
    received().map_or(Ok(()), |s| Err(Interrupted(s)))
}

/// Register a child process to be stopped when a signal comes.
pub fn track_child(pid: u32) {
    if let Ok(mut c) = children().lock() {
        c.push(pid);
    }
}

/// Forget a child (it exited or was stopped).
pub fn untrack_child(pid: u32) {
    if let Ok(mut c) = children().lock() {
        c.retain(|p| *p != pid);
    }
}

/// SIGTERM to every tracked child (a `mariadbd` shuts down cleanly on it).
pub fn terminate_children() {
    let pids = children().lock().map(|c| c.clone()).unwrap_or_default();
    for pid in pids {
        crate::sys::terminate(pid);
    }
}
