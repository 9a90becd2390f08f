//! `hotbak restore` (issue 17): a prepared backup of a real server (two
//! undo tablespaces, InnoDB, MyISAM and Aria tables) restored into the
//! directories a target server's option file names, in place, and after an
//! interruption; servers started on the results hold the data. One backup
//! is taken and prepared once and copied for each test.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use hotbak::mysql::{ConnectOptions, Session};
use hotbak::sandbox::{Sandbox, SandboxOptions};
use hotbak::testkit::{self, Binaries};

use crate::support::{bin, copy_dir, rt, tool, user_ids, walk_tree, DefaultsFileServer};

/// The backup shared by the tests: prepared, and a copy before prepare.
struct Fixture {
    stream: PathBuf,
    prepared: PathBuf,
    unprepared: PathBuf,
    sums: BTreeMap<String, u64>,
}

static FIXTURE: OnceLock<Option<Fixture>> = OnceLock::new();

const UNDO: &str = "--innodb-undo-tablespaces=2";

async fn checksums(conn: &ConnectOptions) -> BTreeMap<String, u64> {
    let mut s = Session::connect(conn).await.expect("connect");
    let sums = testkit::checksum_all(&mut s).await.expect("checksums");
    s.close().await.expect("close");
    sums
}

fn run_hotbak(args: &[&OsStr]) -> (bool, String) {
    let (st, out) = testkit::run_tool(&bin("hotbak"), args).expect("hotbak starts");
    (st.success(), format!("{st}: {out}"))
}

fn run_ok(args: &[&OsStr]) -> String {
    let (ok, out) = run_hotbak(args);
    assert!(ok, "hotbak {args:?} failed: {out}");
    out
}

fn build_fixture() -> Option<Fixture> {
    tool("mariadbd")?;
    tool("mariadb-install-db")?;
    let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("restore_e2e");
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).expect("fixture dir");
    let opts = SandboxOptions {
        server_args: vec![UNDO.to_owned()],
        ..Default::default()
    };
    let mut sb = Sandbox::create(&root.join("src"), opts).expect("sandbox starts");
    if !sb.datadir().join("undo001").exists() {
        // 10.11 makes the undo tablespaces at a start after a slow shutdown.
        rt().block_on(async {
            let mut s = Session::connect(&sb.connect_options())
                .await
                .expect("connect");
            s.execute("SET GLOBAL innodb_fast_shutdown = 0")
                .await
                .expect("slow shutdown");
            s.close().await.expect("close");
        });
        sb.restart().expect("restart");
    }
    assert!(
        sb.datadir().join("undo002").exists(),
        "no undo tablespaces in the source"
    );
    let sums = rt().block_on(async {
        let mut s = Session::connect(&sb.connect_options()).await.expect("connect");
        for q in [
            "CREATE DATABASE r",
            "CREATE TABLE r.i (id INT PRIMARY KEY, v VARCHAR(200)) ENGINE=InnoDB",
            "CREATE TABLE r.m (id INT PRIMARY KEY, v VARCHAR(200)) ENGINE=MyISAM",
            "CREATE TABLE r.a (id INT PRIMARY KEY, v VARCHAR(200)) ENGINE=Aria",
            "INSERT INTO r.i SELECT seq, REPEAT(CHAR(65 + seq % 26), 150) FROM mysql.seq_1_to_20000",
            "INSERT INTO r.m SELECT seq, REPEAT('m', 100) FROM mysql.seq_1_to_5000",
            "INSERT INTO r.a SELECT seq, REPEAT('a', 100) FROM mysql.seq_1_to_5000",
            // Undo records in the undo tablespaces at backup time.
            "UPDATE r.i SET v = 'changed' WHERE id % 7 = 0",
        ] {
            s.execute(q).await.unwrap_or_else(|e| panic!("{q}: {e}"));
        }
        s.close().await.expect("close");
        checksums(&sb.connect_options()).await
    });
    let raw = root.join("backup");
    // The stream is kept for --from-stream.
    let stream = root.join("backup.xbs");
    let st = testkit::backup_command(&bin("hotbak"), sb.socket(), &[])
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stream).expect("stream file"))
        .stderr(Stdio::null())
        .status()
        .expect("hotbak backup");
    assert!(st.success(), "backup failed: {st}");
    sb.stop().expect("source stops");
    let st = Command::new(bin("xbextract"))
        .arg("-x")
        .arg("-C")
        .arg(&raw)
        .stdin(std::fs::File::open(&stream).expect("stream"))
        .status()
        .expect("xbextract");
    assert!(st.success(), "xbextract failed: {st}");
    assert!(raw.join("undo001").exists() && raw.join("undo002").exists());
    let prepared = root.join("prepared");
    copy_dir(&raw, &prepared);
    run_ok(&[
        OsStr::new("prepare"),
        OsStr::new("--target-dir"),
        prepared.as_os_str(),
    ]);
    Some(Fixture {
        stream,
        prepared,
        unprepared: raw,
        sums,
    })
}

fn fixture() -> Option<&'static Fixture> {
    FIXTURE.get_or_init(build_fixture).as_ref()
}

/// The option file of a server whose undo tablespaces, redo log and system
/// tablespace live outside its datadir.
fn write_cnf(w: &Path) -> PathBuf {
    let cnf = w.join("my.cnf");
    let d = |n: &str| w.join(n).display().to_string();
    std::fs::create_dir_all(w.join("run/tmp")).expect("run dir");
    std::fs::write(
        &cnf,
        format!(
            "[client]\nsocket={sock}\n\n[mysqld]\ndatadir={data}\ninnodb_data_home_dir={home}\n\
             innodb_undo_directory={undo}\ninnodb_log_group_home_dir={redo}\n{undo_n}\n\
             socket={sock}\npid-file={run}/mariadbd.pid\nlog-error={run}/error.log\n\
             tmpdir={run}/tmp\nskip-networking\ninnodb-use-native-aio=0\ninnodb-buffer-pool-size=64M\n",
            sock = w.join("run/mysqld.sock").display(),
            data = d("data"),
            home = d("home"),
            undo = d("undo"),
            redo = d("redo"),
            run = d("run"),
            undo_n = UNDO.trim_start_matches("--"),
        ),
    )
    .expect("my.cnf");
    cnf
}

/// Owner and modes of every restored entry: directories 0750, files 0640.
fn assert_owner_modes(dir: &Path, ids: (u32, u32)) {
    let tree = walk_tree(dir);
    assert!(tree.len() > 1, "{} is empty", dir.display());
    for (p, m) in tree {
        assert_eq!((m.uid(), m.gid()), ids, "owner of {}", p.display());
        let want = if m.is_dir() { 0o750 } else { 0o640 };
        assert_eq!(m.mode() & 0o7777, want, "mode of {}", p.display());
    }
}

/// Into a target whose option file puts the system tablespace, the undo
/// tablespaces and the redo log in their own directories: first refused
/// while one of them is not empty (naming the file, nothing written), then
/// restored (one `syncfs` seen by strace, `copy_file_range` used), each file
/// where the option file says, mysql:mysql 0640/0750, and a server started
/// with that option file holds the data.
#[test]
fn restore_e2e_into_option_file_layout() {
    let Some(f) = fixture() else { return };
    let t = tempfile::tempdir().expect("tempdir");
    let w = t.path();
    let backup = w.join("backup");
    copy_dir(&f.prepared, &backup);
    let cnf = write_cnf(w);
    let restore_args = |extra: &[&OsStr]| -> Vec<std::ffi::OsString> {
        let mut v: Vec<std::ffi::OsString> = vec![
            "restore".into(),
            "--target-dir".into(),
            backup.clone().into(),
            "--defaults-file".into(),
            cnf.clone().into(),
            "--progress".into(),
            "lines".into(),
        ];
        v.extend(extra.iter().map(|s| s.to_os_string()));
        v
    };
    // Not empty: refused with usage (2), naming the file, writing nothing.
    std::fs::create_dir_all(w.join("undo")).expect("undo dir");
    std::fs::write(w.join("undo/stray.txt"), b"x").expect("stray");
    let args = restore_args(&[]);
    let argv: Vec<&OsStr> = args.iter().map(|s| s.as_os_str()).collect();
    let (st, out) = testkit::run_tool(&bin("hotbak"), &argv).expect("hotbak");
    assert_eq!(st.code(), Some(2), "{out}");
    assert!(
        out.contains("innodb_undo_directory") && out.contains("stray.txt"),
        "{out}"
    );
    assert!(
        !w.join("data").exists(),
        "the refused restore wrote the datadir"
    );
    std::fs::remove_file(w.join("undo/stray.txt")).expect("rm stray");

    // Restore, under strace when it is there.
    let trace = w.join("strace.out");
    let strace = tool("strace");
    let out = match &strace {
        Some(s) => {
            let mut argv: Vec<std::ffi::OsString> = vec![
                "-f".into(),
                "-e".into(),
                "trace=syncfs,copy_file_range".into(),
                "-o".into(),
                trace.clone().into(),
                bin("hotbak").into(),
            ];
            argv.extend(restore_args(&[]));
            let argv: Vec<&OsStr> = argv.iter().map(|s| s.as_os_str()).collect();
            let (st, out) = testkit::run_tool(s, &argv).expect("strace");
            assert!(st.success(), "{out}");
            out
        }
        None => {
            let args = restore_args(&[]);
            run_ok(&args.iter().map(|s| s.as_os_str()).collect::<Vec<_>>())
        }
    };
    eprintln!("{out}");
    assert!(
        out.contains("restore done") && out.contains("synced 1 filesystem(s)"),
        "{out}"
    );
    if strace.is_some() {
        let tr = std::fs::read_to_string(&trace).expect("strace output");
        let syncfs: Vec<&str> = tr.lines().filter(|l| l.contains("syncfs(")).collect();
        assert_eq!(syncfs.len(), 1, "one syncfs for one filesystem:\n{tr}");
        // With -f, strace may split the call across two lines: "syncfs(6
        // <unfinished ...>" and, later, "<... syncfs resumed>) = 0".
        let result = if syncfs[0].contains("<unfinished") {
            tr.lines()
                .find(|l| l.contains("<... syncfs resumed>"))
                .unwrap_or_else(|| panic!("syncfs never resumed:\n{tr}"))
        } else {
            syncfs[0]
        };
        assert!(result.contains("= 0"), "syncfs failed: {result}\n{tr}");
        assert!(tr.contains("copy_file_range("), "no copy_file_range:\n{tr}");
    }
    // Each file where the option file says.
    for (dir, file) in [
        ("home", "ibdata1"),
        ("undo", "undo001"),
        ("undo", "undo002"),
        ("redo", "ib_logfile0"),
        ("data", "r/i.ibd"),
        ("data", "r/m.MYD"),
        ("data", "aria_log_control"),
    ] {
        assert!(w.join(dir).join(file).is_file(), "{dir}/{file} missing");
    }
    for gone in [
        "ibdata1",
        "undo001",
        "ib_logfile0",
        "xtrabackup_checkpoints",
        "backup-my.cnf",
        "hotbak_manifest",
        hotbak::restore::MARKER,
    ] {
        assert!(!w.join("data").join(gone).exists(), "data/{gone} is there");
    }
    let mysql = user_ids("mysql");
    for d in ["data", "home", "undo", "redo"] {
        assert_owner_modes(&w.join(d), mysql);
    }
    let server =
        DefaultsFileServer::start(&cnf, &w.join("run/mysqld.sock"), &w.join("run/error.log"));
    let sums = rt().block_on(checksums(&server.connect_options()));
    assert_eq!(sums, f.sums, "the restored server's data differs");
    drop(server);
}

/// `--in-place`: an unprepared backup is refused; the prepared one becomes
/// the datadir (metadata files gone, owner `nobody` 0640/0750), a server
/// started on it holds the data, and a second run says it is done.
#[test]
fn restore_e2e_in_place() {
    let Some(f) = fixture() else { return };
    let t = tempfile::tempdir().expect("tempdir");
    let raw = t.path().join("raw");
    copy_dir(&f.unprepared, &raw);
    let (ok, out) = run_hotbak(&[
        OsStr::new("restore"),
        OsStr::new("--in-place"),
        OsStr::new("--target-dir"),
        raw.as_os_str(),
    ]);
    assert!(!ok && out.contains("hotbak prepare"), "{out}");
    assert!(raw.join("xtrabackup_checkpoints").exists());

    let dir = t.path().join("db");
    copy_dir(&f.prepared, &dir);
    let out = run_ok(&[
        OsStr::new("restore"),
        OsStr::new("--in-place"),
        OsStr::new("--target-dir"),
        dir.as_os_str(),
        OsStr::new("--owner"),
        OsStr::new("nobody"),
    ]);
    eprintln!("{out}");
    assert!(out.contains("is now a datadir"), "{out}");
    for gone in [
        "xtrabackup_checkpoints",
        "xtrabackup_info",
        "xtrabackup_binlog_info",
        "backup-my.cnf",
        "hotbak_manifest",
        "hotbak_stream_info",
    ] {
        assert!(!dir.join(gone).exists(), "{gone} left in place");
    }
    assert_owner_modes(&dir, user_ids("nobody"));
    let (ok, out) = run_hotbak(&[
        OsStr::new("restore"),
        OsStr::new("--in-place"),
        OsStr::new("--target-dir"),
        dir.as_os_str(),
    ]);
    assert!(
        !ok && out.contains("in-place restore already finished"),
        "{out}"
    );
    let mut sb = Sandbox::start_on(
        &dir,
        &t.path().join("run"),
        SandboxOptions {
            server_args: vec![UNDO.to_owned()],
            ..Default::default()
        },
    )
    .expect("server starts on the in-place datadir");
    let sums = rt().block_on(checksums(&sb.connect_options()));
    sb.stop().expect("stops");
    assert_eq!(sums, f.sums, "the in-place server's data differs");
}

/// A restore killed mid-copy (`--parallel 1 --max-rate 1` makes the copy
/// take minutes; SIGKILL after a second) leaves the marker: the rerun is
/// refused saying the restore was interrupted; after emptying the
/// directory the rerun succeeds and the marker is gone.
#[test]
fn restore_e2e_interrupted_and_rerun() {
    let Some(f) = fixture() else { return };
    let t = tempfile::tempdir().expect("tempdir");
    let data = t.path().join("data");
    let args = |extra: &[&str]| {
        let mut c = Command::new(bin("hotbak"));
        c.arg("restore")
            .arg("--target-dir")
            .arg(&f.prepared)
            .arg("--datadir")
            .arg(&data)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        c
    };
    let mut child = args(&["--parallel", "1", "--max-rate", "1"])
        .spawn()
        .expect("hotbak starts");
    let started = Instant::now();
    while !(data.join(hotbak::restore::MARKER).exists() && testkit::dir_size(&data) > 500_000) {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the slow restore made no progress"
        );
        assert!(
            child.try_wait().expect("try_wait").is_none(),
            "the slow restore ended early"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().expect("kill our restore");
    let _ = child.wait();
    let out = args(&[]).output().expect("rerun");
    let text = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(
        text.contains("interrupted restore") && text.contains(hotbak::restore::MARKER),
        "{text}"
    );
    std::fs::remove_dir_all(&data).expect("empty the datadir");
    let out = args(&[]).output().expect("rerun");
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(!data.join(hotbak::restore::MARKER).exists());
    assert!(data.join("r/i.ibd").is_file() && data.join("undo002").is_file());
}

/// `--in-place` with files outside the datadir: an InnoDB `DATA DIRECTORY`
/// table, a MyISAM table with `DATA DIRECTORY`/`INDEX DIRECTORY`
/// (symlinks) and a database directory that is a symlink. The source's
/// remote directory is moved away (as on another host); the in-place
/// restore moves those files back to their recorded places and makes the
/// symlinks again, and a server on the directory holds the data.
#[test]
fn restore_e2e_in_place_with_files_outside_the_datadir() {
    if tool("mariadbd").is_none() || tool("mariadb-install-db").is_none() {
        return;
    }
    let t = tempfile::tempdir().expect("tempdir");
    let root = t.path();
    let remote = root.join("remote");
    for d in ["inno", "myd", "myi", "dbs/sdb"] {
        std::fs::create_dir_all(remote.join(d)).expect("remote dir");
    }
    let mut sb = Sandbox::create(&root.join("src"), SandboxOptions::default()).expect("sandbox");
    std::os::unix::fs::symlink(remote.join("dbs/sdb"), sb.datadir().join("sdb"))
        .expect("symlink the database directory");
    let sums = rt().block_on(async {
        let mut s = Session::connect(&sb.connect_options()).await.expect("connect");
        let r = |d: &str| remote.join(d).display().to_string();
        for q in [
            "CREATE DATABASE rdb".to_owned(),
            format!("CREATE TABLE rdb.t (id INT PRIMARY KEY, v VARCHAR(100)) ENGINE=InnoDB DATA DIRECTORY='{}'", r("inno")),
            format!(
                "CREATE TABLE rdb.m (id INT PRIMARY KEY, v VARCHAR(100)) ENGINE=MyISAM DATA DIRECTORY='{}' INDEX DIRECTORY='{}'",
                r("myd"),
                r("myi")
            ),
            "CREATE TABLE sdb.s (id INT PRIMARY KEY, v VARCHAR(100)) ENGINE=InnoDB".to_owned(),
            "INSERT INTO rdb.t SELECT seq, REPEAT('t', 90) FROM mysql.seq_1_to_3000".to_owned(),
            "INSERT INTO rdb.m SELECT seq, REPEAT('m', 90) FROM mysql.seq_1_to_3000".to_owned(),
            "INSERT INTO sdb.s SELECT seq, REPEAT('s', 90) FROM mysql.seq_1_to_3000".to_owned(),
        ] {
            s.execute(&q).await.unwrap_or_else(|e| panic!("{q}: {e}"));
        }
        s.close().await.expect("close");
        checksums(&sb.connect_options()).await
    });
    let dir = root.join("db");
    let bins = Binaries {
        hotbak: bin("hotbak"),
        xbextract: bin("xbextract"),
    };
    let o = testkit::run_stream_backup(&bins, sb.socket(), &dir, &root.join("logs"), &[])
        .expect("backup runs");
    assert!(o.success(), "backup failed: {o}");
    sb.stop().expect("source stops");
    std::fs::rename(&remote, root.join("remote-of-the-source"))
        .expect("move the source's files away");
    run_ok(&[
        OsStr::new("prepare"),
        OsStr::new("--target-dir"),
        dir.as_os_str(),
    ]);
    let out = run_ok(&[
        OsStr::new("restore"),
        OsStr::new("--in-place"),
        OsStr::new("--target-dir"),
        dir.as_os_str(),
    ]);
    eprintln!("{out}");
    assert!(out.contains("outside the datadir"), "{out}");
    assert!(remote.join("inno/rdb/t.ibd").is_file());
    assert!(remote.join("myd/m.MYD").is_file() && remote.join("myi/m.MYI").is_file());
    assert!(remote.join("dbs/sdb/s.ibd").is_file());
    assert!(
        !dir.join("rdb/t.ibd").exists(),
        "the remote tablespace stayed in the datadir"
    );
    for (link, target) in [
        ("rdb/m.MYD", remote.join("myd/m.MYD")),
        ("sdb", remote.join("dbs/sdb")),
    ] {
        assert_eq!(std::fs::read_link(dir.join(link)).expect(link), target);
    }
    assert_owner_modes(&remote.join("inno"), user_ids("mysql"));
    let mut srv = Sandbox::start_on(&dir, &root.join("run"), SandboxOptions::default())
        .expect("server starts in place");
    let got = rt().block_on(checksums(&srv.connect_options()));
    srv.stop().expect("stops");
    assert_eq!(got, sums, "the in-place server's data differs");
}

/// `--in-place --from-stream`: the kept stream on stdin becomes a datadir
/// (extracted, prepared, restored in place) in one command; a second run
/// into the same directory is refused; a server on it holds the data.
#[test]
fn restore_e2e_from_stream_in_place() {
    let Some(f) = fixture() else { return };
    let t = tempfile::tempdir().expect("tempdir");
    let dir = t.path().join("db");
    let run = || {
        Command::new(bin("hotbak"))
            .arg("restore")
            .arg("--in-place")
            .arg("--from-stream")
            .arg("--target-dir")
            .arg(&dir)
            .arg("--owner")
            .arg("nobody")
            .stdin(std::fs::File::open(&f.stream).expect("stream"))
            .output()
            .expect("hotbak restore --from-stream")
    };
    let out = run();
    let text = String::from_utf8_lossy(&out.stderr);
    eprintln!("{text}");
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("extracted") && text.contains("is now a datadir"),
        "{text}"
    );
    assert!(!dir.join("xtrabackup_checkpoints").exists());
    assert_owner_modes(&dir, user_ids("nobody"));
    let out = run();
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut sb = Sandbox::start_on(
        &dir,
        &t.path().join("run"),
        SandboxOptions {
            server_args: vec![UNDO.to_owned()],
            ..Default::default()
        },
    )
    .expect("server starts on the recovered datadir");
    let sums = rt().block_on(checksums(&sb.connect_options()));
    sb.stop().expect("stops");
    assert_eq!(sums, f.sums, "the recovered server's data differs");
}
