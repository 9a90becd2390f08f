//! Partial backups, `prepare --export` and `restore --table` (issue 15).
//! Every test runs its own throwaway servers.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use hotbak::mysql::Session;
use hotbak::sandbox::{Sandbox, SandboxOptions};
use hotbak::testkit::{self, Binaries, DdlLoop, SchemaOptions, Writer, WriterOptions};

use crate::support::{bin, copy_dir, rt, tool};

/// The tables of the test databases, beside the testkit's.
const KEEP_SETUP: &[&str] = &[
    "CREATE DATABASE keep1",
    "CREATE DATABASE keep2",
    "CREATE DATABASE other",
    "CREATE TABLE keep1.t1 (id INT PRIMARY KEY AUTO_INCREMENT, v VARCHAR(40) NOT NULL, KEY (v)) ENGINE=InnoDB",
    "INSERT INTO keep1.t1 (v) SELECT CONCAT('t1-', seq) FROM seq_1_to_20000",
    "CREATE TABLE keep1.t2 (id INT PRIMARY KEY, d DATETIME NOT NULL) ENGINE=InnoDB",
    "INSERT INTO keep1.t2 SELECT seq, '2024-01-01' + INTERVAL seq MINUTE FROM seq_1_to_3000",
    "CREATE TABLE keep1.m (id INT PRIMARY KEY, s VARCHAR(20) NOT NULL) ENGINE=MyISAM",
    "INSERT INTO keep1.m SELECT seq, CONCAT('m', seq) FROM seq_1_to_2000",
    "CREATE TABLE keep2.t1 (id INT PRIMARY KEY, n BIGINT NOT NULL) ENGINE=InnoDB",
    "INSERT INTO keep2.t1 SELECT seq, seq * seq FROM seq_1_to_5000",
    "CREATE TABLE keep2.t2 (id INT PRIMARY KEY) ENGINE=InnoDB",
    "INSERT INTO keep2.t2 SELECT seq FROM seq_1_to_100",
    "CREATE TABLE other.big (id INT PRIMARY KEY, pad CHAR(200) NOT NULL) ENGINE=InnoDB",
    "INSERT INTO other.big SELECT seq, REPEAT('x', 200) FROM seq_1_to_30000",
];

fn sandbox(dir: &Path) -> Option<Sandbox> {
    tool("mariadbd")?;
    tool("mariadb-install-db")?;
    Some(Sandbox::create(dir, SandboxOptions::default()).expect("sandbox starts"))
}

async fn exec(sb: &Sandbox, stmts: &[&str]) {
    let mut s = Session::connect(&sb.connect_options())
        .await
        .expect("connect");
    s.execute("USE mysql").await.expect("USE");
    for st in stmts {
        s.execute(st).await.unwrap_or_else(|e| panic!("{st}: {e}"));
    }
    s.close().await.expect("close");
}

/// `CHECKSUM TABLE` of the user tables, by `db.t`.
async fn checksums(sb: &Sandbox) -> BTreeMap<String, u64> {
    let mut s = Session::connect(&sb.connect_options())
        .await
        .expect("connect");
    let c = testkit::checksum_all(&mut s).await.expect("checksums");
    s.close().await.expect("close");
    c
}

fn only<'a>(all: &BTreeMap<String, u64>, keys: &[&'a str]) -> BTreeMap<&'a str, u64> {
    keys.iter()
        .map(|k| {
            (
                *k,
                *all.get(*k)
                    .unwrap_or_else(|| panic!("{k} missing: {all:?}")),
            )
        })
        .collect()
}

fn hotbak(args: &[&OsStr]) -> (bool, String) {
    let (st, out) = testkit::run_tool(&bin("hotbak"), args).expect("hotbak runs");
    (st.success(), out)
}

fn hotbak_ok(args: &[&OsStr]) -> String {
    let (ok, out) = hotbak(args);
    assert!(ok, "hotbak {args:?} failed:\n{out}");
    out
}

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

/// Restore a prepared backup into `root/name-data` and start a server there.
fn restore_and_start(backup: &Path, root: &Path, name: &str) -> Sandbox {
    let datadir = root.join(format!("{name}-data"));
    hotbak_ok(&[
        os("restore"),
        os("--target-dir"),
        backup.as_os_str(),
        os("--datadir"),
        datadir.as_os_str(),
    ]);
    Sandbox::start_on(
        &datadir,
        &root.join(format!("{name}-run")),
        SandboxOptions::default(),
    )
    .expect("server starts on the restored partial backup")
}

/// "data read        16.7 MiB in ..." → bytes (rounded).
fn data_read(stderr: &str) -> u64 {
    let line = stderr
        .lines()
        .find(|l| l.trim_start().starts_with("data read"))
        .unwrap_or_else(|| panic!("no data read line:\n{stderr}"));
    let mut w = line.split_whitespace().skip(2);
    let v: f64 = w.next().and_then(|v| v.parse().ok()).expect("number");
    let unit = match w.next() {
        Some("B") => 1.0,
        Some("KiB") => 1024.0,
        Some("MiB") => 1024.0 * 1024.0,
        Some("GiB") => 1024.0 * 1024.0 * 1024.0,
        u => panic!("unit {u:?} in {line}"),
    };
    (v * unit) as u64
}

/// `--databases='keep1 keep2.t1'` under writes and DDL on the excluded
/// databases: exactly those tables (and `mysql`), nothing of the others
/// read; prepared by hotbak (with `--export`) and by mariabackup, a server
/// starts on each and serves exactly the kept tables with the source's
/// checksums; `.cfg` import into a fresh server; `restore --table` of
/// dropped InnoDB and MyISAM tables into the running source while other
/// sessions write, and a refusal when the definitions differ.
#[test]
fn databases_filter_prepare_export_and_restore_table() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(sb) = sandbox(&dir.path().join("src")) else {
        return;
    };
    let Some(mariabackup) = tool("mariabackup") else {
        return;
    };
    let backup = dir.path().join("backup");
    let kept = ["keep1.t1", "keep1.t2", "keep1.m", "keep2.t1"];
    rt().block_on(async {
        let conn = sb.connect_options();
        let schema = testkit::setup_schema(&conn, &SchemaOptions::default())
            .await
            .expect("schema");
        exec(&sb, KEEP_SETUP).await;
        let source = checksums(&sb).await;
        let w = Writer::start(&conn, &schema, &WriterOptions::default())
            .await
            .expect("writer");
        let ddl = DdlLoop::start(&conn, Duration::from_millis(20))
            .await
            .expect("ddl loop");
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (socket, dest, logs) = (
            sb.socket().to_owned(),
            backup.clone(),
            dir.path().join("logs"),
        );
        let out = tokio::task::spawn_blocking(move || {
            let bins = Binaries {
                hotbak: bin("hotbak"),
                xbextract: bin("xbextract"),
            };
            testkit::run_stream_backup(
                &bins,
                &socket,
                &dest,
                &logs,
                &["--databases=keep1 keep2.t1".to_owned()],
            )
        })
        .await
        .expect("join")
        .expect("backup runs");
        let ddl = ddl.stop().await.expect("ddl loop stops");
        let writes = w.stop().await.expect("writer stops");
        assert!(out.success(), "partial backup failed: {out}");
        assert!(
            ddl.rounds > 0 && writes.errors.is_empty(),
            "{ddl:?} {writes}"
        );
        let err = &out.hotbak_stderr;
        assert!(err.contains("left out, not read"), "{err}");
        // Nothing of the excluded databases is in the backup, everything
        // of the kept tables and of `mysql` is.
        for gone in [
            "hb_app",
            "hb_arch",
            "hb_ddl",
            "other",
            "keep2/t2.ibd",
            "keep2/t2.frm",
        ] {
            assert!(!backup.join(gone).exists(), "{gone} is in the backup");
        }
        for there in [
            "keep1/t1.ibd",
            "keep1/t2.ibd",
            "keep1/m.MYD",
            "keep2/t1.ibd",
            "mysql/user.frm",
            "mysql/innodb_table_stats.ibd",
            "ibdata1",
        ] {
            assert!(backup.join(there).is_file(), "{there} is not in the backup");
        }
        let info = std::fs::read_to_string(backup.join("xtrabackup_info")).expect("info");
        assert!(info.contains("partial = Y"), "{info}");
        assert!(
            info.contains("partial_filter = --databases='keep1 keep2.t1'"),
            "{info}"
        );
        // Excluded files were never read: what was read is no more than
        // the data files the backup holds (hb_app alone is ~30 MB).
        let redo = std::fs::metadata(backup.join("ib_logfile0"))
            .expect("redo")
            .len();
        let held = testkit::dir_size(&backup) - redo;
        let read = data_read(err);
        let excluded = testkit::dir_size(&sb.datadir().join("hb_app"));
        assert!(excluded > 20 << 20, "hb_app holds {excluded} bytes");
        assert!(
            read <= held + (1 << 20),
            "read {read} bytes, the backup's data files hold {held}"
        );

        // Two preparers.
        let by_mb = dir.path().join("backup-mb");
        copy_dir(&backup, &by_mb);
        let p = hotbak_ok(&[
            os("prepare"),
            os("--export"),
            os("--target-dir"),
            backup.as_os_str(),
        ]);
        assert!(
            p.contains("partial backup") && p.contains(".cfg files written"),
            "{p}"
        );
        let again = hotbak_ok(&[
            os("prepare"),
            os("--export"),
            os("--target-dir"),
            backup.as_os_str(),
        ]);
        assert!(again.contains("nothing to do"), "{again}");
        let (st, mbout) = testkit::run_tool(
            &mariabackup,
            &[os("--prepare"), os("--target-dir"), by_mb.as_os_str()],
        )
        .expect("mariabackup runs");
        assert!(
            st.success(),
            "mariabackup --prepare of hotbak's partial backup:\n{mbout}"
        );
        for (prepared, name) in [(&backup, "hb"), (&by_mb, "mb")] {
            let mut r = restore_and_start(prepared, dir.path(), name);
            let got = checksums(&r).await;
            let names: Vec<&str> = got.keys().map(String::as_str).collect();
            let mut want = kept.to_vec();
            want.sort_unstable();
            assert_eq!(
                names, want,
                "{name}: the server serves exactly the kept tables"
            );
            assert_eq!(only(&got, &kept), only(&source, &kept), "{name}");
            r.stop().expect("stop");
        }

        // The exported .cfg: DISCARD / IMPORT into a fresh server.
        let mut fresh = Sandbox::create(&dir.path().join("fresh"), SandboxOptions::default())
            .expect("fresh server");
        let export = std::fs::read_to_string(backup.join("hotbak_export")).expect("export");
        let export = hotbak::format::export::Export::parse(&export).expect("parse");
        let t1 = export.find("keep1", "t1").expect("keep1.t1 exported");
        assert_eq!(t1.cfg, ["keep1/t1.cfg"]);
        exec(&fresh, &["CREATE DATABASE keep1"]).await;
        {
            let mut s = Session::connect(&fresh.connect_options()).await.expect("c");
            s.execute("USE keep1").await.expect("use");
            s.execute(&t1.create).await.expect("create");
            s.execute("ALTER TABLE t1 DISCARD TABLESPACE")
                .await
                .expect("discard");
            for f in ["t1.ibd", "t1.cfg"] {
                std::fs::copy(
                    backup.join("keep1").join(f),
                    fresh.datadir().join("keep1").join(f),
                )
                .expect("copy");
            }
            s.execute("ALTER TABLE t1 IMPORT TABLESPACE")
                .await
                .expect("import");
            s.close().await.expect("close");
        }
        let got = checksums(&fresh).await;
        assert_eq!(got.get("keep1.t1"), source.get("keep1.t1"));
        fresh.stop().expect("stop");

        // restore --table into the running source while the writer writes.
        let w = Writer::start(&conn, &schema, &WriterOptions::default())
            .await
            .expect("writer");
        exec(
            &sb,
            &[
                "DROP TABLE keep1.t1",
                "DROP TABLE keep1.m",
                "DELETE FROM keep2.t1 WHERE id > 10",
            ],
        )
        .await;
        let sock = sb.socket().as_os_str().to_owned();
        for t in ["keep1.t1", "keep1.m", "keep2.t1"] {
            let out = hotbak_ok(&[
                os("restore"),
                os("--target-dir"),
                backup.as_os_str(),
                os("--table"),
                os(t),
                os("--to-server"),
                &sock,
                os("--user"),
                os("root"),
                os("--no-defaults"),
            ]);
            assert!(out.contains("restore completed OK!"), "{out}");
        }
        let writes = w.stop().await.expect("writer");
        assert!(writes.errors.is_empty(), "{writes}");
        let now = checksums(&sb).await;
        assert_eq!(only(&now, &kept), only(&source, &kept));
        // Different definitions: refused, nothing touched.
        exec(
            &sb,
            &[
                "ALTER TABLE keep2.t1 ADD COLUMN z INT",
                "DELETE FROM keep2.t1 WHERE id > 10",
            ],
        )
        .await;
        let (ok, out) = hotbak(&[
            os("restore"),
            os("--target-dir"),
            backup.as_os_str(),
            os("--table"),
            os("keep2.t1"),
            os("--to-server"),
            &sock,
            os("--user"),
            os("root"),
            os("--no-defaults"),
        ]);
        assert!(!ok, "{out}");
        assert!(
            out.contains("definition differs") && out.contains("`z` int(11)"),
            "{out}"
        );
        let mut s = Session::connect(&conn).await.expect("c");
        let n = s
            .query_value("SELECT COUNT(*) FROM keep2.t1")
            .await
            .expect("count");
        assert_eq!(n.as_deref(), Some("10"));
        s.close().await.expect("close");
    });
}

/// `--tables-exclude` leaves one table out of an otherwise full backup,
/// through a compressed and encrypted stream; the backup prepares and the
/// server serves every other table.
#[test]
fn tables_exclude_through_a_compressed_encrypted_stream() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(mut sb) = sandbox(&dir.path().join("src")) else {
        return;
    };
    let dest = dir.path().join("backup");
    rt().block_on(async {
        exec(&sb, KEEP_SETUP).await;
        let source = checksums(&sb).await;
        let key = "ab".repeat(32);
        let mut hb = Command::new(bin("hotbak"))
            .args([
                "backup",
                "--no-defaults",
                "-u",
                "root",
                "--stream",
                "--compress",
            ])
            .args([
                "--encrypt",
                "--encrypt-key-env",
                "HB_TEST_KEY",
                "--progress",
                "lines",
            ])
            .arg("--socket")
            .arg(sb.socket())
            .arg("--tables-exclude=^other[.]big$")
            .env("HB_TEST_KEY", &key)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("hotbak");
        let pipe = hb.stdout.take().expect("pipe");
        let xb = Command::new(bin("xbextract"))
            .args(["-x", "--decrypt-key-env", "HB_TEST_KEY", "-C"])
            .arg(&dest)
            .env("HB_TEST_KEY", &key)
            .stdin(Stdio::from(pipe))
            .output()
            .expect("xbextract");
        let out = hb.wait_with_output().expect("hotbak");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{err}");
        assert!(
            xb.status.success(),
            "{}",
            String::from_utf8_lossy(&xb.stderr)
        );
        assert!(!dest.join("other/big.ibd").exists() && !dest.join("other/big.frm").exists());
        assert!(
            dest.join("other/db.opt").is_file(),
            "the database itself is kept"
        );
        assert!(dest.join("keep2/t2.ibd").is_file() && dest.join("keep1/m.MYI").is_file());
        hotbak_ok(&[os("prepare"), os("--target-dir"), dest.as_os_str()]);
        sb.stop().expect("stop source");
        let mut r = restore_and_start(&dest, dir.path(), "r");
        let got = checksums(&r).await;
        let mut want = source.clone();
        want.remove("other.big");
        assert_eq!(got, want);
        r.stop().expect("stop");
    });
}
