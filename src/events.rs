//! The one place the commands write their log to stderr: text lines as
//! they always were, or (`--log-format json`) one JSON object per line,
//! emitted as `tracing` events and written by [`JsonLayer`].
//!
//! The format is chosen once, at the binaries' edge ([`init`]); engines
//! call the functions here (or the progress display of the `progress` module,
//! which calls them) and never look at the format themselves. The event types
//! and their fields are documented in `format-spec/events.md`; the schema
//! version is [`SCHEMA_VERSION`].
//!
//! Text mode writes with `eprintln!` directly, as before: it needs no
//! subscriber, so engines called as a library (and the tests that call
//! them) print exactly what the binaries print.

use std::fmt::Display;
use std::io::Write;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Instant;

use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::Layer;

/// The JSON schema's version: the `"v"` field of every event. Bumped when
/// a field changes meaning or disappears (new fields and event types do
/// not bump it).
pub const SCHEMA_VERSION: u64 = 1;

/// The `tracing` target of every event; [`JsonLayer`] writes only these.
pub const TARGET: &str = "hotbak::events";

/// How the log is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Format {
    /// Lines of text (the default).
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl Format {
    /// `text` or `json` (case-insensitive).
    #[must_use]
    pub fn parse(s: &str) -> Option<Format> {
        match s.to_ascii_lowercase().as_str() {
            "text" => Some(Format::Text),
            "json" => Some(Format::Json),
            _ => None,
        }
    }
}

struct State {
    tool: String,
    format: Format,
    started: Instant,
}

static STATE: OnceLock<State> = OnceLock::new();

fn state() -> &'static State {
    STATE.get_or_init(|| State {
        tool: "hotbak".into(),
        format: Format::Text,
        started: Instant::now(),
    })
}

/// Choose the format and the tool name (`hotbak`, `xbextract`) once per
/// process; later calls change nothing. JSON installs the `tracing`
/// subscriber with [`JsonLayer`].
pub fn init(tool: &str, format: Format) {
    let first = STATE
        .set(State {
            tool: tool.to_owned(),
            format,
            started: Instant::now(),
        })
        .is_ok();
    if first && format == Format::Json {
        let sub = tracing_subscriber::registry().with(JsonLayer);
        // Another subscriber (a host program's) wins: nothing to do then.
        let _ = tracing::subscriber::set_global_default(sub);
    }
}

/// Whether events are JSON.
#[must_use]
pub fn is_json() -> bool {
    state().format == Format::Json
}

/// The tool name given to [`init`] (`hotbak` by default).
#[must_use]
pub fn tool() -> &'static str {
    &state().tool
}

/// Seconds since [`init`].
fn elapsed() -> f64 {
    state().started.elapsed().as_secs_f64()
}

/// What text mode prints through while a progress bar is drawn: it takes
/// the printing and runs it with the bar cleared, then draws the bar again
/// below the line (the progress display's `suspend`).
pub type TextGuard = Arc<dyn Fn(&mut dyn FnMut()) + Send + Sync>;

static GUARD: RwLock<Option<TextGuard>> = RwLock::new(None);

/// Route every text line through `guard` (a progress bar is drawn), or
/// print them directly again (`None`: the bar is gone).
pub fn set_text_guard(guard: Option<TextGuard>) {
    let mut g = GUARD
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    *g = guard;
}

/// One line on stderr in text mode, above the progress bar when one is drawn.
fn print_text(line: impl Display) {
    let guard = GUARD
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    match guard {
        Some(g) => g(&mut || eprintln!("{line}")),
        None => eprintln!("{line}"),
    }
}

/// A raw text line, in text mode only (a part of a multi-line display
/// whose JSON form is its own event).
pub fn text(line: impl Display) {
    if !is_json() {
        print_text(line);
    }
}

/// An informational message: `TOOL: MSG` in text mode, a `message` event.
pub fn info(msg: impl Display) {
    say(false, format_args!("{}: {msg}", tool()), &msg);
}

/// A message already formatted for text mode as `line` (the progress
/// display's `[  12.3s]` lines); `msg` is its JSON `message`.
pub fn line(line: impl Display, msg: impl Display) {
    say(false, line, msg);
}

/// A warning: `TOOL: warning: MSG`, a `warning` event.
pub fn warn(msg: impl Display) {
    say(true, format_args!("{}: warning: {msg}", tool()), &msg);
}

/// A warning already formatted for text mode as `line` (the progress
/// display's timestamped lines); `msg` is its JSON `message`.
pub fn warn_line(line: impl Display, msg: impl Display) {
    say(true, line, msg);
}

/// `line` in text mode; a `message` or `warning` event with `msg`.
fn say(warning: bool, line: impl Display, msg: impl Display) {
    if !is_json() {
        print_text(line);
    } else if warning {
        tracing::warn!(target: TARGET, event = "warning", message = %msg);
    } else {
        tracing::info!(target: TARGET, event = "message", message = %msg);
    }
}

/// A phase begins (JSON only: text mode prints its line through [`line`]).
pub fn phase(name: &str, msg: impl Display) {
    tracing::info!(target: TARGET, event = "phase", phase = name, message = %msg);
}

/// A lock was taken after waiting `waited_s` (JSON only).
pub fn lock_taken(lock: &str, waited_s: f64, msg: impl Display) {
    tracing::info!(target: TARGET, event = "lock", action = "taken", lock, waited_s, message = %msg);
}

/// A lock was released after `held_s` (JSON only).
pub fn lock_released(lock: &str, held_s: f64) {
    tracing::info!(target: TARGET, event = "lock", action = "released", lock, held_s);
}

/// One sample of a copy's progress.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Sample {
    /// Files finished.
    pub files_done: u64,
    /// Files known so far.
    pub files_total: u64,
    /// Bytes copied.
    pub bytes_done: u64,
    /// Bytes known so far.
    pub bytes_total: u64,
    /// Bytes per second since the start.
    pub rate_bps: u64,
    /// Seconds left at that rate (None: unknown).
    pub eta_s: Option<u64>,
    /// Redo bytes copied (backup only).
    pub redo_copied: u64,
    /// Redo bytes the copy is behind the server (backup only).
    pub redo_lag: u64,
}

/// A progress sample (JSON only).
pub fn progress(what: &str, s: &Sample) {
    tracing::info!(
        target: TARGET,
        event = "progress",
        what,
        files_done = s.files_done,
        files_total = s.files_total,
        bytes_done = s.bytes_done,
        bytes_total = s.bytes_total,
        rate_bps = s.rate_bps,
        eta_s = s.eta_s,
        redo_copied = s.redo_copied,
        redo_lag = s.redo_lag,
    );
}

/// The last event of every run: the exit code and `ok` or the error
/// class; text mode prints `TOOL: error: MSG` for a failure and nothing
/// for a success (the command printed its `completed OK!` already).
pub fn summary(exit_code: i32, status: &str, error: Option<&str>) {
    if is_json() {
        let elapsed_s = elapsed();
        if let Some(e) = error {
            tracing::error!(target: TARGET, event = "summary", status, exit_code, elapsed_s, message = e);
        } else {
            tracing::info!(target: TARGET, event = "summary", status, exit_code, elapsed_s);
        }
    } else if let Some(e) = error {
        print_text(format_args!("{}: error: {e}", tool()));
    }
}

/// The `tracing` layer that writes each of our events as one flat JSON
/// object on one line of stderr: `v`, `ts`, `tool`, `level`, `event`, then
/// the event's own fields in call order. Events of other targets (the
/// libraries') are dropped.
pub struct JsonLayer;

impl<S: tracing::Subscriber> Layer<S> for JsonLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        if event.metadata().target() != TARGET {
            return;
        }
        let mut fields = Fields(Vec::new());
        event.record(&mut fields);
        let line = render(
            &chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            tool(),
            event.metadata().level().as_str(),
            &fields.0,
        );
        let mut err = std::io::stderr().lock();
        // A closed stderr loses the log, not the run.
        let _ = err.write_all(line.as_bytes());
    }
}

/// One event as its line (with the newline). Pure.
#[must_use]
pub fn render(ts: &str, tool: &str, level: &str, fields: &[(String, serde_json::Value)]) -> String {
    use serde_json::Value;
    let head = [
        ("v", Value::from(SCHEMA_VERSION)),
        ("ts", Value::from(ts)),
        ("tool", Value::from(tool)),
        ("level", Value::from(level.to_ascii_lowercase())),
    ];
    let mut out = String::from("{");
    let mut first = true;
    let mut put = |k: &str, v: &Value| {
        if !first {
            out.push(',');
        }
        first = false;
        out.push_str(&Value::from(k).to_string());
        out.push(':');
        out.push_str(&v.to_string());
    };
    for (k, v) in &head {
        put(k, v);
    }
    for (k, v) in fields {
        if !head.iter().any(|(h, _)| h == k) {
            put(k, v);
        }
    }
    out.push_str("}\n");
    out
}

/// The event's fields as JSON values, in call order.
struct Fields(Vec<(String, serde_json::Value)>);

impl Fields {
    fn put(&mut self, f: &Field, v: serde_json::Value) {
        self.0.push((f.name().to_owned(), v));
    }
}

impl Visit for Fields {
    fn record_f64(&mut self, f: &Field, v: f64) {
        // Three decimals are enough for seconds; NaN and infinities are null.
        let r = (v * 1000.0).round() / 1000.0;
        self.put(
            f,
            serde_json::Number::from_f64(r).map_or(serde_json::Value::Null, Into::into),
        );
    }
    fn record_i64(&mut self, f: &Field, v: i64) {
        self.put(f, v.into());
    }
    fn record_u64(&mut self, f: &Field, v: u64) {
        self.put(f, v.into());
    }
    fn record_bool(&mut self, f: &Field, v: bool) {
        self.put(f, v.into());
    }
    fn record_str(&mut self, f: &Field, v: &str) {
        self.put(f, v.into());
    }
    fn record_debug(&mut self, f: &Field, v: &dyn std::fmt::Debug) {
        self.put(f, format!("{v:?}").into());
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn a_line_is_one_flat_object_with_the_head_first() {
        let l = render(
            "2026-01-01T00:00:00.000Z",
            "hotbak",
            "INFO",
            &[
                ("event".into(), "phase".into()),
                ("message".into(), "a \"quoted\"\nline".into()),
                ("v".into(), 9.into()),
                ("bytes".into(), u64::MAX.into()),
            ],
        );
        assert!(l.ends_with("}\n"));
        assert_eq!(l.matches('\n').count(), 1, "{l}");
        assert!(l.starts_with("{\"v\":1,\"ts\":"), "{l}");
        let v: Value = serde_json::from_str(&l).unwrap();
        assert_eq!(v["v"], 1, "a field cannot override the schema version");
        assert_eq!(v["level"], "info");
        assert_eq!(v["tool"], "hotbak");
        assert_eq!(v["event"], "phase");
        assert_eq!(v["message"], "a \"quoted\"\nline");
        assert_eq!(v["bytes"], u64::MAX);
    }

    #[test]
    fn the_layer_records_typed_fields() {
        use std::sync::{Arc, Mutex};
        // A layer like JsonLayer that keeps what it visited.
        struct Keep(Arc<Mutex<Vec<(String, Value)>>>);
        impl<S: tracing::Subscriber> Layer<S> for Keep {
            fn on_event(&self, e: &tracing::Event<'_>, _c: Context<'_, S>) {
                let mut f = Fields(Vec::new());
                e.record(&mut f);
                self.0.lock().unwrap().extend(f.0);
            }
        }
        let kept = Arc::new(Mutex::new(Vec::new()));
        let sub = tracing_subscriber::registry().with(Keep(kept.clone()));
        tracing::subscriber::with_default(sub, || {
            progress(
                "copy",
                &Sample {
                    files_done: 1,
                    files_total: 2,
                    bytes_done: 3,
                    bytes_total: 4,
                    rate_bps: 5,
                    eta_s: None,
                    redo_copied: 6,
                    redo_lag: 7,
                },
            );
            lock_released("BLOCK_DDL", 1.23456);
        });
        let got: std::collections::BTreeMap<_, _> =
            kept.lock().unwrap().clone().into_iter().collect();
        assert_eq!(got["event"], "lock");
        assert_eq!(got["files_total"], 2);
        assert_eq!(got["redo_lag"], 7);
        assert!(!got.contains_key("eta_s"), "an unknown ETA is left out");
        assert_eq!(got["held_s"], 1.235);
        assert_eq!(got["lock"], "BLOCK_DDL");
    }

    #[test]
    fn text_lines_go_through_the_guard_while_one_is_set() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let through = Arc::new(AtomicUsize::new(0));
        let t = through.clone();
        set_text_guard(Some(Arc::new(move |print: &mut dyn FnMut()| {
            t.fetch_add(1, Ordering::SeqCst);
            print();
        })));
        warn("a warning above the bar");
        info("a line above the bar");
        set_text_guard(None);
        // Other tests may print meanwhile: at least ours went through.
        assert!(through.load(Ordering::SeqCst) >= 2);
        let after = through.load(Ordering::SeqCst);
        info("no bar now");
        assert_eq!(through.load(Ordering::SeqCst), after, "printed directly");
    }

    #[test]
    fn formats_parse_case_insensitively() {
        assert_eq!(Format::parse("JSON"), Some(Format::Json));
        assert_eq!(Format::parse("text"), Some(Format::Text));
        assert_eq!(Format::parse("yaml"), None);
    }
}
