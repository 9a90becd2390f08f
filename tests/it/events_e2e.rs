//! `--log-format json` (issue 13, item 4): every stderr line is one JSON
//! object of `format-spec/events.md`'s schema; the phases come in order;
//! the last event is the summary with the status and the exit code, on
//! success and on failure; `HOTBAK_LOG_FORMAT=json` does the same.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use hotbak::mysql::Session;
use hotbak::sandbox::{Sandbox, SandboxOptions};
use serde_json::Value;

use crate::support::{bin, rt, tool};

/// Every stderr line as a JSON object; panics on a line that is not one.
fn events(o: &Output) -> Vec<Value> {
    let text = String::from_utf8_lossy(&o.stderr);
    let evs: Vec<Value> = text
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("not a JSON object ({e}): {l:?}\nstderr:\n{text}"));
            assert!(v.is_object(), "not an object: {l}");
            assert_eq!(v["v"], 1, "schema version: {l}");
            assert!(v["ts"].is_string() && v["event"].is_string(), "{l}");
            v
        })
        .collect();
    assert!(!evs.is_empty(), "no events at all");
    evs
}

fn of<'a>(evs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    evs.iter().filter(|e| e["event"] == kind).collect()
}

/// The last event: the summary, with the process's own exit code.
fn summary<'a>(evs: &'a [Value], o: &Output) -> &'a Value {
    let last = evs.last().expect("events");
    assert_eq!(
        last["event"], "summary",
        "the last event is the summary: {last}"
    );
    assert_eq!(of(evs, "summary").len(), 1, "exactly one summary event");
    assert_eq!(
        last["exit_code"].as_i64(),
        o.status.code().map(i64::from),
        "the summary's exit code is the process's: {last}"
    );
    last
}

fn sandbox(dir: &Path) -> Option<Sandbox> {
    tool("mariadbd")?;
    tool("mariadb-install-db")?;
    Some(Sandbox::create(&dir.join("src"), SandboxOptions::default()).expect("sandbox starts"))
}

fn backup(sb: &Sandbox, target: &Path, extra: &[&str], env_json: bool) -> Output {
    let mut c = Command::new(bin("hotbak"));
    c.args(["backup", "--no-defaults", "-u", "root"])
        .arg(format!("--socket={}", sb.socket().display()))
        .arg(format!("--target-dir={}", target.display()))
        .args(extra)
        .env_remove("HOTBAK_LOG_FORMAT")
        .stdin(Stdio::null());
    if env_json {
        c.env("HOTBAK_LOG_FORMAT", "json");
    }
    c.output().expect("hotbak runs")
}

/// A successful backup's events: phases in order, locks taken and
/// released with durations, progress, the backup's totals, the summary.
fn check_backup_events(o: &Output) {
    let evs = events(o);
    assert!(o.status.success(), "{evs:#?}");
    let s = summary(&evs, o);
    assert_eq!(s["status"], "ok", "{s}");
    assert_eq!(s["exit_code"], 0);

    let phases: Vec<&str> = of(&evs, "phase")
        .iter()
        .filter_map(|e| e["phase"].as_str())
        .collect();
    let at = |p: &str| {
        phases
            .iter()
            .position(|x| *x == p)
            .unwrap_or_else(|| panic!("no phase {p} in {phases:?}"))
    };
    assert!(
        at("connect") < at("copy_innodb") && at("copy_innodb") < at("redo_catchup"),
        "phases out of order: {phases:?}"
    );
    assert_eq!(phases.last(), Some(&"redo_catchup"), "{phases:?}");

    let locks = of(&evs, "lock");
    let taken: Vec<&str> = locks
        .iter()
        .filter(|l| l["action"] == "taken")
        .filter_map(|l| l["lock"].as_str())
        .collect();
    let released: Vec<&str> = locks
        .iter()
        .filter(|l| l["action"] == "released")
        .filter_map(|l| l["lock"].as_str())
        .collect();
    for lock in ["BACKUP STAGE BLOCK_DDL", "BACKUP STAGE BLOCK_COMMIT"] {
        assert!(taken.contains(&lock), "{lock} taken: {locks:?}");
        assert!(released.contains(&lock), "{lock} released: {locks:?}");
    }
    for l in &locks {
        let d = if l["action"] == "taken" {
            &l["waited_s"]
        } else {
            &l["held_s"]
        };
        assert!(d.as_f64().is_some_and(|d| d >= 0.0), "a duration: {l}");
    }
    let commit_taken = evs
        .iter()
        .position(|e| e["lock"] == "BACKUP STAGE BLOCK_COMMIT" && e["action"] == "taken");
    let commit_released = evs
        .iter()
        .position(|e| e["lock"] == "BACKUP STAGE BLOCK_COMMIT" && e["action"] == "released");
    assert!(commit_taken < commit_released, "taken before released");

    let progress = of(&evs, "progress");
    let last = progress.last().expect("at least one progress event");
    assert!(last["bytes_done"].as_u64().is_some_and(|b| b > 0), "{last}");
    assert_eq!(last["files_done"], last["files_total"], "{last}");
    for k in [
        "files_total",
        "bytes_total",
        "rate_bps",
        "redo_copied",
        "redo_lag",
    ] {
        assert!(last[k].is_u64(), "{k} in {last}");
    }

    let totals = of(&evs, "backup_summary");
    assert_eq!(totals.len(), 1, "{evs:#?}");
    let t = totals[0];
    assert!(t["files"].as_u64().is_some_and(|f| f > 0), "{t}");
    assert!(
        t["to_lsn"].as_u64().is_some_and(|l| l > 0)
            && t["last_lsn"].as_u64() >= t["first_lsn"].as_u64(),
        "{t}"
    );
    assert!(
        t["ddl_lock_s"].is_f64() && t["commit_lock_s"].is_f64(),
        "{t}"
    );
    for m in of(&evs, "message") {
        let text = m["message"].as_str().expect("a message");
        assert!(
            !text.starts_with("hotbak:"),
            "the text prefix stays out: {m}"
        );
    }
}

#[test]
fn backup_events_option_env_and_failure() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let Some(mut sb) = sandbox(tmp.path()) else {
        return;
    };
    rt().block_on(async {
        let mut s = Session::connect(&sb.connect_options())
            .await
            .expect("connects");
        for st in [
            "CREATE DATABASE ev",
            "CREATE TABLE ev.t (id INT PRIMARY KEY, v VARCHAR(100)) ENGINE=InnoDB",
            "INSERT INTO ev.t SELECT seq, REPEAT('x', 100) FROM ev.seq_1_to_5000",
            "CREATE TABLE ev.a (id INT) ENGINE=Aria",
        ] {
            s.execute(st).await.unwrap_or_else(|e| panic!("{st}: {e}"));
        }
    });

    // The option.
    let o = backup(
        &sb,
        &tmp.path().join("b1"),
        &["--log-format", "json"],
        false,
    );
    check_backup_events(&o);
    assert!(tmp.path().join("b1/xtrabackup_checkpoints").is_file());

    // The variable, in mariabackup's invocation style.
    let o = Command::new(bin("hotbak"))
        .args(["--backup", "--no-defaults", "--user=root"])
        .arg(format!("--socket={}", sb.socket().display()))
        .arg(format!("--target-dir={}", tmp.path().join("b2").display()))
        .env("HOTBAK_LOG_FORMAT", "json")
        .stdin(Stdio::null())
        .output()
        .expect("hotbak runs");
    check_backup_events(&o);

    // The option wins over the variable; text stays what it was.
    let o = backup(&sb, &tmp.path().join("b3"), &["--log-format=text"], true);
    let text = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{text}");
    assert!(text.lines().all(|l| !l.starts_with('{')), "{text}");
    assert!(text.contains("BACKUP STAGE BLOCK_DDL taken"), "{text}");
    assert_eq!(
        text.lines().last(),
        Some("hotbak: backup completed OK!"),
        "{text}"
    );

    // A wrong socket: the summary carries the server class and exit code 4.
    let o = Command::new(bin("hotbak"))
        .args([
            "backup",
            "--no-defaults",
            "-u",
            "root",
            "--log-format",
            "json",
        ])
        .arg(format!(
            "--socket={}",
            tmp.path().join("nowhere.sock").display()
        ))
        .arg(format!("--target-dir={}", tmp.path().join("b4").display()))
        .stdin(Stdio::null())
        .output()
        .expect("hotbak runs");
    let evs = events(&o);
    let s = summary(&evs, &o);
    assert_eq!(o.status.code(), Some(4), "{evs:#?}");
    assert_eq!(s["status"], "server", "{s}");
    assert!(
        s["message"]
            .as_str()
            .is_some_and(|m| m.contains("nowhere.sock")),
        "the error names the socket: {s}"
    );
    assert_eq!(s["level"], "error");

    // A backup that fails mid-copy (its stdout closes after 1 MB): one last
    // progress sample, how far it got, right before the summary.
    let o = crate::support::backup_into_closing_pipe(
        sb.socket(),
        &["--log-format".into(), "json".into()],
        1_000_000,
    );
    let evs = events(&o);
    let s = summary(&evs, &o);
    assert_eq!(
        (o.status.code(), s["status"].as_str()),
        (Some(1), Some("io")),
        "{s}"
    );
    let last = &evs[evs.len() - 2];
    assert_eq!(
        last["event"], "progress",
        "a sample before the summary: {evs:#?}"
    );
    assert_eq!(last["what"], "backup", "{last}");
    assert!(
        last["bytes_done"].as_u64().is_some_and(|b| b >= 500_000),
        "the copy had started: {last}"
    );
    assert!(
        last["files_total"].as_u64().is_some_and(|f| f > 0)
            && last["bytes_total"].as_u64() >= last["bytes_done"].as_u64(),
        "{last}"
    );

    // A usage error is a summary too.
    let o = backup(&sb, &tmp.path().join("b5"), &["--no-such-option"], true);
    let evs = events(&o);
    let s = summary(&evs, &o);
    assert_eq!(
        (o.status.code(), s["status"].as_str()),
        (Some(2), Some("usage"))
    );
    sb.stop().expect("stop");
}

#[test]
fn xbextract_events_on_a_good_and_a_truncated_stream() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("src");
    std::fs::create_dir(&src).expect("mkdir");
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(src.join("f.ibd"), &data).expect("write");
    let stream = tmp.path().join("s.xb");
    let o = Command::new(bin("xbextract"))
        .args(["-c", "-C"])
        .arg(&src)
        .arg("f.ibd")
        .stdout(std::fs::File::create(&stream).expect("create"))
        .output()
        .expect("xbextract -c runs");
    assert!(o.status.success());
    let extract = |input: &Path, out: &str| {
        Command::new(bin("xbextract"))
            .args(["-x", "--log-format", "json", "-C"])
            .arg(tmp.path().join(out))
            .env_remove("HOTBAK_LOG_FORMAT")
            .stdin(std::fs::File::open(input).expect("open"))
            .output()
            .expect("xbextract runs")
    };
    let o = extract(&stream, "good");
    let evs = events(&o);
    let s = summary(&evs, &o);
    assert_eq!(
        (s["status"].as_str(), s["tool"].as_str()),
        (Some("ok"), Some("xbextract"))
    );
    assert!(
        of(&evs, "message")
            .iter()
            .any(|m| m["message"] == "completed OK!"),
        "{evs:#?}"
    );
    assert_eq!(
        std::fs::read(tmp.path().join("good/f.ibd")).expect("read"),
        data
    );

    let all = std::fs::read(&stream).expect("read");
    let cut = tmp.path().join("cut.xb");
    std::fs::write(&cut, &all[..all.len() / 2]).expect("write");
    let o = extract(&cut, "cut");
    let evs = events(&o);
    let s = summary(&evs, &o);
    assert_eq!(o.status.code(), Some(3), "{evs:#?}");
    assert_eq!(s["status"], "truncated", "{s}");
    assert!(
        !tmp.path().join("cut/f.ibd").exists(),
        "nothing reported or left as complete"
    );
}
