//! hotbak's own incremental prepare (`hotbak prepare --incremental-dir`)
//! against its oracle: the same chain prepared by `mariabackup --prepare`
//! and `--prepare --incremental-dir` on copies must give the same page
//! images in every tablespace, the same `xtrabackup_checkpoints` and the
//! same log (but for the creator text); a server started on hotbak's result
//! passes the data checks. Both hotbak's chains and mariabackup's; wrong
//! base, twice and out of order are refused with nothing changed.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hotbak::mysql::Session;
use hotbak::sandbox::{Sandbox, SandboxOptions};
use hotbak::testkit::{self, Expect, SchemaOptions, Writer, WriterOptions};

use crate::native_prepare::{compare, files_under, run_ok, served_sums};
use crate::support::{bin, copy_dir, rt, tool};

/// Which tool takes the chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Taker {
    Hotbak,
    Mariabackup,
}

/// A full backup (`base`) or an incremental on `base`.
fn take(taker: Taker, sock: &Path, dest: &Path, base: Option<&Path>) {
    let (program, mut args) = match taker {
        Taker::Hotbak => (
            bin("hotbak"),
            vec![
                "backup".to_owned(),
                "--no-defaults".into(),
                "--socket".into(),
                sock.display().to_string(),
                "-u".into(),
                "root".into(),
                "--target-dir".into(),
                dest.display().to_string(),
            ],
        ),
        Taker::Mariabackup => (
            tool("mariabackup").expect("mariabackup"),
            vec![
                "--no-defaults".to_owned(),
                "--backup".into(),
                "--user=root".into(),
                format!("--socket={}", sock.display()),
                format!("--target-dir={}", dest.display()),
            ],
        ),
    };
    if let Some(b) = base {
        match taker {
            Taker::Hotbak => {
                args.push("--incremental-basedir".into());
                args.push(b.display().to_string());
            }
            Taker::Mariabackup => args.push(format!("--incremental-basedir={}", b.display())),
        }
    }
    let a: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
    run_ok(&program, &a);
}

/// `hotbak prepare` with `args`; (success, output).
fn hotbak_prepare(args: &[&Path], flags: &[&str]) -> (bool, String) {
    let mut a: Vec<&OsStr> = vec![OsStr::new("prepare")];
    a.extend(flags.iter().map(OsStr::new));
    a.push(OsStr::new("--target-dir"));
    a.push(args[0].as_os_str());
    if let Some(inc) = args.get(1) {
        a.push(OsStr::new("--incremental-dir"));
        a.push(inc.as_os_str());
    }
    let (st, out) = testkit::run_tool(&bin("hotbak"), &a).expect("hotbak runs");
    (st.success(), out)
}

/// `mariabackup --prepare` of `base` (with `inc`).
fn mariabackup_prepare(base: &Path, inc: Option<&Path>) {
    let mb = tool("mariabackup").expect("mariabackup");
    let mut a = vec![
        "--no-defaults".to_owned(),
        "--prepare".into(),
        format!("--target-dir={}", base.display()),
    ];
    if let Some(i) = inc {
        a.push(format!("--incremental-dir={}", i.display()));
    }
    let a: Vec<&OsStr> = a.iter().map(OsStr::new).collect();
    run_ok(&mb, &a);
}

/// BLAKE3 of every file under `root`, by relative path.
fn sums(root: &Path) -> BTreeMap<PathBuf, String> {
    files_under(root)
        .into_iter()
        .map(|p| {
            let h = blake3::hash(&std::fs::read(&p).expect("read"))
                .to_hex()
                .to_string();
            (p.strip_prefix(root).expect("under").to_path_buf(), h)
        })
        .collect()
}

/// A refused `hotbak prepare` that leaves every file of both directories as it was.
fn refused_unchanged(base: &Path, inc: &Path, want: &[&str]) {
    let (b0, i0) = (sums(base), sums(inc));
    let (ok, out) = hotbak_prepare(&[base, inc], &[]);
    assert!(!ok, "accepted: {out}");
    for w in want {
        assert!(out.contains(w), "{w:?} not in: {out}");
    }
    assert!(out.contains("nothing was changed"), "{out}");
    assert_eq!(sums(base), b0, "the base changed: {out}");
    assert_eq!(sums(inc), i0, "the incremental changed: {out}");
}

fn checkpoints(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("xtrabackup_checkpoints")).expect("checkpoints")
}

fn lsn_of(ck: &str, key: &str) -> String {
    ck.lines()
        .find_map(|l| l.strip_prefix(&format!("{key} = ")))
        .expect(key)
        .to_owned()
}

/// The log after prepare, but for the creator text and header checksum.
fn masked_log(dir: &Path) -> Vec<u8> {
    let mut b = std::fs::read(dir.join("ib_logfile0")).expect("log");
    for i in (16..48).chain(508..512) {
        if let Some(x) = b.get_mut(i) {
            *x = 0;
        }
    }
    b
}

struct Chain {
    full: PathBuf,
    incs: Vec<PathBuf>,
    schema: testkit::Schema,
    /// The writer's counters before the last incremental and at the end.
    before: testkit::WriterReport,
    after: testkit::WriterReport,
}

/// The writer's schema on `sb`, then `stmts`.
fn load_schema(rt: &tokio::runtime::Runtime, sb: &Sandbox, stmts: &[&str]) -> testkit::Schema {
    rt.block_on(async {
        let conn = sb.connect_options();
        let schema = testkit::setup_schema(&conn, &SchemaOptions::default())
            .await
            .expect("schema");
        let mut s = Session::connect(&conn).await.expect("connect");
        for st in stmts {
            s.execute(st).await.expect(st);
        }
        s.close().await.expect("close");
        schema
    })
}

/// A full backup and two incrementals under the writer: a table dropped and
/// one created between the full and the first incremental; another created,
/// one renamed and one rebuilt between the two incrementals.
fn take_chain(root: &Path, taker: Taker) -> Chain {
    let opts = SandboxOptions {
        server_args: vec!["--innodb-log-file-size=64M".into()],
        ..Default::default()
    };
    let mut sb = Sandbox::create(&root.join("src"), opts).expect("sandbox starts");
    let full = root.join("full");
    let incs = vec![root.join("inc1"), root.join("inc2")];
    let rt = rt();
    let schema = load_schema(
        &rt,
        &sb,
        &[
            "CREATE DATABASE hb_inc",
            "CREATE TABLE hb_inc.dropme (id INT PRIMARY KEY, v VARCHAR(100)) ENGINE=InnoDB",
            "INSERT INTO hb_inc.dropme SELECT seq, REPEAT('d', 100) FROM hb_inc.seq_1_to_3000",
            "CREATE TABLE hb_inc.ren_src (id INT PRIMARY KEY) ENGINE=InnoDB",
            "INSERT INTO hb_inc.ren_src SELECT seq FROM hb_inc.seq_1_to_444",
        ],
    );
    // The schema load checkpointed: the backups' logs hold the writer's work.
    sb.restart().expect("restart");
    let (before, after) = rt.block_on(async {
        let conn = sb.connect_options();
        // Flush continuously so that the checkpoint (each backup's to_lsn)
        // moves between the backups and the LSN checks have work to do.
        let mut s = Session::connect(&conn).await.expect("connect");
        for st in [
            "SET GLOBAL innodb_max_dirty_pages_pct_lwm = 0",
            "SET GLOBAL innodb_max_dirty_pages_pct = 0",
        ] {
            s.execute(st).await.expect(st);
        }
        s.close().await.expect("close");
        let w = Writer::start(&conn, &schema, &WriterOptions::default())
            .await
            .expect("writer");
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let sock = sb.socket().to_path_buf();
        let f = full.clone();
        tokio::task::spawn_blocking(move || take(taker, &sock, &f, None))
            .await
            .expect("join");
        let mut s = Session::connect(&conn).await.expect("connect");
        for st in [
            "DROP TABLE hb_inc.dropme",
            "CREATE TABLE hb_inc.born (id INT PRIMARY KEY, v VARCHAR(200)) ENGINE=InnoDB",
            "INSERT INTO hb_inc.born SELECT seq, REPEAT('b', 200) FROM hb_inc.seq_1_to_777",
        ] {
            s.execute(st).await.expect(st);
        }
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let (sock, f, i) = (sb.socket().to_path_buf(), full.clone(), incs[0].clone());
        tokio::task::spawn_blocking(move || take(taker, &sock, &i, Some(&f)))
            .await
            .expect("join");
        for st in [
            "CREATE TABLE hb_inc.born2 (id INT PRIMARY KEY) ENGINE=InnoDB",
            "INSERT INTO hb_inc.born2 SELECT seq FROM hb_inc.seq_1_to_555",
            "UPDATE hb_inc.born SET v = REPEAT('c', 150) WHERE id <= 300",
            // A rename (same space id, new name) and a rebuild (same name,
            // new space id).
            "RENAME TABLE hb_inc.ren_src TO hb_inc.ren_dst",
            "ALTER TABLE hb_inc.born FORCE",
        ] {
            s.execute(st).await.expect(st);
        }
        s.close().await.expect("close");
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let before = w.snapshot();
        let (sock, a, b) = (sb.socket().to_path_buf(), incs[0].clone(), incs[1].clone());
        tokio::task::spawn_blocking(move || take(taker, &sock, &b, Some(&a)))
            .await
            .expect("join");
        let after = w.stop().await.expect("writer stops");
        assert!(after.errors.is_empty(), "writer errors: {after}");
        (before, after)
    });
    sb.stop().expect("source stops");
    Chain {
        full,
        incs,
        schema,
        before,
        after,
    }
}

/// Prepare the chain both ways, compare, start a server on hotbak's result.
fn oracle(root: &Path, chain: &Chain) {
    // mariabackup on copies (it deletes the .delta files it applied).
    let mb = root.join("mb");
    std::fs::create_dir_all(&mb).expect("mkdir");
    copy_dir(&chain.full, &mb.join("full"));
    mariabackup_prepare(&mb.join("full"), None);
    for (n, inc) in chain.incs.iter().enumerate() {
        let c = mb.join(format!("inc{n}"));
        copy_dir(inc, &c);
        mariabackup_prepare(&mb.join("full"), Some(&c));
    }
    let theirs = mb.join("full");

    // hotbak on the originals, the refusals first.
    let ours = &chain.full;
    let (inc1, inc2) = (&chain.incs[0], &chain.incs[1]);
    let base_to = lsn_of(&checkpoints(ours), "to_lsn");
    let inc1_to = lsn_of(&checkpoints(inc1), "to_lsn");
    let inc2_to = lsn_of(&checkpoints(inc2), "to_lsn");
    let n = |v: &str| v.parse::<u64>().expect("lsn");
    assert!(
        n(&base_to) < n(&inc1_to) && n(&inc1_to) < n(&inc2_to),
        "the checkpoint did not move between the backups: {base_to} {inc1_to} {inc2_to}"
    );
    // Out of order: named by the LSNs, or by the parent's identity when
    // the server did not checkpoint between the backups (same LSNs).
    refused_unchanged(ours, inc2, &["out of order", &base_to]);
    refused_unchanged(ours, ours, &["not an incremental"]);
    let inc_sums: Vec<_> = chain.incs.iter().map(|i| sums(i)).collect();
    let (ok, out) = hotbak_prepare(&[ours], &[]);
    assert!(ok && out.contains("prepare (native)"), "{out}");
    assert!(checkpoints(ours).contains("backup_type = log-applied"));
    let (ok, out) = hotbak_prepare(&[ours, inc1], &[]);
    eprintln!("{out}");
    assert!(ok && out.contains("incremental applied"), "{out}");
    // dropme deleted; born created from its delta, or (when the creation
    // lies in the redo the incremental copied, which mariabackup's DDL
    // tracking then copies whole as `.new`) a whole copy.
    assert!(
        out.contains("1 deleted")
            && (!out.contains(" 0 tablespaces created") || !out.contains(" 0 whole copies")),
        "{out}"
    );
    refused_unchanged(ours, inc1, &["already applied", &inc1_to]);
    let (ok, out) = hotbak_prepare(&[ours, inc2], &[]);
    eprintln!("{out}");
    assert!(ok && out.contains("incremental applied"), "{out}");
    // ren_src renamed; born rebuilt: the old one set aside, then deleted,
    // or (when the rebuild lies in the redo the incremental copied, which
    // mariabackup's DDL tracking then copies whole as `.new`) replaced by
    // a whole copy.
    assert!(
        !out.contains(" 0 renamed")
            && (!out.contains(" 0 deleted") || !out.contains(" 0 whole copies")),
        "{out}"
    );
    for (i, s) in chain.incs.iter().zip(&inc_sums) {
        assert_eq!(
            &sums(i),
            s,
            "hotbak changed the incremental {}",
            i.display()
        );
    }

    // Page by page.
    let (diffs, pages) = compare(&theirs, ours, 16384, 20);
    assert!(pages > 100, "{pages} pages compared");
    assert!(
        diffs.is_empty(),
        "{} pages differ from mariabackup's incremental prepare:\n{}",
        diffs.len(),
        diffs.join("\n")
    );
    assert_eq!(
        checkpoints(ours),
        checkpoints(&theirs),
        "xtrabackup_checkpoints"
    );
    assert!(
        masked_log(ours) == masked_log(&theirs),
        "ib_logfile0 differs"
    );
    // The other files mariabackup leaves (frm, opt, MyISAM/Aria, info files).
    let other = |root: &Path| -> BTreeMap<PathBuf, String> {
        sums(root)
            .into_iter()
            .filter(|(p, _)| {
                let n = p.to_string_lossy();
                !(n.ends_with(".ibd")
                    || n.starts_with("ibdata")
                    || n.starts_with("undo")
                    || n.ends_with(".meta")
                    || n == "ib_logfile0"
                    || n.starts_with("hotbak_")
                    || n == "xtrabackup_binlog_pos_innodb"
                    || n.starts_with("aria_log")
                    // mariabackup's prepare also runs Aria recovery on the
                    // backup (aria::prepare); hotbak leaves it to the server's
                    // start, as for a full backup.
                    || n.ends_with(".MAI")
                    || n.ends_with(".MAD"))
            })
            .collect()
    };
    assert_eq!(other(ours), other(&theirs), "non-InnoDB files differ");

    // A server on hotbak's result.
    rt().block_on(async {
        let data = root.join("data");
        copy_dir(ours, &data);
        let mut s1 = Sandbox::start_on(&data, &root.join("run"), SandboxOptions::default())
            .expect("mariadbd starts on the prepared chain");
        let r = testkit::check_restored(
            &s1.connect_options(),
            &Expect::between(&chain.schema, &chain.before, &chain.after),
        )
        .await
        .expect("check");
        assert!(r.ok(), "{r}");
        let rows = |t: &str| r.tables.iter().find(|x| x.name == t).map(|x| x.rows);
        assert_eq!(rows("hb_inc.born"), Some(777), "{r}");
        assert_eq!(rows("hb_inc.born2"), Some(555), "{r}");
        assert_eq!(rows("hb_inc.dropme"), None, "{r}");
        assert_eq!(rows("hb_inc.ren_dst"), Some(444), "{r}");
        assert_eq!(rows("hb_inc.ren_src"), None, "{r}");
        s1.stop().expect("stops");
    });
}

fn tools_present() -> bool {
    tool("mariabackup").is_some()
        && tool("mariadbd").is_some()
        && tool("mariadb-install-db").is_some()
}

/// hotbak's chain (full + 2 incrementals) prepared by hotbak, against
/// mariabackup's prepare of copies.
#[test]
fn hotbak_chain_prepared_natively_matches_mariabackup() {
    if !tools_present() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let chain = take_chain(dir.path(), Taker::Hotbak);
    // hotbak records the parent, and prepare refuses another base with the
    // same LSNs (a copy of the base whose identity was changed).
    let info = std::fs::read_to_string(chain.incs[0].join("xtrabackup_info")).expect("info");
    let base_info = std::fs::read_to_string(chain.full.join("xtrabackup_info")).expect("info");
    let uuid = base_info
        .lines()
        .find_map(|l| l.strip_prefix("uuid = "))
        .expect("uuid")
        .to_owned();
    assert!(
        info.contains(&format!("hotbak_parent_uuid = {uuid}")),
        "{info}"
    );
    let impostor = dir.path().join("impostor");
    copy_dir(&chain.full, &impostor);
    std::fs::write(
        impostor.join("xtrabackup_info"),
        base_info.replace(&uuid, "00000000-0000-0000-0000-000000000000"),
    )
    .expect("write");
    refused_unchanged(&impostor, &chain.incs[0], &["wrong base", &uuid]);
    // An incremental still compressed: refused before the base changes
    // (going on would delete every tablespace the deltas do not name).
    let packed = dir.path().join("packed");
    copy_dir(&chain.incs[0], &packed);
    std::fs::rename(
        packed.join("ibdata1.delta"),
        packed.join("ibdata1.delta.zst"),
    )
    .expect("rename");
    refused_unchanged(&chain.full, &packed, &["ibdata1.delta.zst", "xbextract"]);
    oracle(dir.path(), &chain);
}

/// mariabackup's chain prepared by hotbak, against mariabackup's prepare.
#[test]
fn mariabackup_chain_prepared_by_hotbak_matches_mariabackup() {
    if !tools_present() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let chain = take_chain(dir.path(), Taker::Mariabackup);
    oracle(dir.path(), &chain);
}

/// `hotbak prepare` with `args`, aborted by the failpoint at the end of
/// the native applier's first batch (a crash in the middle of writing
/// pages); asserts it died and left the backup unprepared.
fn crashed_prepare(args: &[&Path], what: &str) {
    let ck0 = checkpoints(args[0]);
    let mut c = std::process::Command::new(bin("hotbak"));
    c.args(["prepare", "--use-memory", "1M", "--target-dir"])
        .arg(args[0])
        .env("HOTBAK_FAILPOINT", "native-prepare-batch:1");
    if let Some(inc) = args.get(1) {
        c.arg("--incremental-dir").arg(inc);
    }
    let out = c.output().expect("hotbak runs");
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && text.contains("failpoint"),
        "{what}: the prepare was not stopped part-way ({}): {text}",
        out.status
    );
    assert_eq!(
        checkpoints(args[0]),
        ck0,
        "{what}: a crashed prepare marked the backup"
    );
}

/// The page count in an incremental prepare's "N deltas (M pages)".
fn delta_pages(out: &str) -> u64 {
    out.split(" deltas (")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no delta count in: {out}"))
}

/// Issue 12's edge cases in one chain, against mariabackup's prepare of
/// copies: two undo tablespaces changed between the base and the first
/// incremental (the writer's transactions); a third incremental of a
/// server idle since the second (no page newer than its base: empty
/// deltas); the full prepare and an incremental prepare each killed after
/// their first batch of pages and rerun. Page images, checkpoints and the
/// data of a server started on the result must match.
#[test]
fn chain_edge_cases_undo_idle_and_crashed_prepare() {
    if !tools_present() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let opts = SandboxOptions {
        server_args: vec![
            "--innodb-log-file-size=64M".into(),
            "--innodb-undo-tablespaces=2".into(),
            "--innodb-stats-auto-recalc=OFF".into(),
        ],
        ..Default::default()
    };
    let mut sb = Sandbox::create(&root.join("src"), opts).expect("sandbox starts");
    let rt = rt();
    // 10.11 creates the undo tablespaces at a start after a slow shutdown.
    let schema = load_schema(&rt, &sb, &["SET GLOBAL innodb_fast_shutdown = 0"]);
    sb.restart().expect("restart");
    assert!(
        sb.datadir().join("undo002").exists(),
        "the server made no undo tablespaces"
    );
    let (full, inc1, inc2, inc3) = (
        root.join("full"),
        root.join("inc1"),
        root.join("inc2"),
        root.join("inc3"),
    );
    let sock = sb.socket().to_path_buf();
    let after = rt.block_on(async {
        let conn = sb.connect_options();
        let w = Writer::start(&conn, &schema, &WriterOptions::default())
            .await
            .expect("writer");
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let (s, f) = (sock.clone(), full.clone());
        tokio::task::spawn_blocking(move || take(Taker::Hotbak, &s, &f, None))
            .await
            .expect("join");
        tokio::time::sleep(Duration::from_millis(2000)).await;
        let (s, f, i) = (sock.clone(), full.clone(), inc1.clone());
        tokio::task::spawn_blocking(move || take(Taker::Hotbak, &s, &i, Some(&f)))
            .await
            .expect("join");
        let after = w.stop().await.expect("writer stops");
        assert!(after.errors.is_empty(), "writer errors: {after}");
        // Quiet: purge done, no dirty page, the checkpoint at the end.
        let mut s = Session::connect(&conn).await.expect("connect");
        for st in [
            "SET GLOBAL innodb_max_purge_lag_wait = 0",
            "SET GLOBAL innodb_max_dirty_pages_pct_lwm = 0",
            "SET GLOBAL innodb_max_dirty_pages_pct = 0",
        ] {
            s.execute(st).await.expect(st);
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let dirty: u64 = s
                .query_value("SELECT variable_value FROM information_schema.global_status WHERE variable_name = 'INNODB_BUFFER_POOL_PAGES_DIRTY'")
                .await
                .expect("status")
                .and_then(|v| v.parse().ok())
                .unwrap_or(u64::MAX);
            if dirty == 0 {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{dirty} dirty pages after 60 s");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        s.close().await.expect("close");
        after
    });
    take(Taker::Hotbak, &sock, &inc2, Some(&inc1));
    take(Taker::Hotbak, &sock, &inc3, Some(&inc2));
    let want = rt.block_on(async {
        let mut s = Session::connect(&sb.connect_options())
            .await
            .expect("connect");
        let sums = testkit::checksum_all(&mut s).await.expect("checksums");
        s.close().await.expect("close");
        sums
    });
    sb.stop().expect("source stops");

    // mariabackup's prepare of copies: the oracle.
    let mb = root.join("mb");
    std::fs::create_dir_all(&mb).expect("mkdir");
    copy_dir(&full, &mb.join("full"));
    mariabackup_prepare(&mb.join("full"), None);
    for (n, inc) in [&inc1, &inc2, &inc3].into_iter().enumerate() {
        let c = mb.join(format!("inc{n}"));
        copy_dir(inc, &c);
        mariabackup_prepare(&mb.join("full"), Some(&c));
    }

    // hotbak: the full prepare crashes after its first batch, then reruns.
    crashed_prepare(&[&full], "full");
    let (ok, out) = hotbak_prepare(&[&full], &[]);
    assert!(ok && out.contains("prepare (native)"), "{out}");
    // The first incremental (undo tablespaces changed) crashes too.
    crashed_prepare(&[&full, &inc1], "inc1");
    let (ok, out) = hotbak_prepare(&[&full, &inc1], &[]);
    assert!(ok && out.contains("incremental applied"), "{out}");
    for u in ["undo001", "undo002"] {
        assert!(
            inc1.join(format!("{u}.delta")).exists(),
            "no {u}.delta in the first incremental"
        );
    }
    let (ok, out) = hotbak_prepare(&[&full, &inc2], &[]);
    assert!(ok && out.contains("incremental applied"), "{out}");
    // Idle since inc2: nothing newer than its base.
    let (ok, out) = hotbak_prepare(&[&full, &inc3], &[]);
    assert!(ok && out.contains("incremental applied"), "{out}");
    assert_eq!(
        delta_pages(&out),
        0,
        "the idle incremental holds pages: {out}"
    );
    // A second prepare of the result is a no-op.
    let (ok, out) = hotbak_prepare(&[&full], &[]);
    assert!(ok, "{out}");

    let theirs = mb.join("full");
    let (diffs, pages) = compare(&theirs, &full, 16384, 20);
    assert!(pages > 100, "{pages} pages compared");
    assert!(
        diffs.is_empty(),
        "{} pages differ from mariabackup's prepare:\n{}",
        diffs.len(),
        diffs.join("\n")
    );
    assert_eq!(
        checkpoints(&full),
        checkpoints(&theirs),
        "xtrabackup_checkpoints"
    );

    // A server on hotbak's result serves the source's final tables.
    let data = root.join("data");
    copy_dir(&full, &data);
    let opts = SandboxOptions {
        server_args: vec!["--innodb-undo-tablespaces=2".into()],
        ..Default::default()
    };
    let expect = Expect::between(&schema, &after, &after);
    let got = rt.block_on(served_sums(&data, &root.join("run"), opts, Some(&expect)));
    assert_eq!(got, want, "CHECKSUM TABLE differs from the source's");
}
