//! The native prepare against its oracle: `mariabackup --prepare` on a copy
//! of the same backup must produce the same page images in every
//! tablespace, and `mariadbd` must start on the natively prepared copy with
//! the same data.
//!
//! `native_prepare_oracle` is the small CI case; `native_prepare_oracle_bench`
//! (ignored, `HOTBAK_ORACLE_RUNS=N`) repeats it over N distinct backups and
//! times both prepares (driven by `bench/native_prepare_oracle.sh`).

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hotbak::mysql::Session;
use hotbak::native_prepare::{native_prepare, NativeOptions};
use hotbak::sandbox::{Sandbox, SandboxOptions};
use hotbak::testkit::{self, DdlLoop, Expect, SchemaOptions, Writer, WriterOptions};

use crate::support::{copy_dir, rt, tool};

/// Run a program; panic with its output unless it succeeds.
pub(crate) fn run_ok(program: &Path, args: &[&OsStr]) {
    let (st, out) = testkit::run_tool(program, args).expect("tool runs");
    assert!(st.success(), "{}: {st}: {out}", program.display());
}

/// Every file below `root` (any depth).
pub(crate) fn files_under(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// Every tablespace file of a backup, relative to its root.
pub(crate) fn tablespaces(root: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = files_under(root)
        .into_iter()
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            name.ends_with(".ibd") || name.starts_with("ibdata") || name.starts_with("undo")
        })
        .map(|p| p.strip_prefix(root).expect("under root").to_path_buf())
        .collect();
    out.sort();
    out
}

fn field_at(off: usize, size: usize) -> &'static str {
    match off {
        0..=3 => "FIL_PAGE_SPACE_OR_CHKSUM",
        4..=7 => "FIL_PAGE_OFFSET",
        8..=11 => "FIL_PAGE_PREV",
        12..=15 => "FIL_PAGE_NEXT",
        16..=23 => "FIL_PAGE_LSN",
        24..=25 => "FIL_PAGE_TYPE",
        26..=33 => "FIL_PAGE_FILE_FLUSH_LSN",
        34..=37 => "FIL_PAGE_SPACE_ID",
        o if o >= size - 8 => "page trailer (LSN low / checksum)",
        _ => "page body",
    }
}

/// Compare every tablespace page by page; the differences as text (empty
/// when identical), at most `limit` lines.
pub(crate) fn compare(
    oracle: &Path,
    ours: &Path,
    page_size: usize,
    limit: usize,
) -> (Vec<String>, u64) {
    let mut diffs = Vec::new();
    let mut pages = 0u64;
    let a_files = tablespaces(oracle);
    let b_files = tablespaces(ours);
    if a_files != b_files {
        diffs.push(format!("file sets differ: {a_files:?} vs {b_files:?}"));
    }
    for rel in &a_files {
        let a = std::fs::read(oracle.join(rel)).expect("read oracle file");
        let Ok(b) = std::fs::read(ours.join(rel)) else {
            continue;
        };
        if a.len() != b.len() {
            diffs.push(format!(
                "{}: size {} (mariabackup) vs {} (native)",
                rel.display(),
                a.len(),
                b.len()
            ));
        }
        for (i, (pa, pb)) in a.chunks(page_size).zip(b.chunks(page_size)).enumerate() {
            pages += 1;
            if pa == pb {
                continue;
            }
            let off = pa
                .iter()
                .zip(pb.iter())
                .position(|(x, y)| x != y)
                .unwrap_or(0);
            if diffs.len() < limit {
                diffs.push(format!(
                    "{} page {i}: first difference at byte {off} ({}); type {} lsn {:x} vs {:x}",
                    rel.display(),
                    field_at(off, pa.len()),
                    u16::from_be_bytes([pa[24], pa[25]]),
                    u64::from_be_bytes(pa[16..24].try_into().unwrap_or([0; 8])),
                    u64::from_be_bytes(pb[16..24].try_into().unwrap_or([0; 8])),
                ));
            } else {
                diffs.push(String::new());
            }
        }
    }
    (diffs, pages)
}

/// mariabackup's DDL markers, in its order (`.del`, `.ren`, `.new`); the
/// CLI does this before the native prepare, as it does for the
/// mariadbd-based one.
fn apply_markers(root: &Path) {
    let files = files_under(root);
    let with = |ext: &str| {
        files
            .iter()
            .filter(|f| f.extension().is_some_and(|e| e == ext))
            .cloned()
            .collect::<Vec<_>>()
    };
    for gone in with("del") {
        let _ = std::fs::remove_file(gone.with_extension("ibd"));
        std::fs::remove_file(&gone).expect("remove .del");
    }
    for ren in with("ren") {
        let target = std::fs::read_to_string(&ren).expect("read .ren");
        let old = ren.with_extension("ibd");
        if old.exists() {
            std::fs::rename(&old, root.join(format!("{}.ibd", target.trim()))).expect("rename");
        }
        std::fs::remove_file(&ren).expect("remove .ren");
    }
    for new in with("new") {
        std::fs::rename(&new, new.with_extension("ibd")).expect("rename .new");
    }
}

struct Outcome {
    /// How `ib_logfile0` of both copies differs outside the creator text
    /// and the header checksum (bytes 16..48 and 508..512), if it does.
    log_differs: Option<String>,
    diffs: Vec<String>,
    pages: u64,
    mariabackup_secs: f64,
    native_secs: f64,
    report: hotbak::native_prepare::Report,
}

/// Which tool takes the backup.
#[derive(Clone, Copy, Debug)]
enum Source {
    Mariabackup,
    Hotbak,
}

/// One oracle run.
#[derive(Clone, Copy, Debug)]
struct Case {
    source: Source,
    /// Run the DDL loop (CREATE/ALTER/RENAME/TRUNCATE/DROP) too.
    ddl: bool,
    /// Seconds of writes before the backup starts.
    write_secs: f64,
    /// Start servers on both prepared copies and compare the data.
    check_server: bool,
    /// The native prepare's memory budget (small values force batches).
    use_memory: u64,
}

fn backup_args(case: Case, mariabackup: &Path, sock: &Path, dest: &Path) -> (PathBuf, Vec<String>) {
    match case.source {
        Source::Mariabackup => (
            mariabackup.to_path_buf(),
            vec![
                "--no-defaults".into(),
                "--backup".into(),
                "--user=root".into(),
                format!("--socket={}", sock.display()),
                format!("--target-dir={}", dest.display()),
            ],
        ),
        Source::Hotbak => (
            crate::support::bin("hotbak"),
            vec![
                "backup".into(),
                "--no-defaults".into(),
                "--socket".into(),
                sock.display().to_string(),
                "-u".into(),
                "root".into(),
                "--target-dir".into(),
                dest.display().to_string(),
            ],
        ),
    }
}

/// Take one backup under the writer, prepare two copies (mariabackup /
/// native), compare, start a server on the native copy and check its data
/// against the mariabackup-prepared copy.
fn oracle_once(root: &Path, mariabackup: &Path, case: Case) -> Outcome {
    let sb_opts = SandboxOptions {
        server_args: vec!["--innodb-log-file-size=64M".into()],
        ..Default::default()
    };
    let mut sb = Sandbox::create(&root.join("src"), sb_opts).expect("sandbox starts");
    let backup = root.join("backup");
    let rt = rt();
    let schema = rt.block_on(async {
        testkit::setup_schema(&sb.connect_options(), &SchemaOptions::default())
            .await
            .expect("schema")
    });
    // A clean restart checkpoints the schema load: the backup's log then
    // holds the writer's work only (the load of the ROW_FORMAT=COMPRESSED
    // table is not applied natively yet).
    sb.restart().expect("restart");
    let (before, after) = rt.block_on(async {
        let conn = sb.connect_options();
        let w = Writer::start(&conn, &schema, &WriterOptions::default())
            .await
            .expect("writer");
        let ddl = if case.ddl {
            Some(
                DdlLoop::start(&conn, Duration::from_millis(50))
                    .await
                    .expect("ddl loop"),
            )
        } else {
            None
        };
        tokio::time::sleep(Duration::from_secs_f64(case.write_secs)).await;
        let before = w.snapshot();
        let (program, args) = backup_args(case, mariabackup, sb.socket(), &backup);
        tokio::task::spawn_blocking(move || {
            let args: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
            run_ok(&program, &args);
        })
        .await
        .expect("join");
        if let Some(d) = ddl {
            let r = d.stop().await.expect("ddl loop stops");
            assert!(r.total_ok() > 0, "no DDL ran: {r:?}");
        }
        let after = w.stop().await.expect("writer stops");
        assert!(after.errors.is_empty(), "writer errors: {after}");
        (before, after)
    });
    sb.stop().expect("source stops");
    let theirs = root.join("mb");
    let ours = root.join("native");
    copy_dir(&backup, &theirs);
    copy_dir(&backup, &ours);
    let t0 = Instant::now();
    run_ok(
        mariabackup,
        &[
            OsStr::new("--no-defaults"),
            OsStr::new("--prepare"),
            OsStr::new(&format!("--target-dir={}", theirs.display())),
        ],
    );
    let mariabackup_secs = t0.elapsed().as_secs_f64();
    let t0 = Instant::now();
    apply_markers(&ours);
    // Three threads whatever the machine, so that the log is decoded in
    // runs merged in order and pages applied in several runs even on two
    // cores (and one thread for the small-memory cases: both paths).
    let opts = NativeOptions {
        use_memory: case.use_memory,
        threads: if case.use_memory < 8 << 20 { 1 } else { 3 },
        ..NativeOptions::default()
    };
    let report = native_prepare(&ours, &opts).expect("native prepare");
    let native_secs = t0.elapsed().as_secs_f64();
    eprintln!("native prepare: {report:?}");
    let (diffs, pages) = compare(&theirs, &ours, 16384, 20);
    // The comparison sees what prepare changes: the unprepared backup
    // differs from the prepared one.
    let (raw, _) = compare(&theirs, &backup, 16384, 1);
    assert!(
        !raw.is_empty(),
        "prepare changed no page: the comparison is blind"
    );
    let log_differs = {
        let mask = |mut b: Vec<u8>| {
            for i in (16..48).chain(508..512) {
                if let Some(x) = b.get_mut(i) {
                    *x = 0;
                }
            }
            b
        };
        let a = std::fs::read(theirs.join("ib_logfile0")).expect("log");
        let b = std::fs::read(ours.join("ib_logfile0")).expect("log");
        let lsn = |v: &[u8], at: usize| {
            v.get(at..at + 8)
                .map(|x| u64::from_be_bytes(x.try_into().unwrap_or([0; 8])))
        };
        let what = format!(
            "mariabackup: {} bytes, first LSN {:?}, checkpoint {:?}; native: {} bytes, {:?}, {:?}; last_lsn {}",
            a.len(),
            lsn(&a, 8),
            lsn(&a, 4096),
            b.len(),
            lsn(&b, 8),
            lsn(&b, 4096),
            report.end_lsn
        );
        (mask(a) != mask(b)).then_some(what)
    };
    if case.check_server && diffs.is_empty() {
        rt.block_on(async {
            let expect = Expect::between(&schema, &before, &after);
            let opts = SandboxOptions::default;
            let ours_sums =
                served_sums(&ours, &root.join("run-native"), opts(), Some(&expect)).await;
            let their_sums = served_sums(&theirs, &root.join("run-mb"), opts(), None).await;
            assert_eq!(ours_sums, their_sums, "CHECKSUM TABLE differs");
            assert!(ours_sums.len() >= 10, "{ours_sums:?}");
        });
    }
    Outcome {
        log_differs,
        diffs,
        pages,
        mariabackup_secs,
        native_secs,
        report,
    }
}

/// Start a server on the prepared backup `data`, run the writer's checks
/// (`expect`) if given, and return CHECKSUM TABLE of every table.
pub(crate) async fn served_sums(
    data: &Path,
    run: &Path,
    opts: SandboxOptions,
    expect: Option<&Expect>,
) -> std::collections::BTreeMap<String, u64> {
    let mut sb = Sandbox::start_on(data, run, opts)
        .unwrap_or_else(|e| panic!("mariadbd starts on {}: {e}", data.display()));
    if let Some(expect) = expect {
        let r = testkit::check_restored(&sb.connect_options(), expect)
            .await
            .expect("check");
        assert!(r.ok(), "{}: {r}", data.display());
    }
    let mut s = Session::connect(&sb.connect_options())
        .await
        .expect("connect");
    let sums = testkit::checksum_all(&mut s).await.expect("checksums");
    s.close().await.expect("close");
    sb.stop().expect("stops");
    sums
}

#[test]
fn native_prepare_oracle() {
    let _ = oracle_case(Case {
        source: Source::Mariabackup,
        ddl: false,
        write_secs: 1.0,
        check_server: true,
        use_memory: NativeOptions::default().use_memory,
    });
}

/// `HOTBAK_ORACLE_RUNS=N cargo test --release --test it -- --ignored native_prepare_oracle_bench`
#[test]
#[ignore = "benchmark: run by bench/native_prepare_oracle.sh"]
fn native_prepare_oracle_bench() {
    let Some(mb) = tool("mariabackup") else {
        return;
    };
    let runs: usize = std::env::var("HOTBAK_ORACLE_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let secs: f64 = std::env::var("HOTBAK_ORACLE_WRITE_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3.0);
    let mut failed = 0;
    let (mut tm, mut tn) = (0.0, 0.0);
    for i in 0..runs {
        let dir = tempfile::tempdir().expect("tempdir");
        // Vary the amount of redo between runs.
        let case = Case {
            source: if i % 3 == 2 {
                Source::Hotbak
            } else {
                Source::Mariabackup
            },
            ddl: i % 2 == 1,
            write_secs: secs * (1.0 + i as f64 / 2.0),
            check_server: i < 2,
            use_memory: if i % 4 == 3 {
                1 << 20
            } else {
                NativeOptions::default().use_memory
            },
        };
        let o = oracle_once(dir.path(), &mb, case);
        tm += o.mariabackup_secs;
        tn += o.native_secs;
        println!(
            "run {i} {case:?}: {} pages, {} mtrs, {} page records, {} written; mariabackup --prepare {:.2}s, native {:.2}s; {} differing pages{}",
            o.pages,
            o.report.mtrs,
            o.report.page_records,
            o.report.pages_written,
            o.mariabackup_secs,
            o.native_secs,
            o.diffs.len(),
            o.diffs.first().map(|d| format!(" (first: {d})")).unwrap_or_default()
        );
        if !o.diffs.is_empty() {
            failed += 1;
        }
    }
    println!(
        "{runs} backups, {failed} with differences; total mariabackup --prepare {tm:.2}s, native {tn:.2}s, ratio {:.2}x",
        if tn > 0.0 { tm / tn } else { 0.0 }
    );
    assert_eq!(failed, 0);
}

fn oracle_case(case: Case) -> Option<hotbak::native_prepare::Report> {
    let mb = tool("mariabackup")?;
    tool("mariadbd")?;
    tool("mariadb-install-db")?;
    let dir = tempfile::tempdir().expect("tempdir");
    let o = oracle_once(dir.path(), &mb, case);
    assert!(o.report.page_records > 0, "{:?}", o.report);
    assert!(o.report.pages_written > 0, "{:?}", o.report);
    assert!(
        o.diffs.is_empty(),
        "{case:?}: {} pages differ from mariabackup --prepare:\n{}",
        o.diffs.len(),
        o.diffs.join("\n")
    );
    assert_eq!(
        o.log_differs, None,
        "ib_logfile0 differs from mariabackup's beyond the creator"
    );
    assert!(
        o.diffs.is_empty(),
        "{case:?}: {} pages differ from mariabackup --prepare:\n{}",
        o.diffs.len(),
        o.diffs.join("\n")
    );
    Some(o.report)
}

/// hotbak's own backup, prepared natively in 1 MiB batches.
#[test]
fn native_prepare_oracle_hotbak_backup() {
    let r = oracle_case(Case {
        source: Source::Hotbak,
        ddl: false,
        write_secs: 1.0,
        check_server: true,
        use_memory: 1 << 20,
    });
    if let Some(r) = r {
        assert!(r.batches > 1, "one batch only: {r:?}");
    }
}

#[test]
fn native_prepare_oracle_under_ddl() {
    let _ = oracle_case(Case {
        source: Source::Mariabackup,
        ddl: true,
        write_secs: 1.0,
        check_server: true,
        use_memory: NativeOptions::default().use_memory,
    });
}

/// Changes to a page_compressed table are refused before any file is
/// touched, naming the LSN and the case.
#[test]
fn native_prepare_refuses_page_compressed_and_changes_nothing() {
    let Some(mb) = tool("mariabackup") else {
        return;
    };
    if tool("mariadbd").is_none() || tool("mariadb-install-db").is_none() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let mut sb = Sandbox::create(&dir.path().join("src"), SandboxOptions::default())
        .expect("sandbox starts");
    rt().block_on(async {
        let mut s = Session::connect(&sb.connect_options()).await.expect("connect");
        for st in [
            "CREATE DATABASE pc",
            "CREATE TABLE pc.t (id INT PRIMARY KEY, v VARCHAR(200)) ENGINE=InnoDB PAGE_COMPRESSED=1",
            "INSERT INTO pc.t SELECT seq, REPEAT('x', 200) FROM pc.seq_1_to_2000",
        ] {
            s.execute(st).await.expect(st);
        }
        s.close().await.expect("close");
    });
    let backup = dir.path().join("backup");
    run_ok(
        &mb,
        &[
            OsStr::new("--no-defaults"),
            OsStr::new("--backup"),
            OsStr::new("--user=root"),
            OsStr::new(&format!("--socket={}", sb.socket().display())),
            OsStr::new(&format!("--target-dir={}", backup.display())),
        ],
    );
    sb.stop().expect("stops");
    apply_markers(&backup);
    let pristine = dir.path().join("pristine");
    copy_dir(&backup, &pristine);
    let e = native_prepare(&backup, &NativeOptions::default()).expect_err("refused");
    let msg = e.to_string();
    assert!(
        msg.contains("page_compressed") && msg.contains("LSN"),
        "{msg}"
    );
    let (diffs, pages) = compare(&pristine, &backup, 16384, 5);
    assert!(pages > 0);
    assert!(diffs.is_empty(), "files changed: {diffs:?}");
    assert_eq!(
        std::fs::read(pristine.join("ib_logfile0")).expect("log"),
        std::fs::read(backup.join("ib_logfile0")).expect("log"),
        "the log was changed"
    );
}
