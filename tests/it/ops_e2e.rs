//! What an operator expects (issue 13, items 7 and 8): `--galera-info` on a
//! real single-node Galera cluster, `--history` rows in
//! `mysql.mariadb_backup_history`, `--metrics-file`, and a backup user with
//! exactly the README's grants. Each test runs its own throwaway server.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use hotbak::format::metadata::{BinlogInfo, GaleraInfo, XtrabackupInfo};
use hotbak::mysql::{ConnectOptions, Session};
use hotbak::sandbox::{Sandbox, SandboxOptions};

use crate::support::{bin, rt, tool};

/// The Galera provider Debian's `galera-4` installs.
pub const GALERA_PROVIDER: &str = "/usr/lib/galera/libgalera_smm.so";

fn sandbox(dir: &Path, args: &[String]) -> Option<Sandbox> {
    tool("mariadbd")?;
    tool("mariadb-install-db")?;
    let opts = SandboxOptions {
        server_args: args.to_vec(),
        ..Default::default()
    };
    Some(Sandbox::create(&dir.join("src"), opts).expect("sandbox starts"))
}

fn sql_as(conn: &ConnectOptions, statements: &[&str]) {
    rt().block_on(async {
        let mut s = Session::connect(conn).await.expect("connects");
        for st in statements {
            s.execute(st).await.unwrap_or_else(|e| panic!("{st}: {e}"));
        }
    });
}

fn value(conn: &ConnectOptions, q: &str) -> String {
    rt().block_on(async {
        let mut s = Session::connect(conn).await.expect("connects");
        s.query_value(q)
            .await
            .unwrap_or_else(|e| panic!("{q}: {e}"))
            .unwrap_or_default()
    })
}

fn strs(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| (*s).to_owned()).collect()
}

/// `hotbak ARGS…` (text log).
fn hotbak(args: Vec<String>) -> Output {
    Command::new(bin("hotbak"))
        .args(args)
        .env_remove("HOTBAK_LOG_FORMAT")
        .stdin(Stdio::null())
        .output()
        .expect("hotbak runs")
}

/// `--socket=S` and `--target-dir=T`.
fn place(sb: &Sandbox, target: &Path) -> [String; 2] {
    [
        format!("--socket={}", sb.socket().display()),
        format!("--target-dir={}", target.display()),
    ]
}

/// `hotbak backup --no-defaults -u root --socket=S --target-dir=T EXTRA…`.
fn hotbak_backup(sb: &Sandbox, target: &Path, extra: &[&str]) -> Output {
    let mut a = strs(&["backup", "--no-defaults", "-u", "root"]);
    a.extend(place(sb, target));
    a.extend(strs(extra));
    hotbak(a)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn assert_ok(what: &str, o: &Output) {
    assert!(
        o.status.success(),
        "{what} failed ({:?}):\n{}",
        o.status.code(),
        stderr(o)
    );
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// `(wsrep_local_state_uuid, wsrep_last_committed)`.
fn wsrep_state(conn: &ConnectOptions) -> (String, i64) {
    let uuid = value(
        conn,
        "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME='WSREP_LOCAL_STATE_UUID'",
    );
    let seqno = value(
        conn,
        "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME='WSREP_LAST_COMMITTED'",
    );
    (
        uuid,
        seqno.parse().expect("wsrep_last_committed is a number"),
    )
}

/// A single-node Galera cluster on loopback (port 0 for group
/// communication), with the binlog and GTIDs on; `None` (skip) without
/// MariaDB or `galera-4`.
fn galera_sandbox(dir: &Path) -> Option<Sandbox> {
    tool(GALERA_PROVIDER)?;
    let sb = sandbox(
        dir,
        &[
            "--wsrep-on=ON".to_owned(),
            format!("--wsrep-provider={GALERA_PROVIDER}"),
            "--wsrep-cluster-address=gcomm://".to_owned(),
            "--wsrep-provider-options=gmcast.listen_addr=tcp://127.0.0.1:0;ist.recv_addr=127.0.0.1"
                .to_owned(),
            "--wsrep-node-address=127.0.0.1".to_owned(),
            "--binlog-format=ROW".to_owned(),
            "--innodb-autoinc-lock-mode=2".to_owned(),
            "--log-bin=mysql-bin".to_owned(),
            "--server-id=1".to_owned(),
        ],
    )?;
    let conn = sb.connect_options();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while value(&conn, "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME='WSREP_READY'") != "ON" {
        assert!(
            std::time::Instant::now() < deadline,
            "the Galera node is not ready after 30 s:\n{}",
            sb.error_log_tail(30)
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    Some(sb)
}

#[test]
fn galera_info_on_a_single_node_cluster() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let Some(mut sb) = galera_sandbox(tmp.path()) else {
        return;
    };
    let conn = sb.connect_options();
    sql_as(
        &conn,
        &[
            "CREATE DATABASE shop",
            "CREATE TABLE shop.orders (id INT PRIMARY KEY AUTO_INCREMENT, note VARCHAR(40)) ENGINE=InnoDB",
            "INSERT INTO shop.orders (note) VALUES ('a'), ('b'), ('c')",
        ],
    );
    let (uuid, before) = wsrep_state(&conn);
    assert!(
        before > 0,
        "the writes went through Galera (seqno {before})"
    );

    // A backup under writes: its seqno lies between the values around it.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (conn, stop) = (conn.clone(), stop.clone());
        std::thread::spawn(move || {
            rt().block_on(async {
                let mut s = Session::connect(&conn).await.expect("writer connects");
                let mut n = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    s.execute("INSERT INTO shop.orders (note) VALUES ('w')")
                        .await
                        .expect("insert");
                    n += 1;
                }
                n
            })
        })
    };
    let b1 = tmp.path().join("b1");
    let o = hotbak_backup(&sb, &b1, &["--galera-info"]);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let written = writer.join().expect("writer");
    assert_ok("hotbak backup --galera-info", &o);
    let (uuid_after, after) = wsrep_state(&conn);
    assert_eq!(uuid_after, uuid);
    assert!(written > 0, "the writer wrote during the backup");
    let g = GaleraInfo::parse(&read(&b1.join("xtrabackup_galera_info"))).expect("parses");
    assert_eq!(g.uuid, uuid);
    assert!(
        (before..=after).contains(&g.seqno),
        "seqno {} outside [{before}, {after}]",
        g.seqno
    );
    assert_eq!(g.domain_id, Some(0));
    assert_eq!(
        read(&b1.join("donor_galera_info")),
        read(&b1.join("xtrabackup_galera_info"))
    );
    // The binlog was rotated under the lock and the new file is in the
    // backup: the binlog position names it.
    let bi = BinlogInfo::parse(&read(&b1.join("xtrabackup_binlog_info"))).expect("binlog info");
    assert!(
        b1.join(&bi.file).is_file(),
        "the rotated binlog {} is in the backup",
        bi.file
    );

    // No writes: the seqno is exactly the server's after the backup.
    let b2 = tmp.path().join("b2");
    assert_ok(
        "hotbak backup --galera-info (idle)",
        &hotbak_backup(&sb, &b2, &["--galera-info"]),
    );
    let g2 = GaleraInfo::parse(&read(&b2.join("xtrabackup_galera_info"))).expect("parses");
    let (_, now) = wsrep_state(&conn);
    assert_eq!((g2.uuid.as_str(), g2.seqno), (uuid.as_str(), now));

    // mariabackup on the same server: the same files, in the same format.
    if let Some(mb) = tool("mariabackup") {
        let mbdir = tmp.path().join("mb");
        let o = Command::new(mb)
            .args(["--no-defaults", "--backup", "--galera-info", "--user=root"])
            .arg(format!("--socket={}", sb.socket().display()))
            .arg(format!("--target-dir={}", mbdir.display()))
            .stdin(Stdio::null())
            .output()
            .expect("mariabackup runs");
        assert_ok("mariabackup --galera-info", &o);
        let (_, now) = wsrep_state(&conn);
        let theirs = read(&mbdir.join("xtrabackup_galera_info"));
        let m = GaleraInfo::parse(&theirs).expect("mariabackup's file parses");
        assert_eq!((m.uuid.as_str(), m.seqno), (uuid.as_str(), now));
        // Byte for byte the layout of ours (`UUID:SEQNO DOMAIN\n`).
        assert_eq!(m.render(), theirs);
        assert_eq!(read(&mbdir.join("donor_galera_info")), theirs);
        let mbi =
            BinlogInfo::parse(&read(&mbdir.join("xtrabackup_binlog_info"))).expect("binlog info");
        assert!(
            mbdir.join(&mbi.file).is_file(),
            "mariabackup also copies {}",
            mbi.file
        );
    }
    sb.stop().expect("stop");
}

/// The history rows: (uuid, name, tool_name, tool_version,
/// from_lsn, to_lsn, incremental, format).
fn history_rows(conn: &ConnectOptions) -> Vec<Vec<String>> {
    rt().block_on(async {
        let mut s = Session::connect(conn).await.expect("connects");
        let rows = s
            .query(
                "SELECT uuid, name, tool_name, tool_version, innodb_from_lsn, innodb_to_lsn, \
                 incremental, format, UNIX_TIMESTAMP(end_time) - UNIX_TIMESTAMP(start_time) \
                 FROM mysql.mariadb_backup_history",
            )
            .await
            .expect("history table");
        rows.iter()
            .map(|r| {
                (0..9)
                    .map(|i| r.at(i).unwrap_or("NULL").to_owned())
                    .collect()
            })
            .collect()
    })
}

#[test]
fn history_rows_for_named_and_unnamed_backups() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let Some(mut sb) = sandbox(tmp.path(), &[]) else {
        return;
    };
    let conn = sb.connect_options();
    sql_as(
        &conn,
        &[
            "CREATE DATABASE shop",
            "CREATE TABLE shop.t (id INT PRIMARY KEY) ENGINE=InnoDB",
            "INSERT INTO shop.t VALUES (1), (2)",
        ],
    );
    // mariabackup's row first: hotbak then writes into the table it made.
    let mb = tool("mariabackup");
    if let Some(mb) = &mb {
        let o = Command::new(mb)
            .args([
                "--no-defaults",
                "--backup",
                "--history=theirs",
                "--user=root",
            ])
            .arg(format!("--socket={}", sb.socket().display()))
            .arg(format!("--target-dir={}", tmp.path().join("mb").display()))
            .stdin(Stdio::null())
            .output()
            .expect("mariabackup runs");
        assert_ok("mariabackup --history", &o);
    }
    // An unnamed full backup (also --galera-info on a server without
    // wsrep: a warning, no file, as mariabackup).
    let full = tmp.path().join("full");
    let o = hotbak_backup(&sb, &full, &["--history", "--galera-info"]);
    assert_ok("hotbak backup --history", &o);
    assert!(stderr(&o).contains("not a Galera node"), "{}", stderr(&o));
    assert!(!full.join("xtrabackup_galera_info").exists());
    sql_as(&conn, &["INSERT INTO shop.t VALUES (3)"]);
    // A named incremental, in mariabackup's invocation style.
    let inc = tmp.path().join("inc");
    let mut a = strs(&[
        "--backup",
        "--no-defaults",
        "--user=root",
        "--history=nightly",
    ]);
    a.extend(place(&sb, &inc));
    a.push(format!("--incremental-basedir={}", full.display()));
    let o = hotbak(a);
    assert_ok(
        "hotbak --backup --history=nightly --incremental-basedir",
        &o,
    );

    let fi = XtrabackupInfo::parse(&read(&full.join("xtrabackup_info"))).expect("info");
    let ii = XtrabackupInfo::parse(&read(&inc.join("xtrabackup_info"))).expect("info");
    assert_eq!((fi.name.as_str(), ii.name.as_str()), ("", "nightly"));
    let rows = history_rows(&conn);
    let ours: Vec<&Vec<String>> = rows.iter().filter(|r| r[2] == "hotbak").collect();
    assert_eq!(ours.len(), 2, "{rows:?}");
    let version = env!("CARGO_PKG_VERSION");
    let want = |i: &XtrabackupInfo, name: &str, inc: &str| {
        vec![
            i.uuid.clone(),
            name.to_owned(),
            "hotbak".to_owned(),
            version.to_owned(),
            i.innodb_from_lsn.to_string(),
            i.innodb_to_lsn.to_string(),
            inc.to_owned(),
            "file".to_owned(),
        ]
    };
    // By uuid: both may start within the same second.
    let row = |uuid: &str| {
        ours.iter()
            .find(|r| r[0] == uuid)
            .unwrap_or_else(|| panic!("no row for {uuid}: {rows:?}"))
    };
    assert_eq!(row(&fi.uuid)[..8], want(&fi, "", "N")[..]);
    assert_eq!(row(&ii.uuid)[..8], want(&ii, "nightly", "Y")[..]);
    assert_eq!(ii.innodb_from_lsn, fi.innodb_to_lsn);
    assert!(ii.innodb_to_lsn >= fi.innodb_to_lsn);
    for r in &ours {
        let secs: i64 = r[8].parse().expect("times are set");
        assert!((0..60).contains(&secs), "start/end times {r:?}");
    }
    // The next incremental finds its base in the table.
    let inc2 = tmp.path().join("inc2");
    let o = hotbak_backup(&sb, &inc2, &["--incremental-history-name=nightly"]);
    assert_ok("hotbak backup --incremental-history-name=nightly", &o);
    let i2 = XtrabackupInfo::parse(&read(&inc2.join("xtrabackup_info"))).expect("info");
    assert!(i2.incremental);
    assert_eq!(i2.innodb_from_lsn, ii.innodb_to_lsn);
    assert!(
        i2.extra.iter().any(|(_, v)| v == &ii.uuid),
        "the parent is the named backup: {:?}",
        i2.extra
    );
    let o = hotbak_backup(
        &sb,
        &tmp.path().join("inc3"),
        &["--incremental-history-name=no-such-series"],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("no-such-series"), "{}", stderr(&o));
    if mb.is_some() {
        assert!(
            rows.iter()
                .any(|r| r[1] == "theirs" && r[2] == "mariabackup"),
            "{rows:?}"
        );
    }
    sb.stop().expect("stop");
}

/// The metrics file's families (the checker refuses a malformed one).
fn metrics(path: &Path) -> Vec<hotbak::format::prometheus::Family> {
    hotbak::format::prometheus::parse(&read(path)).expect("the metrics file parses")
}

fn metric(f: &[hotbak::format::prometheus::Family], name: &str) -> Option<f64> {
    f.iter().find(|x| x.name == name)?.value(&[])
}

#[test]
fn metrics_file_after_success_and_failure() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let Some(mut sb) = sandbox(tmp.path(), &[]) else {
        return;
    };
    let prom = tmp.path().join("textfile/hotbak.prom");
    std::fs::create_dir_all(prom.parent().expect("parent")).expect("dir");
    let b = tmp.path().join("b");
    let o = hotbak_backup(&sb, &b, &["--metrics-file", &prom.display().to_string()]);
    assert_ok("hotbak backup --metrics-file", &o);
    let f = metrics(&prom);
    assert!(f.iter().all(|x| x.name.starts_with("hotbak_backup_")));
    assert_eq!(metric(&f, "hotbak_backup_last_run_status"), Some(1.0));
    assert_eq!(metric(&f, "hotbak_backup_last_run_exit_code"), Some(0.0));
    let info = XtrabackupInfo::parse(&read(&b.join("xtrabackup_info"))).expect("info");
    assert_eq!(
        metric(&f, "hotbak_backup_last_run_to_lsn"),
        Some(info.innodb_to_lsn as f64)
    );
    let files = walk_files(&b);
    assert_eq!(
        metric(&f, "hotbak_backup_last_run_files"),
        Some(files as f64)
    );
    assert!(metric(&f, "hotbak_backup_last_run_read_bytes").is_some_and(|v| v > 1e6));
    let held = f
        .iter()
        .find(|x| x.name == "hotbak_backup_last_run_lock_held_seconds")
        .expect("lock hold times");
    assert!(
        held.value(&[("stage", "BLOCK_COMMIT")]).is_some(),
        "{held:?}"
    );
    let success = metric(&f, "hotbak_backup_last_success_timestamp_seconds").expect("success time");
    assert_eq!(
        Some(success),
        metric(&f, "hotbak_backup_last_run_end_timestamp_seconds")
    );
    sb.stop().expect("stop");

    // A failing run (the server is gone): status 0, its exit code (4,
    // server), and the last success carried over.
    let o = hotbak_backup(
        &sb,
        &tmp.path().join("b2"),
        &["--metrics-file", &prom.display().to_string()],
    );
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    let f = metrics(&prom);
    assert_eq!(metric(&f, "hotbak_backup_last_run_status"), Some(0.0));
    assert_eq!(metric(&f, "hotbak_backup_last_run_exit_code"), Some(4.0));
    assert_eq!(
        metric(&f, "hotbak_backup_last_success_timestamp_seconds"),
        Some(success)
    );
    assert_eq!(metric(&f, "hotbak_backup_last_run_files"), None);
    // Replaced atomically: no temporary left beside it.
    let names: Vec<_> = std::fs::read_dir(prom.parent().expect("parent"))
        .expect("dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("hotbak.prom")]);
}

/// Regular files under `dir`, counted.
fn walk_files(dir: &Path) -> usize {
    crate::support::walk_tree(dir)
        .iter()
        .filter(|(_, m)| m.is_file())
        .count()
}

/// README "The backup user": the grants, exactly as documented there.
const README_GRANTS: &[&str] = &[
    "GRANT RELOAD, PROCESS, BINLOG MONITOR, SLAVE MONITOR ON *.* TO 'hotbak'@'localhost'",
    "GRANT CREATE, INSERT ON mysql.mariadb_backup_history TO 'hotbak'@'localhost'",
];

#[test]
fn a_user_with_the_readme_grants_can_back_up() {
    // The README's block is what this test runs.
    let readme = read(&Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"));
    for g in README_GRANTS {
        assert!(readme.contains(&format!("{g};")), "README lacks {g:?}");
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let Some(mut sb) = sandbox(
        tmp.path(),
        &["--log-bin=mysql-bin".to_owned(), "--server-id=1".to_owned()],
    ) else {
        return;
    };
    let root = sb.connect_options();
    let mut stmts = vec![
        "CREATE DATABASE shop",
        "CREATE TABLE shop.i (id INT PRIMARY KEY) ENGINE=InnoDB",
        "CREATE TABLE shop.m (id INT PRIMARY KEY) ENGINE=MyISAM",
        "CREATE TABLE shop.a (id INT PRIMARY KEY) ENGINE=Aria",
        "INSERT INTO shop.i VALUES (1)",
        "INSERT INTO shop.m VALUES (1)",
        "INSERT INTO shop.a VALUES (1)",
        "CREATE USER 'hotbak'@'localhost' IDENTIFIED BY 'Secret-9'",
    ];
    stmts.extend_from_slice(README_GRANTS);
    sql_as(&root, &stmts);
    let b = tmp.path().join("b");
    let mut a = strs(&[
        "backup",
        "--no-defaults",
        "--user=hotbak",
        "--password=Secret-9",
        "--history=grants",
        "--slave-info",
        "--galera-info",
    ]);
    a.extend(place(&sb, &b));
    let o = hotbak(a);
    assert_ok("a backup as the README's backup user", &o);
    let err = stderr(&o);
    assert!(!err.contains("was not written"), "history failed:\n{err}");
    for f in [
        "shop/i.ibd",
        "shop/m.MYD",
        "shop/a.MAD",
        "xtrabackup_binlog_info",
    ] {
        assert!(b.join(f).is_file(), "{f} missing from the backup");
    }
    let info = XtrabackupInfo::parse(&read(&b.join("xtrabackup_info"))).expect("info");
    assert_eq!(
        value(
            &root,
            &format!(
                "SELECT name FROM mysql.mariadb_backup_history WHERE uuid = '{}'",
                info.uuid
            )
        ),
        "grants"
    );
    sb.stop().expect("stop");
}

#[test]
fn man_page_and_completions_from_the_binary() {
    let o = hotbak(strs(&["man"]));
    assert_ok("hotbak man", &o);
    let page = String::from_utf8(o.stdout).expect("roff is UTF-8");
    assert!(page.contains(".TH hotbak 1"), "not a man page");
    for c in [
        "backup",
        "prepare",
        "restore",
        "verify",
        "upload",
        "info",
        "keygen",
        "man",
        "completions",
    ] {
        assert!(
            page.contains(&format!("hotbak\\-{c}(1)")),
            "the man page lacks {c}"
        );
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("man1");
    assert_ok(
        "hotbak man --out-dir",
        &hotbak(strs(&["man", "--out-dir", &dir.display().to_string()])),
    );
    let backup_page = read(&dir.join("hotbak-backup.1"));
    assert!(backup_page.contains("galera\\-info") && backup_page.contains("metrics\\-file"));
    let o = hotbak(strs(&["completions", "bash"]));
    assert_ok("hotbak completions bash", &o);
    assert!(String::from_utf8_lossy(&o.stdout).contains("--target-dir"));
    let o = hotbak(strs(&["completions", "tcsh"]));
    assert_eq!(
        o.status.code(),
        Some(2),
        "an unknown shell is a usage error"
    );
}
