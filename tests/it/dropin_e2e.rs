//! hotbak as a drop-in for mariabackup scripts (issue 13): the script with
//! only the binary's name changed, option files, TLS and ed25519 logins,
//! XtraBackup's decrypt spelling. Each test runs its own throwaway server.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use hotbak::mysql::{ConnectOptions, Password, Session};
use hotbak::sandbox::{Sandbox, SandboxOptions};

use crate::support::{bin, rt, tool};

/// A fresh sandbox in `dir/src`, or `None` (skip) without MariaDB.
fn sandbox(dir: &Path, args: &[&str]) -> Option<Sandbox> {
    tool("mariadbd")?;
    tool("mariadb-install-db")?;
    let opts = SandboxOptions {
        server_args: args.iter().map(|s| (*s).to_owned()).collect(),
        ..Default::default()
    };
    Some(Sandbox::create(&dir.join("src"), opts).expect("sandbox starts"))
}

/// Run statements as root over the socket.
fn sql(sb: &Sandbox, statements: &[&str]) {
    let conn = sb.connect_options();
    rt().block_on(async {
        let mut s = Session::connect(&conn).await.expect("root connects");
        for st in statements {
            s.execute(st).await.unwrap_or_else(|e| panic!("{st}: {e}"));
        }
    });
}

fn count_rows(conn: &ConnectOptions, table: &str) -> String {
    rt().block_on(async {
        let mut s = Session::connect(conn).await.expect("connects");
        s.query_value(&format!("SELECT COUNT(*) FROM {table}"))
            .await
            .expect("count")
            .unwrap_or_default()
    })
}

/// `bash -c SCRIPT` with `pipefail`; the status and stderr.
fn script(text: &str) -> Output {
    Command::new("bash")
        .arg("-c")
        .arg(format!("set -o pipefail\n{text}"))
        .stdin(Stdio::null())
        .output()
        .expect("bash runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn last_line(s: &str) -> &str {
    s.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("")
}

fn q(p: &Path) -> String {
    format!("'{}'", p.display())
}

#[test]
fn mariabackup_script_with_only_the_name_changed() {
    if hotbak::sys::login_name().as_deref() != Some("root") {
        eprintln!("SKIP: the script runs as root with no --user (Debian's cron job)");
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let Some(mut sb) = sandbox(tmp.path(), &[]) else {
        return;
    };
    sql(
        &sb,
        &[
            "CREATE DATABASE shop",
            "CREATE TABLE shop.orders (id INT PRIMARY KEY AUTO_INCREMENT, v VARCHAR(40)) ENGINE=InnoDB",
            "INSERT INTO shop.orders (v) SELECT CONCAT('row', seq) FROM mysql.seq_1_to_5000",
            "CREATE TABLE shop.notes (id INT PRIMARY KEY, t TEXT) ENGINE=Aria",
            "INSERT INTO shop.notes SELECT seq, REPEAT('n', seq) FROM mysql.seq_1_to_300",
        ],
    );
    let (hb, xb) = (bin("hotbak"), bin("xbextract"));
    let work = tmp.path().join("mbwork");
    let out = tmp.path().join("today");
    let newdir = tmp.path().join("new-data");
    // The cron job's line; no --user: the OS login name (root).
    let o = script(&format!(
        "{} --backup --stream=xbstream --target-dir={} --socket={} 2>{} | {} -x -C {}",
        q(&hb),
        q(&work),
        q(sb.socket()),
        q(&tmp.path().join("backup.err")),
        q(&xb),
        q(&out)
    ));
    let backup_err = std::fs::read_to_string(tmp.path().join("backup.err")).unwrap_or_default();
    assert!(o.status.success(), "{backup_err}\n{}", stderr(&o));
    assert_eq!(
        last_line(&backup_err),
        "hotbak: backup completed OK!",
        "{backup_err}"
    );
    assert_eq!(
        last_line(&stderr(&o)),
        "xbextract: completed OK!",
        "{}",
        stderr(&o)
    );
    assert!(
        !work.join("xtrabackup_checkpoints").exists(),
        "the work directory holds no backup"
    );
    assert!(out.join("shop/orders.ibd").is_file());

    let o = script(&format!("{} --prepare --target-dir={}", q(&hb), q(&out)));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        last_line(&stderr(&o)),
        "hotbak: prepare completed OK!",
        "{}",
        stderr(&o)
    );

    let o = script(&format!(
        "{} --copy-back --target-dir={} --datadir={}",
        q(&hb),
        q(&out),
        q(&newdir)
    ));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        last_line(&stderr(&o)),
        "hotbak: restore completed OK!",
        "{}",
        stderr(&o)
    );

    sb.stop().expect("source stops");
    let restored = Sandbox::start_on(
        &newdir,
        &tmp.path().join("new-run"),
        SandboxOptions::default(),
    )
    .expect("a server starts on the copied-back datadir");
    let conn = restored.connect_options();
    assert_eq!(count_rows(&conn, "shop.orders"), "5000");
    assert_eq!(count_rows(&conn, "shop.notes"), "300");
}

/// `--defaults-file` with a `[mariabackup]` group: the user, password and
/// `parallel` are taken from it (a wrong password or `parallel=0` there
/// fails the backup, naming the cause); a mariabackup option hotbak does
/// not have is refused naming the file and line.
#[test]
fn defaults_file_mariabackup_group() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let Some(sb) = sandbox(tmp.path(), &[]) else {
        return;
    };
    sql(
        &sb,
        &[
            "CREATE USER bk@localhost IDENTIFIED BY 'bk-secret'",
            "GRANT RELOAD, PROCESS, LOCK TABLES, BINLOG MONITOR, SELECT ON *.* TO bk@localhost",
            "CREATE DATABASE d",
            "CREATE TABLE d.t (id INT PRIMARY KEY) ENGINE=InnoDB",
            "INSERT INTO d.t SELECT seq FROM mysql.seq_1_to_100",
        ],
    );
    let cnf = tmp.path().join("backup.cnf");
    let run = |body: &str, target: &str| -> Output {
        std::fs::write(&cnf, body).expect("write cnf");
        Command::new(bin("hotbak"))
            .arg("--backup")
            .arg(format!("--defaults-file={}", cnf.display()))
            .arg(format!(
                "--target-dir={}",
                tmp.path().join(target).display()
            ))
            .arg(format!("--socket={}", sb.socket().display()))
            .stdin(Stdio::null())
            .output()
            .expect("hotbak runs")
    };
    let wrong = run("[mariabackup]\nuser=bk\npassword=nope\nparallel=3\n", "b1");
    assert_eq!(wrong.status.code(), Some(4), "{}", stderr(&wrong));
    assert!(
        stderr(&wrong).contains("Access denied for user 'bk'"),
        "{}",
        stderr(&wrong)
    );
    let zero = run(
        "[mariabackup]\nuser=bk\npassword=bk-secret\nparallel=0\n",
        "b2",
    );
    assert_eq!(zero.status.code(), Some(2), "{}", stderr(&zero));
    assert!(
        stderr(&zero).contains("--parallel must be at least 1"),
        "{}",
        stderr(&zero)
    );
    let bad = run(
        "[client]\nport=1\n[mariabackup]\nuser=bk\nthrottle=5\n",
        "b3",
    );
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
    assert!(
        stderr(&bad).contains("not supported by hotbak: throttle (from")
            && stderr(&bad).contains("backup.cnf line 5 [mariabackup]"),
        "{}",
        stderr(&bad)
    );
    let ok = run(
        "[mariabackup]\nuser=bk\npassword=bk-secret\nparallel=3\nkill-long-queries-timeout=1\n",
        "b4",
    );
    assert!(ok.status.success(), "{}", stderr(&ok));
    assert_eq!(last_line(&stderr(&ok)), "hotbak: backup completed OK!");
    assert!(tmp.path().join("b4/d/t.ibd").is_file());
}

/// XtraBackup's decrypt spelling: `xbextract --decrypt=AES256
/// --encrypt-key-file=F` extracts an encrypted stream; a wrong algorithm
/// is refused naming it.
#[test]
fn xbextract_takes_xtrabackups_decrypt_spelling() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let Some(sb) = sandbox(tmp.path(), &[]) else {
        return;
    };
    sql(
        &sb,
        &[
            "CREATE DATABASE d",
            "CREATE TABLE d.t (id INT PRIMARY KEY) ENGINE=InnoDB",
            "INSERT INTO d.t SELECT seq FROM mysql.seq_1_to_100",
        ],
    );
    let key = tmp.path().join("key");
    std::fs::write(&key, "11".repeat(32)).expect("key");
    let stream = tmp.path().join("b.xbs");
    let o = script(&format!(
        "{} backup --no-defaults -u root --socket={} --stream --encrypt --encrypt-key-file={} > {}",
        q(&bin("hotbak")),
        q(sb.socket()),
        q(&key),
        q(&stream)
    ));
    assert!(o.status.success(), "{}", stderr(&o));
    let out = tmp.path().join("x");
    let o = script(&format!(
        "{} -x --decrypt=AES256 --encrypt-key-file={} -C {} < {}",
        q(&bin("xbextract")),
        q(&key),
        q(&out),
        q(&stream)
    ));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(last_line(&stderr(&o)), "xbextract: completed OK!");
    assert!(out.join("d/t.ibd").is_file(), "decrypted file is there");
    assert!(!out.join("d/t.ibd.hbenc").exists());
    let o = script(&format!(
        "{} -x --decrypt=AES128 --encrypt-key-file={} -C {} < {}",
        q(&bin("xbextract")),
        q(&key),
        q(&tmp.path().join("y")),
        q(&stream)
    ));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--decrypt=AES128"), "{}", stderr(&o));
}

/// Make a CA and a server certificate for 127.0.0.1 with the openssl tool.
fn certificates(dir: &Path) -> Option<(PathBuf, PathBuf, PathBuf)> {
    let openssl = tool("openssl")?;
    let run = |args: &[&str]| {
        let o = Command::new(&openssl)
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl runs");
        assert!(o.status.success(), "openssl {args:?}: {}", stderr(&o));
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=hotbak test CA",
        "-keyout",
        "ca-key.pem",
        "-out",
        "ca.pem",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "server-key.pem",
        "-out",
        "server.csr",
    ]);
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .expect("ext");
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca-key.pem",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
        "-out",
        "server.pem",
    ]);
    Some((
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server-key.pem"),
    ))
}

/// A TLS login to a server started with a certificate: an account that
/// REQUIRE SSL is refused without `--ssl` and logs in with it (the
/// session's `Ssl_version` is set); with `--ssl-verify-server-cert` the
/// server's certificate must chain to `--ssl-ca`.
#[test]
fn tls_login() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let certs = tmp.path().join("certs");
    std::fs::create_dir(&certs).expect("mkdir");
    let Some((ca, cert, key)) = certificates(&certs) else {
        return;
    };
    let ssl_args = [
        format!("--ssl-ca={}", ca.display()),
        format!("--ssl-cert={}", cert.display()),
        format!("--ssl-key={}", key.display()),
    ];
    let ssl_refs: Vec<&str> = ssl_args.iter().map(String::as_str).collect();
    let Some(sb) = sandbox(tmp.path(), &ssl_refs) else {
        return;
    };
    sql(
        &sb,
        &[
            "CREATE USER tls@'%' IDENTIFIED BY 'tls-pw' REQUIRE SSL",
            "GRANT RELOAD, PROCESS, LOCK TABLES, BINLOG MONITOR, SELECT ON *.* TO tls@'%'",
        ],
    );
    let mut o = sb.tcp_connect_options().expect("tcp");
    o.user = Some("tls".into());
    o.password = Some(Password::new("tls-pw"));
    rt().block_on(async {
        let plain = Session::connect(&o).await.expect_err("REQUIRE SSL refuses plain");
        assert!(plain.to_string().contains("Access denied"), "{plain}");

        let mut t = o.clone();
        t.ssl = Some(true);
        let mut s = Session::connect(&t).await.expect("TLS login");
        let v = s
            .query_value("SELECT VARIABLE_VALUE FROM information_schema.SESSION_STATUS WHERE VARIABLE_NAME='SSL_VERSION'")
            .await
            .expect("status")
            .unwrap_or_default();
        assert!(v.starts_with("TLSv1."), "Ssl_version {v:?}");

        let mut verified = o.clone();
        verified.ssl_ca = Some(ca.clone());
        verified.ssl_verify_server_cert = Some(true);
        Session::connect(&verified).await.expect("the certificate chains to the CA");

        // Another CA: verification fails.
        let other = tmp.path().join("other");
        std::fs::create_dir(&other).expect("mkdir");
        let (other_ca, _, _) = certificates(&other).expect("openssl");
        let mut wrong = verified.clone();
        wrong.ssl_ca = Some(other_ca);
        let e = Session::connect(&wrong).await.expect_err("unknown CA refused");
        eprintln!("wrong CA: {e}");
    });
    // The command line: hotbak backup over TLS with the account.
    let port = sb.port().expect("port");
    let out = Command::new(bin("hotbak"))
        .args([
            "backup",
            "--no-defaults",
            "--host=127.0.0.1",
            "-u",
            "tls",
            "--password=tls-pw",
        ])
        .arg(format!("--port={port}"))
        .arg(format!("--ssl-ca={}", ca.display()))
        .arg("--ssl-verify-server-cert")
        .arg(format!("--target-dir={}", tmp.path().join("b").display()))
        .output()
        .expect("hotbak runs");
    let e = stderr(&out);
    assert!(out.status.success(), "{e}");
    assert_eq!(last_line(&e), "hotbak: backup completed OK!", "{e}");
    assert!(e.contains("over TLS"), "the login says TLS: {e}");
}

/// An `ed25519` account logs in (the right password) and is refused with a
/// wrong one.
#[test]
fn ed25519_login() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let Some(sb) = sandbox(tmp.path(), &[]) else {
        return;
    };
    sql(
        &sb,
        &[
            "INSTALL SONAME 'auth_ed25519'",
            "CREATE USER ed@localhost IDENTIFIED VIA ed25519 USING PASSWORD('ed-secret')",
        ],
    );
    let mut o = sb.connect_options();
    o.user = Some("ed".into());
    o.password = Some(Password::new("ed-secret"));
    rt().block_on(async {
        let mut s = Session::connect(&o).await.expect("ed25519 login");
        let who = s
            .query_value("SELECT CURRENT_USER()")
            .await
            .expect("current_user")
            .unwrap_or_default();
        assert_eq!(who, "ed@localhost");
        let mut bad = o.clone();
        bad.password = Some(Password::new("wrong"));
        let e = Session::connect(&bad).await.expect_err("wrong password");
        assert!(e.to_string().contains("Access denied"), "{e}");
    });
}

/// Send `sig` (`INT`, `TERM`, `HUP`) to `pid`.
fn signal(pid: u32, sig: &str) {
    let st = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .expect("kill runs");
    assert!(st.success(), "kill -{sig} {pid}");
}

/// Read `child`'s stderr on a thread until a line contains `needle`
/// (returns the text so far), then keep collecting the rest.
fn stderr_until(
    child: &mut std::process::Child,
    needle: &'static str,
) -> (String, std::thread::JoinHandle<String>) {
    use std::io::BufRead;
    let err = child.stderr.take().expect("stderr piped");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let h = std::thread::spawn(move || {
        let mut all = String::new();
        let mut sent = false;
        for line in std::io::BufReader::new(err).lines().map_while(Result::ok) {
            all.push_str(&line);
            all.push('\n');
            if !sent && line.contains(needle) {
                let _ = tx.send(all.clone());
                sent = true;
            }
        }
        all
    });
    let seen = rx
        .recv_timeout(std::time::Duration::from_secs(120))
        .unwrap_or_else(|_| panic!("never printed {needle:?}"));
    (seen, h)
}

/// SIGINT mid-backup of a replica with `--safe-slave-backup`: exit 6, no
/// success line, no manifest; the backup's session is gone (DDL runs right
/// after) and the replica's SQL thread runs again.
#[test]
fn sigint_mid_backup_cleans_up() {
    let root = tempfile::tempdir().expect("tempdir");
    let Some(primary) = sandbox(
        &root.path().join("p"),
        &["--log-bin=mysql-bin", "--server-id=1"],
    ) else {
        return;
    };
    let Some(replica) = sandbox(&root.path().join("r"), &["--server-id=2"]) else {
        return;
    };
    let port = primary.port().expect("tcp");
    sql(
        &primary,
        &[
            "CREATE USER 'repl'@'127.0.0.1' IDENTIFIED BY 'repl-pw'",
            "GRANT REPLICATION SLAVE ON *.* TO 'repl'@'127.0.0.1'",
            "CREATE DATABASE rp",
            "CREATE TABLE rp.t (id INT PRIMARY KEY) ENGINE=InnoDB",
        ],
    );
    sql(
        &replica,
        &[
            &format!(
                "CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT={port}, MASTER_USER='repl', \
                 MASTER_PASSWORD='repl-pw', MASTER_USE_GTID=slave_pos"
            ),
            "START SLAVE",
        ],
    );
    let sql_running = |sb: &Sandbox| -> String {
        let conn = sb.connect_options();
        rt().block_on(async {
            let mut s = Session::connect(&conn).await.expect("replica");
            s.query("SHOW SLAVE STATUS")
                .await
                .expect("slave status")
                .first()
                .and_then(|row| row.get("Slave_SQL_Running").map(str::to_owned))
                .unwrap_or_default()
        })
    };
    let t0 = std::time::Instant::now();
    while sql_running(&replica) != "Yes" {
        assert!(t0.elapsed().as_secs() < 60, "replication did not start");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let target = root.path().join("bk");
    let mut child = Command::new(bin("hotbak"))
        .args([
            "backup",
            "--no-defaults",
            "-u",
            "root",
            "--progress",
            "lines",
        ])
        .arg(format!("--socket={}", replica.socket().display()))
        .args(["--safe-slave-backup", "--max-rate=1", "--target-dir"])
        .arg(&target)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("hotbak starts");
    let (_, rest) = stderr_until(&mut child, "replica SQL thread stopped");
    assert_eq!(
        sql_running(&replica),
        "No",
        "the SQL thread is stopped during the copy"
    );
    signal(child.id(), "INT");
    let status = child.wait().expect("wait");
    let err = rest.join().expect("stderr thread");
    assert_eq!(status.code(), Some(6), "{err}");
    assert!(!err.contains("completed OK"), "{err}");
    assert!(err.contains("interrupted by SIGINT"), "{err}");
    assert!(err.contains("replica SQL thread started again"), "{err}");
    assert!(!target.join("hotbak_manifest").exists(), "no manifest");
    assert_eq!(sql_running(&replica), "Yes");
    // No lock is left: DDL on the replica goes through at once.
    let conn = replica.connect_options();
    rt().block_on(async {
        let mut s = Session::connect(&conn).await.expect("replica");
        s.execute("SET SESSION lock_wait_timeout=5")
            .await
            .expect("set");
        s.execute("CREATE TABLE rp.after_sigint (id INT) ENGINE=InnoDB")
            .await
            .expect("DDL right after the interrupted backup");
        s.execute("DROP TABLE rp.after_sigint").await.expect("drop");
    });
}

/// SIGTERM while xbextract waits for more of a stream: exit 6, the
/// staging directory and every partial file removed.
#[test]
fn sigterm_mid_extraction_removes_staging() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("src");
    std::fs::create_dir(&src).expect("mkdir");
    std::fs::write(src.join("a.bin"), vec![7u8; 3 << 20]).expect("write");
    let stream = Command::new(bin("xbextract"))
        .args(["-c", "a.bin", "-C"])
        .arg(&src)
        .output()
        .expect("xbextract -c");
    assert!(stream.status.success());
    let out = tmp.path().join("out");
    let mut child = Command::new(bin("xbextract"))
        .args(["-x", "-C"])
        .arg(&out)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("xbextract -x");
    // Half the stream, then nothing: xbextract waits for the rest.
    let mut stdin = child.stdin.take().expect("stdin");
    std::io::Write::write_all(&mut stdin, &stream.stdout[..stream.stdout.len() / 2])
        .expect("write half");
    let t0 = std::time::Instant::now();
    let staged = || {
        std::fs::read_dir(&out)
            .map(|rd| {
                rd.filter_map(Result::ok).any(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .starts_with(".xbextract-partial-")
                })
            })
            .unwrap_or(false)
    };
    while !staged() {
        assert!(t0.elapsed().as_secs() < 30, "no staging directory appeared");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    signal(child.id(), "TERM");
    // The producer stays alive (stdin open): xbextract must exit anyway.
    let t0 = std::time::Instant::now();
    while child.try_wait().expect("try_wait").is_none() {
        if t0.elapsed().as_secs() > 30 {
            let _ = child.kill();
            panic!("xbextract did not exit within 30 s of SIGTERM");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let o = child.wait_with_output().expect("wait");
    drop(stdin);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(6), "{err}");
    assert!(err.contains("interrupted by SIGTERM"), "{err}");
    assert!(!err.contains("completed OK"), "{err}");
    assert!(!staged(), "the staging directory is gone");
    assert!(!out.join("a.bin").exists());
}
