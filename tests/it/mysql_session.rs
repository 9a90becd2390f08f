//! The server session against throwaway sandboxes (never a server we did not start).

use std::time::{Duration, Instant};

use hotbak::error::{Classify, ErrorClass};
use hotbak::format::metadata::{BackupMyCnf, BinlogInfo, Checkpoints, XtrabackupInfo};
use hotbak::mysql::{BackupStage, ConnectOptions, Defaults, Error, LockPolicy, QueryType, Session};
use hotbak::sandbox::{Sandbox, SandboxOptions};

use crate::support::tool;

/// A fresh sandbox in a temp dir, or `None` (skip) without MariaDB.
fn sandbox(args: &[&str]) -> Option<(tempfile::TempDir, Sandbox)> {
    tool("mariadbd")?;
    tool("mariadb-install-db")?;
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = SandboxOptions {
        server_args: args.iter().map(|s| (*s).to_owned()).collect(),
        ..Default::default()
    };
    let sb = Sandbox::create(dir.path(), opts).expect("sandbox starts");
    Some((dir, sb))
}

use crate::support::rt;

/// Lines of `key = value` / `key=value` files reduced to their keys, for layout comparison.
fn layout(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| match l.split_once('=') {
            Some((k, _)) => format!("{}=", k.trim()),
            None => l.to_owned(),
        })
        .collect()
}

#[test]
fn session_against_sandbox() {
    let Some((dir, mut sb)) = sandbox(&["--log-bin=mysql-bin", "--server-id=7"]) else {
        return;
    };
    rt().block_on(async {
        // Socket and TCP.
        let mut s = Session::connect(&sb.connect_options())
            .await
            .expect("socket connect");
        let tcp_opts = sb.tcp_connect_options().expect("networking");
        let mut t = Session::connect(&tcp_opts).await.expect("tcp connect");
        assert_eq!(s.version().major, 10);
        assert!(s.version().minor >= 8, "{:?}", s.version());
        assert_eq!(
            t.query_value("SELECT @@port")
                .await
                .expect("port")
                .as_deref(),
            Some(sb.port().expect("port").to_string().as_str())
        );
        t.close().await.expect("close");

        // Option files: [client] in a --defaults-file.
        let cnf = dir.path().join("client.cnf");
        std::fs::write(
            &cnf,
            format!(
                "[client]\nsocket = {}\nuser = root\n",
                sb.socket().display()
            ),
        )
        .expect("cnf");
        let via_file = ConnectOptions::default()
            .with_defaults(&Defaults::File(cnf))
            .expect("defaults");
        Session::connect(&via_file)
            .await
            .expect("connect via defaults-file")
            .close()
            .await
            .expect("close");

        // Server info.
        let info = s.server_info().await.expect("server_info");
        assert_eq!(
            info.datadir.canonicalize().expect("datadir"),
            sb.datadir().canonicalize().expect("sb datadir")
        );
        assert_eq!(info.innodb_page_size, 16384);
        assert!(
            info.innodb_data_file_path.starts_with("ibdata1:"),
            "{}",
            info.innodb_data_file_path
        );
        assert!(info.log_bin);
        assert_eq!(info.server_id, 7);
        assert!(info.innodb_log_file_size > 0);
        assert!(info.redo_log_dir().join("ib_logfile0").is_file());
        assert_eq!(
            s.query_value("SELECT @@session.lock_wait_timeout")
                .await
                .expect("lwt")
                .as_deref(),
            Some("31536000")
        );

        s.execute("CREATE DATABASE bk").await.expect("create db");
        s.execute("CREATE TABLE bk.t (a INT PRIMARY KEY) ENGINE=InnoDB")
            .await
            .expect("create");
        s.execute("CREATE TABLE bk.m (a INT) ENGINE=MyISAM")
            .await
            .expect("create");
        s.execute("INSERT INTO bk.t VALUES (1),(2),(3)")
            .await
            .expect("insert");
        let tables = s.tables().await.expect("tables");
        assert!(tables
            .iter()
            .any(|t| t.schema == "bk" && t.name == "m" && t.engine.as_deref() == Some("MyISAM")));
        assert!(tables
            .iter()
            .any(|t| t.schema == "bk" && t.name == "t" && t.engine.as_deref() == Some("InnoDB")));

        // BACKUP STAGE sequence with LSN and binlog under BLOCK_COMMIT.
        let p = LockPolicy::default();
        let lsn0 = s.innodb_lsn().await.expect("lsn");
        for st in [
            BackupStage::Start,
            BackupStage::Flush,
            BackupStage::BlockDdl,
            BackupStage::BlockCommit,
        ] {
            let r = s.backup_stage(st, &p).await.expect("stage");
            assert_eq!(r.statement, st.statement());
            assert!(r.elapsed < Duration::from_secs(10));
        }
        let lsn = s.innodb_lsn().await.expect("lsn");
        assert!(lsn.current >= lsn0.current && lsn.current > 0, "{lsn:?}");
        let pos = s
            .binlog_position()
            .await
            .expect("binlog")
            .expect("binlog on");
        assert!(pos.file.starts_with("mysql-bin."), "{pos:?}");
        assert!(pos.position > 4);
        assert!(pos.gtid_current_pos.starts_with("0-7-"), "{pos:?}");
        s.flush_engine_logs().await.expect("flush logs");
        s.stage_end().await.expect("end");
        assert!(
            s.slave_info().await.expect("slave info").is_none(),
            "not a replica"
        );
        let rs = s
            .safe_slave_backup(Duration::from_secs(3))
            .await
            .expect("safe slave");
        assert!(!rs.is_replica);

        // FTWRL fallback.
        let r = s.flush_tables_with_read_lock(&p).await.expect("ftwrl");
        assert_eq!(r.statement, "FLUSH TABLES WITH READ LOCK");
        s.unlock_tables().await.expect("unlock");

        // Our metadata writers next to a real mariabackup of the same server.
        if let Some(mb) = tool("mariabackup") {
            let target = dir.path().join("mb");
            let out = std::process::Command::new(mb)
                .arg("--no-defaults")
                .arg("--backup")
                .arg(format!("--target-dir={}", target.display()))
                .arg(format!("--socket={}", sb.socket().display()))
                .arg("--user=root")
                .output()
                .expect("mariabackup runs");
            assert!(
                out.status.success(),
                "mariabackup: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let read = |n: &str| std::fs::read_to_string(target.join(n)).expect(n);
            let ck = read("xtrabackup_checkpoints");
            assert_eq!(Checkpoints::parse(&ck).expect("checkpoints").render(), ck);
            let bi = read("xtrabackup_binlog_info");
            assert_eq!(BinlogInfo::parse(&bi).expect("binlog info").render(), bi);
            let xi = read("xtrabackup_info");
            assert_eq!(XtrabackupInfo::parse(&xi).expect("info").render(), xi);
            let cnf = read("backup-my.cnf");
            assert_eq!(BackupMyCnf::parse(&cnf).expect("cnf").render(), cnf);
            // Ours, from the live server: same layout (values may differ).
            let after = s.binlog_position().await.expect("binlog").expect("on");
            assert_eq!(layout(&after.binlog_info().render()), layout(&bi));
            assert_eq!(
                bi.matches('\t').count(),
                after.binlog_info().render().matches('\t').count()
            );
            assert_eq!(layout(&info.backup_my_cnf().render()), layout(&cnf));
        }

        // A dead server is a clear Server error.
        sb.kill().expect("kill");
        let err = s.execute("SELECT 1").await.expect_err("server is dead");
        assert!(err.is_connection_lost(), "{err}");
        assert_eq!(err.class(), ErrorClass::Server);
        assert!(err.to_string().contains("SELECT 1"), "{err}");
        let err = Session::connect(&sb.connect_options())
            .await
            .expect_err("nothing listens");
        assert_eq!(err.class(), ErrorClass::Server, "{err}");
    });
    // Restart on the same datadir works (prepare-style start_on is the same path).
    sb.restart().expect("restart after kill");
    sb.stop().expect("clean stop");
    assert!(!sb.is_running());

    // The prepare-style start: existing datadir, no networking, socket only.
    let datadir = sb.datadir().to_owned();
    drop(sb);
    let mut p = Sandbox::start_on(
        &datadir,
        &dir.path().join("prep"),
        SandboxOptions::for_prepare(Vec::new()),
    )
    .expect("start_on");
    assert!(p.port().is_none());
    rt().block_on(async {
        let mut s = Session::connect(&p.connect_options())
            .await
            .expect("socket connect");
        assert_eq!(
            s.query_value("SELECT @@skip_networking")
                .await
                .expect("q")
                .as_deref(),
            Some("1")
        );
        assert_eq!(
            s.query_value("SELECT COUNT(*) FROM bk.t")
                .await
                .expect("q")
                .as_deref(),
            Some("3")
        );
    });
    p.stop().expect("stop");
}

/// Start `sql` on its own connection; returns its connection id and the task.
async fn background(
    opts: &ConnectOptions,
    sql: &'static str,
) -> (u64, tokio::task::JoinHandle<Result<(), Error>>) {
    let mut c = Session::connect(opts).await.expect("connect");
    let id = c.connection_id();
    let h = tokio::spawn(async move { c.execute(sql).await });
    (id, h)
}

/// Wait until connection `id` has been running its statement for `secs` seconds.
async fn wait_running(s: &mut Session, id: u64, secs: u64) {
    let start = Instant::now();
    loop {
        let pl = s.processlist().await.expect("processlist");
        if pl
            .iter()
            .any(|p| p.id == id && p.info.is_some() && p.time >= secs)
        {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "query {id} never showed up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[test]
fn long_query_policy() {
    let Some((_dir, mut sb)) = sandbox(&[]) else {
        return;
    };
    rt().block_on(async {
        let opts = sb.connect_options();
        let mut s = Session::connect(&opts).await.expect("connect");
        s.execute("CREATE DATABASE bk").await.expect("db");
        s.execute("CREATE TABLE bk.t (a INT) ENGINE=InnoDB")
            .await
            .expect("t");
        s.execute("INSERT INTO bk.t VALUES (1)").await.expect("row");

        // --ftwrl-wait-timeout=2 with a long SELECT: fails, naming it.
        let (id, h) = background(&opts, "SELECT SLEEP(30)").await;
        wait_running(&mut s, id, 1).await;
        let p = LockPolicy {
            ftwrl_wait_timeout: Duration::from_secs(2),
            ftwrl_wait_threshold: 1,
            ftwrl_wait_query_type: QueryType::All,
            ..Default::default()
        };
        let t0 = Instant::now();
        let err = s
            .flush_tables_with_read_lock(&p)
            .await
            .expect_err("long query blocks");
        let waited = t0.elapsed();
        match &err {
            Error::LongQueries { queries, .. } => {
                assert!(queries.iter().any(|q| q.id == id), "{err}")
            }
            other => panic!("wrong error {other}"),
        }
        assert!(err.to_string().contains(&format!("id {id}")), "{err}");
        assert!(err.to_string().contains("SELECT SLEEP(30)"), "{err}");
        assert_eq!(err.class(), ErrorClass::Server);
        assert!(
            waited >= Duration::from_secs(2) && waited < Duration::from_secs(6),
            "{waited:?}"
        );
        // With type=update the SELECT is not waited for (XtraBackup semantics).
        let upd = LockPolicy {
            ftwrl_wait_query_type: QueryType::Update,
            ..p.clone()
        };
        s.backup_stage(BackupStage::Start, &upd)
            .await
            .expect("start");
        let r = s
            .backup_stage(BackupStage::BlockDdl, &upd)
            .await
            .expect("block_ddl ignores selects");
        assert!(r.waited_for_queries < Duration::from_secs(1));
        s.stage_end().await.expect("end");
        s.execute(&format!("KILL QUERY {id}"))
            .await
            .expect("kill query");
        let _ = h.await;

        // --kill-long-queries-timeout=2: a long UPDATE blocks FTWRL; it gets killed
        // (type all; a SELECT no longer blocks FTWRL in 10.11).
        let p = LockPolicy {
            kill_long_queries_timeout: Duration::from_secs(2),
            kill_long_query_type: QueryType::All,
            poll_interval: Duration::from_millis(500),
            ..Default::default()
        };
        let (id, h) = background(&opts, "UPDATE bk.t SET a = SLEEP(30)").await;
        wait_running(&mut s, id, 1).await;
        let t0 = Instant::now();
        let r = s
            .flush_tables_with_read_lock(&p)
            .await
            .expect("ftwrl after kill");
        assert!(r.killed.iter().any(|q| q.id == id), "{r:?}");
        assert!(r.killer_error.is_none(), "{r:?}");
        assert!(
            t0.elapsed() >= Duration::from_secs(2) && t0.elapsed() < Duration::from_secs(10),
            "{r:?}"
        );
        let killed = h
            .await
            .expect("join")
            .expect_err("the blocking query was killed");
        assert_eq!(killed.class(), ErrorClass::Server);
        s.unlock_tables().await.expect("unlock");

        // Same for BACKUP STAGE BLOCK_DDL, blocked by a running MyISAM write.
        s.execute("CREATE TABLE bk.m (a INT) ENGINE=MyISAM")
            .await
            .expect("m");
        let (id, h) = background(&opts, "INSERT INTO bk.m SELECT SLEEP(30)").await;
        wait_running(&mut s, id, 1).await;
        s.backup_stage(BackupStage::Start, &p).await.expect("start");
        s.backup_stage(BackupStage::Flush, &p).await.expect("flush");
        let t0 = Instant::now();
        let r = s
            .backup_stage(BackupStage::BlockDdl, &p)
            .await
            .expect("block_ddl after kill");
        assert!(r.killed.iter().any(|q| q.id == id), "{r:?}");
        assert!(t0.elapsed() >= Duration::from_secs(2), "{r:?}");
        let _ = h.await;
        s.stage_end().await.expect("end");

        // lock_wait_timeout: a table-level conflict reports LockTimeout with the statement.
        let mut o2 = opts.clone();
        o2.lock_wait_timeout = Some(1);
        let mut holder = Session::connect(&opts).await.expect("holder");
        holder
            .execute("LOCK TABLES bk.t WRITE")
            .await
            .expect("lock tables");
        let mut waiter = Session::connect(&o2).await.expect("waiter");
        let err = waiter
            .flush_tables_with_read_lock(&LockPolicy::default())
            .await
            .expect_err("times out");
        assert!(matches!(err, Error::LockTimeout { .. }), "{err}");
        assert!(
            err.to_string().contains("FLUSH TABLES WITH READ LOCK"),
            "{err}"
        );
        holder.execute("UNLOCK TABLES").await.expect("unlock");
    });
    sb.stop().expect("stop");
}

/// The OS user running the tests (`id -un`).
fn os_user() -> String {
    let out = std::process::Command::new("id")
        .arg("-un")
        .output()
        .expect("id -un");
    assert!(out.status.success(), "id -un failed");
    String::from_utf8(out.stdout)
        .expect("utf-8 user name")
        .trim()
        .to_owned()
}

/// `hotbak backup` over `socket` with the login options `login`, into `target`.
fn backup_as(
    socket: &std::path::Path,
    login: &[&str],
    target: &std::path::Path,
) -> std::process::Output {
    std::process::Command::new(crate::support::bin("hotbak"))
        .args(["backup", "--no-defaults", "--progress", "none", "--socket"])
        .arg(socket)
        .args(login)
        .arg("--target-dir")
        .arg(target)
        .output()
        .expect("run hotbak")
}

/// `unix_socket` authentication, Debian's default for `root@localhost`: an
/// account identified via unix_socket and named after the OS user connects
/// over the socket with no password and takes a backup; an account named
/// after someone else is refused with exit code 4 and the server's reason.
#[test]
fn unix_socket_authentication() {
    let Some((dir, sb)) = sandbox(&[]) else {
        return;
    };
    let me = os_user();
    rt().block_on(async {
        let mut admin = Session::connect(&sb.connect_options())
            .await
            .expect("connect");
        if me == "root" {
            admin
                .execute("ALTER USER 'root'@'localhost' IDENTIFIED VIA unix_socket")
                .await
                .expect("alter root");
        } else {
            admin
                .execute(&format!(
                    "CREATE USER '{me}'@'localhost' IDENTIFIED VIA unix_socket"
                ))
                .await
                .expect("create user");
            admin
                .execute(&format!("GRANT ALL ON *.* TO '{me}'@'localhost'"))
                .await
                .expect("grant");
        }
        admin
            .execute("CREATE USER 'hb_not_me'@'localhost' IDENTIFIED VIA unix_socket")
            .await
            .expect("create hb_not_me");
        admin
            .execute("GRANT ALL ON *.* TO 'hb_not_me'@'localhost'")
            .await
            .expect("grant hb_not_me");
        let plugin = admin
            .query_value(&format!(
                "SELECT JSON_VALUE(Priv, '$.plugin') FROM mysql.global_priv WHERE User = '{me}' AND Host = 'localhost'"
            ))
            .await
            .expect("plugin");
        assert_eq!(plugin.as_deref(), Some("unix_socket"));
        admin.close().await.expect("close");

        // The library session, no password.
        let mut s = Session::connect(&ConnectOptions::socket(sb.socket(), &me))
            .await
            .expect("unix_socket login without a password");
        assert_eq!(
            s.query_value("SELECT CURRENT_USER()")
                .await
                .expect("current_user")
                .as_deref(),
            Some(format!("{me}@localhost").as_str())
        );
        s.close().await.expect("close");
    });

    // The command line, no password: a whole backup.
    let target = dir.path().join("bk");
    let out = backup_as(sb.socket(), &["-u", &me], &target);
    assert!(
        out.status.success(),
        "backup as {me} via unix_socket failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ck = std::fs::read_to_string(target.join("xtrabackup_checkpoints")).expect("checkpoints");
    assert!(ck.contains("backup_type = full-backuped"), "{ck}");

    // Someone else's account: refused, exit 4, the server's reason shown.
    let out = backup_as(sb.socket(), &["-u", "hb_not_me"], &dir.path().join("bk2"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(
        err.contains("hb_not_me") && err.contains("Access denied"),
        "{err}"
    );
    assert!(!dir
        .path()
        .join("bk2")
        .join("xtrabackup_checkpoints")
        .exists());

    // ed25519 (mysql_async's client_ed25519): the login succeeds; this
    // account lacks the backup privileges, so the backup then fails at the
    // lock with the server's reason, never a hang or a partial backup.
    rt().block_on(async {
        let mut admin = Session::connect(&ConnectOptions::socket(sb.socket(), &me))
            .await
            .expect("connect");
        admin
            .execute("INSTALL SONAME 'auth_ed25519'")
            .await
            .expect("install auth_ed25519");
        admin
            .execute("CREATE USER 'hb_ed'@'localhost' IDENTIFIED VIA ed25519 USING PASSWORD('secret-ed')")
            .await
            .expect("create hb_ed");
        admin.close().await.expect("close");
    });
    let out = backup_as(
        sb.socket(),
        &["-u", "hb_ed", "-p", "secret-ed"],
        &dir.path().join("bk3"),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(
        err.contains("RELOAD") && !err.contains("Access denied for user"),
        "{err}"
    );
    assert!(!err.contains("secret-ed"), "password leaked: {err}");
    assert!(!dir
        .path()
        .join("bk3")
        .join("xtrabackup_checkpoints")
        .exists());
}
