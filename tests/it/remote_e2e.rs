//! Tables stored outside the datadir (issue 19): InnoDB `DATA DIRECTORY`
//! tablespaces (a `.isl` in the datadir), MyISAM `DATA DIRECTORY`/`INDEX
//! DIRECTORY` files (symlinks in the datadir), a partition elsewhere, and a
//! database directory that is a symlink. Each test runs its own server.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hotbak::mysql::{ConnectOptions, Session};
use hotbak::sandbox::{Sandbox, SandboxOptions};
use hotbak::testkit;

use crate::support::{bin, binlog_info, copy_dir, replay_binlog, rt, source_state, tool};

const KEY: [u8; 32] = *b"hotbak remote tables test key 32";

/// The directories outside the datadir.
struct Remote {
    root: PathBuf,
}

impl Remote {
    fn new(root: PathBuf) -> Remote {
        for d in ["inno", "myd", "myi", "dbs/sdb"] {
            std::fs::create_dir_all(root.join(d)).expect("remote dir");
        }
        Remote { root }
    }

    fn dir(&self, name: &str) -> String {
        self.root.join(name).display().to_string()
    }
}

/// Tables in every place a file can live outside the datadir.
async fn setup(sb: &Sandbox, r: &Remote) {
    // A database directory that is a symlink (made before the server sees it).
    std::os::unix::fs::symlink(r.root.join("dbs/sdb"), sb.datadir().join("sdb"))
        .expect("symlink the database directory");
    let mut s = Session::connect(&sb.connect_options())
        .await
        .expect("connect");
    let stmts = [
        "CREATE DATABASE rdb".to_owned(),
        format!(
            "CREATE TABLE rdb.t (id INT PRIMARY KEY, v VARCHAR(200)) ENGINE=InnoDB DATA DIRECTORY='{}'",
            r.dir("inno")
        ),
        format!(
            "CREATE TABLE rdb.m (id INT PRIMARY KEY, v VARCHAR(200)) ENGINE=MyISAM DATA DIRECTORY='{}' INDEX DIRECTORY='{}'",
            r.dir("myd"),
            r.dir("myi")
        ),
        format!(
            "CREATE TABLE rdb.p (id INT PRIMARY KEY, v VARCHAR(200)) ENGINE=InnoDB \
             PARTITION BY RANGE (id) (PARTITION p0 VALUES LESS THAN (100000000) DATA DIRECTORY='{}', \
             PARTITION p1 VALUES LESS THAN MAXVALUE)",
            r.dir("inno")
        ),
        "CREATE TABLE sdb.s (id INT PRIMARY KEY, v VARCHAR(200)) ENGINE=InnoDB".to_owned(),
        "CREATE TABLE sdb.sm (id INT PRIMARY KEY, v VARCHAR(200)) ENGINE=MyISAM".to_owned(),
    ];
    for q in &stmts {
        s.execute(q).await.unwrap_or_else(|e| panic!("{q}: {e}"));
    }
    for t in ["rdb.t", "rdb.m", "rdb.p", "sdb.s", "sdb.sm"] {
        s.execute(&format!(
            "INSERT INTO {t} SELECT seq, REPEAT(CHAR(65 + seq % 26), 150) FROM mysql.seq_1_to_3000"
        ))
        .await
        .expect("seed rows");
    }
    s.close().await.expect("close");
}

/// Insert into every remote table until stopped; returns the rows written.
fn start_writer(conn: ConnectOptions, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<u64> {
    tokio::spawn(async move {
        let mut s = Session::connect(&conn).await.expect("writer connects");
        let mut id = 10_000u64;
        while !stop.load(Ordering::Relaxed) {
            id += 1;
            for t in ["rdb.t", "rdb.m", "rdb.p", "sdb.s", "sdb.sm"] {
                s.execute(&format!("INSERT INTO {t} VALUES ({id}, REPEAT('w', 120))"))
                    .await
                    .expect("writer insert");
            }
            s.execute(&format!(
                "UPDATE rdb.t SET v = 'u{id}' WHERE id = {}",
                id % 3000 + 1
            ))
            .await
            .expect("writer update");
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
        let _ = s.close().await;
        id - 10_000
    })
}

/// BLAKE3 of every file under `dir`, by path.
fn hash_tree(dir: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir") {
            let e = e.expect("entry");
            let ft = e.file_type().expect("file type");
            if ft.is_dir() {
                stack.push(e.path());
            } else if ft.is_file() {
                let bytes = std::fs::read(e.path()).expect("read");
                out.insert(e.path(), blake3::hash(&bytes).to_hex().to_string());
            }
        }
    }
    out
}

/// Wait until the source's buffer pool has no dirty pages (so its remote
/// files stop changing) and the MyISAM tables are closed.
async fn quiesce(conn: &ConnectOptions) {
    let mut s = Session::connect(conn).await.expect("connect");
    s.execute("SET GLOBAL innodb_max_dirty_pages_pct = 0")
        .await
        .expect("dirty pct");
    s.execute("FLUSH TABLES").await.expect("flush tables");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let dirty: u64 = s
            .query("SHOW GLOBAL STATUS LIKE 'Innodb_buffer_pool_pages_dirty'")
            .await
            .expect("status")
            .first()
            .and_then(|r| r.at(1).and_then(|v| v.parse().ok()))
            .unwrap_or(u64::MAX);
        if dirty == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{dirty} dirty pages after 60 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    s.close().await.expect("close");
}

fn run_ok(program: &Path, args: &[&OsStr]) -> String {
    let (st, out) = testkit::run_tool(program, args).expect("tool starts");
    assert!(
        st.success(),
        "{} {args:?} failed ({st}):\n{out}",
        program.display()
    );
    out
}

/// `hotbak backup --stream OPTS | xbextract -x -C dest --decrypt-key-file K`.
fn stream_backup(socket: &Path, dest: &Path, key: &Path, extra: &[&str]) -> (bool, String) {
    std::fs::create_dir_all(dest).expect("dest");
    let mut hb = crate::support::spawn_stream_backup(
        socket,
        &extra.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>(),
    );
    let pipe = hb.stdout.take().expect("pipe");
    let xb = Command::new(bin("xbextract"))
        .arg("-x")
        .arg("-C")
        .arg(dest)
        .arg("--decrypt-key-file")
        .arg(key)
        .stdin(Stdio::from(pipe))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("xbextract starts");
    let hb = hb.wait_with_output().expect("hotbak");
    let xb = xb.wait_with_output().expect("xbextract");
    let text = format!(
        "--- hotbak {}:\n{}\n--- xbextract {}:\n{}",
        hb.status,
        String::from_utf8_lossy(&hb.stderr),
        xb.status,
        String::from_utf8_lossy(&xb.stderr)
    );
    (hb.status.success() && xb.status.success(), text)
}

/// Start a server on `datadir`, replay the source's binlogs from the
/// backup's position, and return every table's checksum and CHECK TABLE.
async fn replayed_sums(
    datadir: &Path,
    run: &Path,
    binlogs: &[PathBuf],
    pos: u64,
) -> BTreeMap<String, u64> {
    let mut sb = Sandbox::start_on(datadir, run, SandboxOptions::default())
        .expect("server starts on the restored datadir");
    replay_binlog(binlogs, pos, sb.socket());
    let mut s = Session::connect(&sb.connect_options())
        .await
        .expect("connect");
    for t in ["rdb.t", "rdb.m", "rdb.p", "sdb.s", "sdb.sm"] {
        let r = s
            .query(&format!("CHECK TABLE {t}"))
            .await
            .expect("check table");
        let status = r.last().and_then(|r| r.at(3)).unwrap_or("").to_owned();
        assert_eq!(status, "OK", "CHECK TABLE {t}: {status}");
    }
    let sums = testkit::checksum_all(&mut s).await.expect("checksums");
    s.close().await.expect("close");
    sb.stop().expect("stops");
    sums
}

fn assert_same(source: &BTreeMap<String, u64>, got: &BTreeMap<String, u64>, who: &str) {
    crate::support::assert_sums_match(source, got, who);
    for t in ["rdb.t", "rdb.m", "rdb.p", "sdb.s", "sdb.sm"] {
        assert!(source.contains_key(t), "{t} missing from {source:?}");
    }
}

#[test]
#[allow(clippy::too_many_lines)]
fn remote_tables_backup_prepare_restore() {
    let (Some(_), Some(_), Some(mariabackup)) = (
        tool("mariadbd"),
        tool("mariadb-install-db"),
        tool("mariabackup"),
    ) else {
        return;
    };
    let (Some(_), Some(_)) = (tool("mariadb-binlog"), tool("mariadb")) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let remote = Remote::new(root.join("remote"));
    let mut sb = Sandbox::create(
        &root.join("src"),
        SandboxOptions {
            server_args: vec!["--log-bin=mysql-bin".into(), "--server-id=1".into()],
            ..Default::default()
        },
    )
    .expect("sandbox starts");
    let key = root.join("key");
    std::fs::write(&key, KEY).expect("key");
    let backup = root.join("backup");
    rt().block_on(async {
        setup(&sb, &remote).await;
        let stop = Arc::new(AtomicBool::new(false));
        let writer = start_writer(sb.connect_options(), stop.clone());
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (socket, b, k) = (sb.socket().to_owned(), backup.clone(), key.clone());
        let (ok, log) = tokio::task::spawn_blocking(move || {
            stream_backup(
                &socket,
                &b,
                &k,
                &[
                    "--compress",
                    "--encrypt=AES256-GCM",
                    "--encrypt-key-file",
                    k.to_str().expect("utf-8 path"),
                ],
            )
        })
        .await
        .expect("join");
        tokio::time::sleep(Duration::from_millis(300)).await;
        stop.store(true, Ordering::Relaxed);
        let rows = writer.await.expect("writer");
        assert!(ok, "backup failed:\n{log}");
        assert!(log.contains("completed OK"), "{log}");
        assert!(log.contains("catalog check"), "{log}");
        assert!(rows > 10, "the writer ran during the backup: {rows}");
        // Every remote file is in the backup under its datadir-relative name.
        for f in [
            "rdb/t.ibd",
            "rdb/t.isl",
            "rdb/m.MYD",
            "rdb/m.MYI",
            "rdb/p#P#p0.ibd",
            "rdb/p#P#p0.isl",
            "rdb/p#P#p1.ibd",
            "sdb/s.ibd",
            "sdb/sm.MYD",
            "hotbak_links",
        ] {
            let p = backup.join(f);
            assert!(
                std::fs::symlink_metadata(&p).is_ok_and(|m| m.is_file()),
                "{f} is not a regular file in the backup"
            );
        }
        let links = std::fs::read_to_string(backup.join("hotbak_links")).expect("links");
        assert!(links.contains(&remote.dir("myd")), "{links}");
        assert!(links.contains(&remote.dir("dbs/sdb")), "{links}");

        // The source's final state, and its binlogs.
        let (first, pos) = binlog_info(&backup);
        let (source_sums, binlogs) = source_state(&sb, &first).await;

        // Prepare (ours, then the peer's on a copy) must not touch the live files.
        quiesce(&sb.connect_options()).await;
        let live = hash_tree(&remote.root);
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(live, hash_tree(&remote.root), "the source is still writing");
        assert!(live.len() >= 5, "{live:?}");
        let peer = root.join("backup-peer");
        copy_dir(&backup, &peer);
        // The mariadbd recovery's relocation of the redo's remote names is
        // what this checks (the native default needs none), with a relative
        // --target-dir as a DBA types it (the recovery server runs in a
        // directory of its own: it once failed to start, with no error log).
        let prep = Command::new(bin("hotbak"))
            .current_dir(backup.parent().expect("parent"))
            .args(["prepare", "--server-recovery", "--target-dir"])
            .arg(backup.file_name().expect("name"))
            .output()
            .expect("hotbak starts");
        let out = format!(
            "{}{}",
            String::from_utf8_lossy(&prep.stdout),
            String::from_utf8_lossy(&prep.stderr)
        );
        assert!(
            prep.status.success(),
            "prepare failed ({}):\n{out}",
            prep.status
        );
        let relocated: u64 = out
            .split("link files set aside and ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("prepare's summary: {out}"));
        assert!(
            relocated > 0,
            "the redo names the remote tablespaces, written during the backup: {out}"
        );
        assert_eq!(
            live,
            hash_tree(&remote.root),
            "hotbak prepare changed the live server's remote files"
        );
        assert!(backup.join("rdb/t.isl").is_file(), "link file put back");
        run_ok(
            &mariabackup,
            &[
                OsStr::new("--no-defaults"),
                OsStr::new("--prepare"),
                OsStr::new(&format!("--target-dir={}", peer.display())),
            ],
        );
        assert_eq!(
            live,
            hash_tree(&remote.root),
            "mariabackup --prepare changed the live server's remote files"
        );

        // As if on another host: the source is gone, and so are its remote directories.
        sb.stop().expect("source stops");
        let away = root.join("remote-away");
        std::fs::rename(&remote.root, &away).expect("move the remote dirs away");

        let ours = root.join("ours-data");
        let out = run_ok(
            &bin("hotbak"),
            &[
                OsStr::new("restore"),
                OsStr::new("--target-dir"),
                backup.as_os_str(),
                OsStr::new("--datadir"),
                ours.as_os_str(),
            ],
        );
        assert!(out.contains("outside the datadir"), "{out}");
        assert!(remote.root.join("inno/rdb/t.ibd").is_file());
        assert!(remote.root.join("inno/rdb/p#P#p0.ibd").is_file());
        assert!(remote.root.join("myd/m.MYD").is_file());
        assert!(remote.root.join("myi/m.MYI").is_file());
        assert!(remote.root.join("dbs/sdb/s.ibd").is_file());
        for l in ["rdb/m.MYD", "rdb/m.MYI", "sdb"] {
            let md = std::fs::symlink_metadata(ours.join(l)).expect("restored");
            assert!(md.file_type().is_symlink(), "{l} is a symlink again");
        }
        let sums = replayed_sums(&ours, &root.join("ours-run"), &binlogs, pos).await;
        assert_same(&source_sums, &sums, "hotbak prepare + restore");

        // A second restore of the same backup refuses to overwrite the
        // remote files the first one placed, before writing anything.
        let again = root.join("again-data");
        let (st, out) = testkit::run_tool(
            &bin("hotbak"),
            &[
                OsStr::new("restore"),
                OsStr::new("--target-dir"),
                backup.as_os_str(),
                OsStr::new("--datadir"),
                again.as_os_str(),
            ],
        )
        .expect("restore runs");
        assert_eq!(st.code(), Some(2), "{out}");
        assert!(out.contains("refusing to overwrite"), "{out}");
        assert!(!again.join("rdb").exists(), "nothing written on refusal");
        // ... and --into-datadir pulls everything into the new datadir.
        let pulled = root.join("pulled-data");
        run_ok(
            &bin("hotbak"),
            &[
                OsStr::new("restore"),
                OsStr::new("--target-dir"),
                backup.as_os_str(),
                OsStr::new("--datadir"),
                pulled.as_os_str(),
                OsStr::new("--into-datadir"),
            ],
        );
        assert!(pulled.join("rdb/t.ibd").is_file());
        assert!(std::fs::symlink_metadata(pulled.join("rdb/m.MYD")).is_ok_and(|m| m.is_file()));
        let isl = std::fs::read_to_string(pulled.join("rdb/t.isl")).expect("isl");
        assert!(isl.starts_with(&pulled.display().to_string()), "{isl}");
        let sums = replayed_sums(&pulled, &root.join("pulled-run"), &binlogs, pos).await;
        assert_same(&source_sums, &sums, "hotbak restore --into-datadir");

        // The peer's prepare and copy-back of our backup, on a host without
        // the remote directories.
        std::fs::remove_dir_all(&remote.root).expect("clear remote");
        let theirs = root.join("peer-data");
        run_ok(
            &mariabackup,
            &[
                OsStr::new("--no-defaults"),
                OsStr::new("--copy-back"),
                OsStr::new(&format!("--target-dir={}", peer.display())),
                OsStr::new(&format!("--datadir={}", theirs.display())),
            ],
        );
        assert!(remote.root.join("inno/rdb/t.ibd").is_file());
        let sums = replayed_sums(&theirs, &root.join("peer-run"), &binlogs, pos).await;
        assert_same(&source_sums, &sums, "mariabackup --prepare + --copy-back");
    });
}

#[test]
fn backup_fails_when_a_table_file_cannot_be_read() {
    let (Some(_), Some(_), Some(setpriv)) = (
        tool("mariadbd"),
        tool("mariadb-install-db"),
        tool("setpriv"),
    ) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let remote = Remote::new(root.join("remote"));
    let sb = Sandbox::create(&root.join("src"), SandboxOptions::default()).expect("sandbox");
    rt().block_on(setup(&sb, &remote));
    use std::os::unix::fs::PermissionsExt;
    for d in ["myd", "inno/rdb"] {
        std::fs::set_permissions(remote.root.join(d), std::fs::Permissions::from_mode(0o000))
            .expect("chmod 000");
    }
    // The backup runs as a user that cannot read those directories: root
    // without the capabilities that bypass file permissions.
    let target = root.join("backup");
    let out = Command::new(&setpriv)
        .arg("--bounding-set=-dac_override,-dac_read_search")
        .arg("--inh-caps=-dac_override,-dac_read_search")
        .arg(bin("hotbak"))
        .args([
            "backup",
            "--no-defaults",
            "-u",
            "root",
            "--progress",
            "lines",
        ])
        .arg("--socket")
        .arg(sb.socket())
        .arg("--target-dir")
        .arg(&target)
        .stdin(Stdio::null())
        .output()
        .expect("hotbak runs");
    for d in ["myd", "inno/rdb"] {
        std::fs::set_permissions(remote.root.join(d), std::fs::Permissions::from_mode(0o770))
            .expect("chmod back");
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("completed OK"), "{stderr}");
    for needle in [
        "incomplete",
        "`rdb`.`m` (MyISAM)",
        "rdb/m.MYD",
        &format!("{}/m.MYD", remote.dir("myd")),
        "`rdb`.`t`",
        &format!("{}/rdb/t.ibd", remote.dir("inno")),
        "Permission denied",
    ] {
        assert!(
            stderr.contains(needle),
            "stderr lacks {needle:?}:\n{stderr}"
        );
    }
    assert!(
        !target.join("hotbak_manifest").exists(),
        "an incomplete backup has no manifest"
    );
}
