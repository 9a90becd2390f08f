//! `hotbak backup --metrics-file F`: the last run in Prometheus' text
//! format for node_exporter's textfile collector, written after every
//! backup, successful or not. [`families`] is pure; [`write`] replaces the
//! file atomically (a temporary file in the same directory, synced, then
//! renamed over it), so the collector never reads half a file.
//!
//! Every metric is a gauge prefixed `hotbak_backup_`. A failed run has
//! the times, status and exit code only (what it copied is not a backup);
//! `hotbak_backup_last_success_timestamp_seconds` is carried over from the
//! previous file, so "no good backup for a day" is one alert rule:
//! `time() - hotbak_backup_last_success_timestamp_seconds > 86400`.

use std::path::Path;

use crate::backup::BackupReport;
use crate::format::prometheus::{self, Family, Kind, Sample};

/// The metric name prefix.
pub const PREFIX: &str = "hotbak_backup_";

/// How a run ended, as the metrics need it.
pub struct Outcome<'a> {
    /// Unix time the command started (seconds).
    pub start_unix: f64,
    /// Unix time it ended (seconds).
    pub end_unix: f64,
    /// The process exit code (0: success).
    pub exit_code: i32,
    /// The backup's report (success only).
    pub report: Option<&'a BackupReport>,
    /// The previous file's last success time, if any.
    pub previous_success: Option<f64>,
}

fn gauge(name: &str, help: &str, value: f64) -> Family {
    Family::single(&format!("{PREFIX}{name}"), help, Kind::Gauge, value)
}

/// `BACKUP STAGE BLOCK_DDL` → `BLOCK_DDL`, `FLUSH TABLES WITH READ LOCK` → `FTWRL`.
fn stage_label(stage: &str) -> String {
    match stage.strip_prefix("BACKUP STAGE ") {
        Some(s) => s.to_owned(),
        None if stage == "FLUSH TABLES WITH READ LOCK" => "FTWRL".to_owned(),
        None => stage.to_owned(),
    }
}

/// The metric families of one run. Pure.
#[must_use]
pub fn families(o: &Outcome<'_>) -> Vec<Family> {
    let ok = o.exit_code == 0 && o.report.is_some();
    let mut f = vec![
        gauge(
            "last_run_start_timestamp_seconds",
            "Unix time the last backup run started.",
            o.start_unix,
        ),
        gauge(
            "last_run_end_timestamp_seconds",
            "Unix time the last backup run ended.",
            o.end_unix,
        ),
        gauge(
            "last_run_duration_seconds",
            "Wall time of the last backup run.",
            (o.end_unix - o.start_unix).max(0.0),
        ),
        gauge(
            "last_run_status",
            "1 if the last backup run completed OK, 0 if it failed.",
            if ok { 1.0 } else { 0.0 },
        ),
        gauge(
            "last_run_exit_code",
            "Exit code of the last backup run (README: exit codes).",
            f64::from(o.exit_code),
        ),
    ];
    let last_success = if ok {
        Some(o.end_unix)
    } else {
        o.previous_success
    };
    if let Some(t) = last_success {
        f.push(gauge(
            "last_success_timestamp_seconds",
            "Unix time the last successful backup run ended.",
            t,
        ));
    }
    let Some(r) = o.report.filter(|_| ok) else {
        return f;
    };
    let n = |v: u64| v as f64;
    f.extend([
        gauge(
            "last_run_read_bytes",
            "Bytes the last successful backup read from the server's files.",
            n(r.bytes_in),
        ),
        gauge(
            "last_run_written_bytes",
            "Bytes the last successful backup wrote (after compression and encryption).",
            n(r.bytes_out),
        ),
        gauge(
            "last_run_files",
            "Files in the last successful backup.",
            n(r.files),
        ),
        gauge(
            "last_run_redo_bytes",
            "Redo log bytes the last successful backup copied.",
            n(r.last_lsn.saturating_sub(r.first_lsn)),
        ),
        gauge(
            "last_run_to_lsn",
            "Checkpoint LSN the last successful backup ends at (the next incremental's base).",
            n(r.to_lsn),
        ),
    ]);
    let per_stage =
        |name: &str,
         help: &str,
         get: &dyn Fn(&crate::backup::progress::LockTiming) -> Option<f64>| Family {
            name: format!("{PREFIX}{name}"),
            help: help.to_owned(),
            kind: Kind::Gauge,
            samples: r
                .locks
                .iter()
                .filter_map(|l| {
                    Some(Sample {
                        labels: vec![("stage".to_owned(), stage_label(l.stage))],
                        value: get(l)?,
                    })
                })
                .collect(),
        };
    let wait = per_stage(
        "last_run_lock_wait_seconds",
        "Time the last successful backup waited for each lock.",
        &|l| Some(l.waited.as_secs_f64()),
    );
    let held = per_stage(
        "last_run_lock_held_seconds",
        "Time the last successful backup held each lock.",
        &|l| l.held.map(|h| h.as_secs_f64()),
    );
    f.extend([wait, held].into_iter().filter(|x| !x.samples.is_empty()));
    f
}

/// The last success time recorded in an existing metrics file.
#[must_use]
pub fn previous_success(path: &Path) -> Option<f64> {
    let text = std::fs::read_to_string(path).ok()?;
    let name = format!("{PREFIX}last_success_timestamp_seconds");
    prometheus::parse(&text)
        .ok()?
        .into_iter()
        .find(|f| f.name == name)?
        .value(&[])
}

/// Write `text` to `path` atomically: `.NAME.tmp` beside it, synced, renamed.
///
/// # Errors
/// I/O errors, with the file named.
pub fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    use anyhow::Context as _;
    use std::io::Write as _;
    let name = path
        .file_name()
        .with_context(|| format!("--metrics-file {}: not a file name", path.display()))?;
    let tmp = path.with_file_name(format!(".{}.tmp", name.to_string_lossy()));
    let res = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res.with_context(|| format!("--metrics-file {}", path.display()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::backup::progress::LockTiming;
    use std::time::Duration;

    fn report() -> BackupReport {
        BackupReport {
            files: 12,
            bytes_in: 1000,
            bytes_out: 400,
            first_lsn: 100,
            last_lsn: 350,
            to_lsn: 300,
            locks: vec![
                LockTiming {
                    stage: "BACKUP STAGE BLOCK_DDL",
                    waited: Duration::from_millis(5),
                    held: Some(Duration::from_millis(250)),
                },
                LockTiming {
                    stage: "BACKUP STAGE BLOCK_COMMIT",
                    waited: Duration::from_millis(1),
                    held: Some(Duration::from_millis(20)),
                },
            ],
            ..BackupReport::default()
        }
    }

    fn get(f: &[Family], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        f.iter()
            .find(|x| x.name == format!("{PREFIX}{name}"))?
            .value(labels)
    }

    #[test]
    fn a_success_parses_back_with_every_value() {
        let r = report();
        let text = prometheus::render(&families(&Outcome {
            start_unix: 1000.0,
            end_unix: 1012.5,
            exit_code: 0,
            report: Some(&r),
            previous_success: Some(1.0),
        }));
        // The checker: HELP and TYPE for every name, every sample well formed.
        let f = prometheus::parse(&text).unwrap();
        assert!(f
            .iter()
            .all(|x| x.name.starts_with(PREFIX) && !x.help.is_empty()));
        assert_eq!(get(&f, "last_run_status", &[]), Some(1.0));
        assert_eq!(get(&f, "last_run_exit_code", &[]), Some(0.0));
        assert_eq!(get(&f, "last_run_duration_seconds", &[]), Some(12.5));
        assert_eq!(get(&f, "last_success_timestamp_seconds", &[]), Some(1012.5));
        assert_eq!(get(&f, "last_run_files", &[]), Some(12.0));
        assert_eq!(get(&f, "last_run_written_bytes", &[]), Some(400.0));
        assert_eq!(get(&f, "last_run_redo_bytes", &[]), Some(250.0));
        assert_eq!(
            get(&f, "last_run_lock_held_seconds", &[("stage", "BLOCK_DDL")]),
            Some(0.25)
        );
        assert_eq!(
            get(
                &f,
                "last_run_lock_wait_seconds",
                &[("stage", "BLOCK_COMMIT")]
            ),
            Some(0.001)
        );
        assert!(text.contains("# TYPE hotbak_backup_last_run_status gauge\n"));
    }

    #[test]
    fn a_failure_has_status_0_its_code_and_the_previous_success() {
        let f = families(&Outcome {
            start_unix: 2000.0,
            end_unix: 2001.0,
            exit_code: 4,
            report: None,
            previous_success: Some(1012.5),
        });
        let f = prometheus::parse(&prometheus::render(&f)).unwrap();
        assert_eq!(get(&f, "last_run_status", &[]), Some(0.0));
        assert_eq!(get(&f, "last_run_exit_code", &[]), Some(4.0));
        assert_eq!(get(&f, "last_success_timestamp_seconds", &[]), Some(1012.5));
        assert_eq!(get(&f, "last_run_files", &[]), None);
        // Never a success before: no success time at all.
        let f = families(&Outcome {
            start_unix: 0.0,
            end_unix: 0.0,
            exit_code: 1,
            report: None,
            previous_success: None,
        });
        assert_eq!(get(&f, "last_success_timestamp_seconds", &[]), None);
    }

    #[test]
    fn stage_labels() {
        assert_eq!(stage_label("BACKUP STAGE START"), "START");
        assert_eq!(stage_label("FLUSH TABLES WITH READ LOCK"), "FTWRL");
    }

    #[test]
    fn write_replaces_the_file_and_leaves_no_temporary() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("hotbak.prom");
        std::fs::write(&p, "old").unwrap();
        write(
            &p,
            "# HELP hotbak_backup_x h\n# TYPE hotbak_backup_x gauge\nhotbak_backup_x 1\n",
        )
        .unwrap();
        assert!(std::fs::read_to_string(&p)
            .unwrap()
            .ends_with("hotbak_backup_x 1\n"));
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
        assert!(write(&d.path().join("missing/dir/f.prom"), "x").is_err());
    }
}
