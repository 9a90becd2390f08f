//! Object storage (issue 16) against a real SeaweedFS (`weed mini`, one per
//! test binary on free loopback ports, killed by pid when the binary exits):
//! uploads and round trips, a killed upload never committed, a connection
//! cut mid-part retried, a wrong secret named, resume counting the parts
//! not re-sent, and live backups (plain, compressed, encrypted) streamed to
//! `s3://` and back.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use hotbak::objstore::testing::TestStore;
use hotbak::sandbox::{Sandbox, SandboxOptions};

use crate::support::{bin, tool};

/// The store shared by this binary's tests (`None`: weed missing, skip).
fn store() -> Option<&'static TestStore> {
    static STORE: OnceLock<Option<TestStore>> = OnceLock::new();
    STORE
        .get_or_init(|| {
            let weed = tool("weed")?;
            let dir = tempfile::Builder::new()
                .prefix("hotbak-weed-")
                .tempdir()
                .expect("tempdir")
                .keep();
            Some(TestStore::start(&weed, &dir, "hotbak", true).expect("weed mini starts"))
        })
        .as_ref()
}

fn url(s: &TestStore, prefix: &str) -> String {
    format!("s3://{}/{prefix}", s.bucket)
}

fn cmd(s: &TestStore, name: &str) -> Command {
    let mut c = Command::new(bin(name));
    for (k, v) in s.env() {
        c.env(k, v);
    }
    c.stdin(Stdio::null());
    c
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stderr),
        String::from_utf8_lossy(&o.stdout)
    )
}

fn run(mut c: Command) -> Output {
    c.output().expect("runs")
}

fn assert_ok(o: &Output, what: &str) {
    assert!(o.status.success(), "{what}: {}", text(o));
}

fn assert_code(o: &Output, code: i32, needle: &str, what: &str) {
    assert_eq!(o.status.code(), Some(code), "{what}: {}", text(o));
    assert!(
        text(o).contains(needle),
        "{what}: no {needle:?} in {}",
        text(o)
    );
}

/// Every regular file under `dir`, relative path → bytes (without the
/// stream header and manifest xbextract writes beside a hotbak stream's files).
fn tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    crate::support::walk_tree(dir)
        .into_iter()
        .filter(|(p, m)| {
            m.is_file()
                && !p.strip_prefix(dir).is_ok_and(|r| {
                    r == Path::new("hotbak_manifest") || r == Path::new("hotbak_stream_info")
                })
        })
        .map(|(p, _)| {
            let rel = p.strip_prefix(dir).expect("under").to_path_buf();
            let data = std::fs::read(&p).expect("read");
            (rel, data)
        })
        .collect()
}

/// `xbextract --from URL -C dir` with extra arguments.
fn extract_from(s: &TestStore, u: &str, dir: &Path, extra: &[&str]) -> Output {
    let mut c = cmd(s, "xbextract");
    c.arg("--from").arg(u).arg("-C").arg(dir).args(extra);
    run(c)
}

/// Files of pseudo-random (incompressible) and repetitive bytes, `total` in all.
fn make_files(dir: &Path, total: usize) -> Vec<String> {
    std::fs::create_dir_all(dir.join("db")).expect("mkdir");
    let mut names = Vec::new();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut left = total;
    let mut i = 0;
    while left > 0 {
        let n = left.min(3 << 20 | 12345);
        let mut v = vec![0u8; n];
        if i % 2 == 0 {
            for b in &mut v {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }
        } else {
            for (j, b) in v.iter_mut().enumerate() {
                *b = (j % 251) as u8;
            }
        }
        let name = format!("db/f{i}.ibd");
        std::fs::write(dir.join(&name), &v).expect("write");
        names.push(name);
        left -= n;
        i += 1;
    }
    names
}

/// An xbstream of `total` bytes of files (`xbextract -c`), and the source dir.
fn stream_file(root: &Path, total: usize) -> (PathBuf, PathBuf) {
    let src = root.join("src");
    let names = make_files(&src, total);
    let out = root.join("stream.xbs");
    let o = Command::new(bin("xbextract"))
        .arg("-c")
        .arg("-C")
        .arg(&src)
        .args(&names)
        .stdout(std::fs::File::create(&out).expect("create"))
        .output()
        .expect("xbextract -c");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    (out, src)
}

/// A loopback TCP proxy in front of the store: optionally slows the
/// client→store direction, and cuts one connection once `cut_after` bytes
/// went up in total.
struct Proxy {
    addr: SocketAddr,
    up_bytes: Arc<AtomicU64>,
    cuts: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    fn start(upstream: &str, cut_after: Option<u64>, delay_per_64k: Duration) -> Proxy {
        let upstream: SocketAddr = upstream
            .trim_start_matches("http://")
            .parse()
            .expect("endpoint address");
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        l.set_nonblocking(true).expect("nonblocking");
        let addr = l.local_addr().expect("addr");
        let up_bytes = Arc::new(AtomicU64::new(0));
        let cuts = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (ub, cu, st) = (up_bytes.clone(), cuts.clone(), stop.clone());
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(600);
            while !st.load(Ordering::Relaxed) && Instant::now() < deadline {
                let Ok((client, _)) = l.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                client.set_nonblocking(false).expect("blocking");
                let Ok(server) = TcpStream::connect(upstream) else {
                    continue;
                };
                let (c2, s2) = (
                    client.try_clone().expect("clone"),
                    server.try_clone().expect("clone"),
                );
                let (ub, cu) = (ub.clone(), cu.clone());
                // client → store, counted, slowed, maybe cut
                std::thread::spawn(move || {
                    let (mut from, mut to) = (client, server);
                    let mut buf = vec![0u8; 64 << 10];
                    loop {
                        let n = match from.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        let total = ub.fetch_add(n as u64, Ordering::Relaxed) + n as u64;
                        if let Some(c) = cut_after {
                            if total > c
                                && cu
                                    .compare_exchange(0, 1, Ordering::SeqCst, Ordering::SeqCst)
                                    .is_ok()
                            {
                                let _ = from.shutdown(Shutdown::Both);
                                let _ = to.shutdown(Shutdown::Both);
                                return;
                            }
                        }
                        if !delay_per_64k.is_zero() {
                            std::thread::sleep(delay_per_64k);
                        }
                        if to.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = to.shutdown(Shutdown::Write);
                });
                // store → client
                std::thread::spawn(move || {
                    let (mut from, mut to) = (s2, c2);
                    let _ = std::io::copy(&mut from, &mut to);
                    let _ = to.shutdown(Shutdown::Write);
                });
            }
        });
        Proxy {
            addr,
            up_bytes,
            cuts,
            stop,
        }
    }

    fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn parts_line(o: &Output) -> (u64, u64) {
    let t = text(o);
    let line = t
        .lines()
        .find(|l| l.contains("parts sent"))
        .unwrap_or_else(|| panic!("no summary line: {t}"));
    (
        number_before(line, "parts sent"),
        number_before(line, "already in the store"),
    )
}

#[test]
fn s3_upload_killed_then_resumed_sends_only_missing_parts() {
    let Some(s) = store() else { return };
    let root = tempfile::tempdir().expect("tempdir");
    // 5 parts of 5 MiB, 2 parts per object: objects of 2, 2 and 1 parts (rollover).
    let (file, src) = stream_file(root.path(), 23 << 20);
    let size = std::fs::metadata(&file).expect("stat").len();
    let parts = size.div_ceil(5 << 20);
    assert_eq!(parts, 5, "stream of {size} bytes");
    let u = url(s, "upload/one");
    let state = root.path().join("upload.state");
    // Slowed to about 10 MB/s so the kill lands mid-upload.
    let slow = Proxy::start(&s.endpoint, None, Duration::from_millis(6));
    let mut c = cmd(s, "hotbak");
    c.env("AWS_ENDPOINT_URL", slow.endpoint())
        .args(["upload", "--s3-part-size", "5M", "--s3-max-parts", "2"])
        .args(["--s3-parallel", "1", "--state-file"])
        .arg(&state)
        .arg(&file)
        .arg(&u)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    kill_when(c, "upload (until two parts are recorded)", || {
        let lines = std::fs::read_to_string(&state).unwrap_or_default();
        lines.matches("\"t\":\"part\"").count() >= 2
    });
    // Nothing accepts it as complete.
    let out = root.path().join("partial");
    let o = extract_from(s, &u, &out, &[]);
    assert_code(&o, 5, "no commit object", "extract of a killed upload");
    assert!(
        !out.join("db").exists(),
        "extracted something from an uncommitted prefix"
    );
    let mut c = cmd(s, "hotbak");
    c.args(["info", &url(s, "upload"), "--output", "json"]);
    let o = run(c);
    assert_ok(&o, "info");
    let info: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert!(
        info.as_array()
            .is_some_and(|a| a.iter().all(|e| e["complete"] == false)),
        "info calls a killed upload complete: {info}"
    );
    // Rerun straight to the store: only the missing parts are sent.
    let mut c = cmd(s, "hotbak");
    c.args(["upload", "--s3-part-size", "5M", "--s3-max-parts", "2"])
        .arg("--state-file")
        .arg(&state)
        .arg(&file)
        .arg(&u);
    let o = run(c);
    assert_ok(&o, "resumed upload");
    let (sent, skipped) = parts_line(&o);
    assert!(skipped >= 2, "resume re-sent stored parts: {}", text(&o));
    assert_eq!(sent + skipped, parts, "{}", text(&o));
    assert!(!state.exists(), "state file left after the commit");
    // Byte for byte: the extracted tree equals the source.
    let back = root.path().join("back");
    let o = extract_from(s, &u, &back, &[]);
    assert_ok(&o, "extract");
    let want = tree(&src);
    let got = tree(&back);
    assert_eq!(
        got.len(),
        want.len(),
        "{:?}",
        got.keys().collect::<Vec<_>>()
    );
    assert!(got == want, "extracted files differ from the source");
    // info: complete, with the stream's size.
    let mut c = cmd(s, "hotbak");
    c.args(["info", &u, "--output", "json"]);
    let o = run(c);
    let info: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(info[0]["complete"], true, "{info}");
    assert_eq!(info[0]["bytes"], size, "{info}");
    assert_eq!(info[0]["objects"], 3, "{info}");
    // A second upload to the same prefix is refused.
    let mut c = cmd(s, "hotbak");
    c.arg("upload").arg(&file).arg(&u);
    let o = run(c);
    assert_code(&o, 5, "already exists", "upload over a committed backup");
}

#[test]
fn s3_connection_cut_mid_part_is_retried() {
    let Some(s) = store() else { return };
    let root = tempfile::tempdir().expect("tempdir");
    let (file, src) = stream_file(root.path(), 14 << 20);
    let cut = Proxy::start(&s.endpoint, Some(7 << 20), Duration::ZERO);
    let u = url(s, "cut/one");
    let mut c = cmd(s, "hotbak");
    c.env("AWS_ENDPOINT_URL", cut.endpoint())
        .args(["upload", "--s3-part-size", "5M", "--s3-parallel", "2"])
        .arg(&file)
        .arg(&u);
    let o = run(c);
    assert_ok(&o, "upload through a cut");
    assert_eq!(cut.cuts.load(Ordering::SeqCst), 1, "the proxy never cut");
    assert!(cut.up_bytes.load(Ordering::SeqCst) > 14 << 20);
    let back = root.path().join("back");
    let o = extract_from(s, &u, &back, &[]);
    assert_ok(&o, "extract");
    assert!(
        tree(&back) == tree(&src),
        "extracted files differ from the source"
    );
}

#[test]
fn s3_wrong_secret_and_dead_store_fail_fast_and_named() {
    let Some(s) = store() else { return };
    let root = tempfile::tempdir().expect("tempdir");
    let (file, _) = stream_file(root.path(), 1 << 20);
    let started = Instant::now();
    let mut c = cmd(s, "hotbak");
    c.env("AWS_SECRET_ACCESS_KEY", "wrong-secret")
        .arg("upload")
        .arg(&file)
        .arg(url(s, "wrong/secret"));
    let o = run(c);
    assert_code(&o, 5, "SignatureDoesNotMatch", "wrong secret");
    assert!(started.elapsed() < Duration::from_secs(10), "not fast");
    let o = extract_from(s, &url(s, "wrong/secret"), &root.path().join("x"), &[]);
    assert_code(&o, 5, "no commit object", "nothing was committed");
    // A store that is down: a closed loopback port.
    let dead = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = dead.local_addr().expect("addr").port();
    drop(dead);
    let mut c = cmd(s, "hotbak");
    c.env("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{port}"))
        .args(["upload", "--s3-attempts", "2"])
        .arg(&file)
        .arg(url(s, "dead/store"));
    let o = run(c);
    assert_code(&o, 5, "unreachable", "dead store");
    // A bad URL is a usage error.
    let mut c = cmd(s, "xbextract");
    c.args(["--from", "s3://BAD/x", "-C"])
        .arg(root.path().join("y"));
    assert_code(&run(c), 2, "bad bucket name", "bad url");
}

// -- live backups ------------------------------------------------------------

/// A quiet throwaway server with InnoDB and MyISAM tables, written out.
fn quiet_server(root: &Path) -> Option<Sandbox> {
    tool("mariadbd")?;
    tool("mariadb-install-db")?;
    let sb = Sandbox::create(&root.join("srv"), SandboxOptions::default()).expect("sandbox");
    crate::support::rt().block_on(async {
        let mut s = hotbak::mysql::Session::connect(&sb.connect_options())
            .await
            .expect("connect");
        for q in [
            "CREATE DATABASE s3",
            "CREATE TABLE s3.big (id INT PRIMARY KEY, pad VARCHAR(500)) ENGINE=InnoDB",
            "INSERT INTO s3.big SELECT seq, REPEAT(CHAR(65 + seq % 26), 400) FROM mysql.seq_1_to_20000",
            "CREATE TABLE s3.m (id INT PRIMARY KEY, v VARCHAR(50)) ENGINE=MyISAM",
            "INSERT INTO s3.m SELECT seq, 'x' FROM mysql.seq_1_to_100",
            "FLUSH TABLES s3.big FOR EXPORT",
            "UNLOCK TABLES",
            "SET GLOBAL innodb_max_dirty_pages_pct = 0",
        ] {
            s.execute(q).await.unwrap_or_else(|e| panic!("{q}: {e}"));
        }
        s.close().await.expect("close");
    });
    // Let the page cleaner write everything out.
    std::thread::sleep(Duration::from_secs(2));
    Some(sb)
}

fn backup_cmd(s: &TestStore, sb: &Sandbox) -> Command {
    let mut c = cmd(s, "hotbak");
    c.args([
        "backup",
        "--no-defaults",
        "-u",
        "root",
        "--progress",
        "none",
    ])
    .arg("--socket")
    .arg(sb.socket());
    c
}

/// Files whose bytes legitimately differ between two backups of a quiet
/// server: times and the command line, and the redo log's copy (its
/// checkpoint and end move with every backup's own `FLUSH` and checkpoint).
fn volatile(p: &Path) -> bool {
    let n = p.to_string_lossy();
    n.starts_with("xtrabackup_info")
        || n.starts_with("ib_logfile0")
        || n.starts_with("xtrabackup_checkpoints")
        || n.starts_with("hotbak")
}

fn compare_backups(local: &Path, remote: &Path, what: &str) {
    let a = tree(local);
    let b = tree(remote);
    let names_a: Vec<_> = a.keys().collect();
    let names_b: Vec<_> = b.keys().collect();
    assert_eq!(names_a, names_b, "{what}: file sets differ");
    let mut same = 0;
    for (p, d) in &a {
        if volatile(p) {
            continue;
        }
        assert!(b[p] == *d, "{what}: {} differs", p.display());
        same += 1;
    }
    assert!(same >= 5, "{what}: only {same} files compared");
}

#[test]
fn s3_backup_round_trips_plain_compressed_and_encrypted() {
    let Some(s) = store() else { return };
    let root = tempfile::tempdir().expect("tempdir");
    let Some(sb) = quiet_server(root.path()) else {
        return;
    };
    let local = root.path().join("local");
    let mut c = backup_cmd(s, &sb);
    c.arg("--target-dir").arg(&local);
    assert_ok(&run(c), "local backup");
    let key = root.path().join("key");
    std::fs::write(&key, [7u8; 32]).expect("key");
    let cases: [(&str, Vec<&str>, Vec<String>); 3] = [
        ("plain", vec![], vec![]),
        ("zstd", vec!["--compress"], vec!["--decompress".into()]),
        (
            "encrypted",
            vec!["--compress", "--encrypt=AES256-GCM"],
            vec!["--decompress".into()],
        ),
    ];
    for (name, args, extract_args) in cases {
        let u = url(s, &format!("backups/{name}"));
        let mut c = backup_cmd(s, &sb);
        c.args(["--stream-to", &u, "--s3-part-size", "5M"])
            .args(&args);
        if name == "encrypted" {
            c.arg("--encrypt-key-file").arg(&key);
        }
        let o = run(c);
        assert_ok(&o, name);
        assert!(text(&o).contains("completed OK"), "{name}: {}", text(&o));
        let back = root.path().join(format!("back-{name}"));
        let mut ex: Vec<String> = extract_args;
        if name == "encrypted" {
            ex.push("--decrypt-key-file".into());
            ex.push(key.display().to_string());
        }
        let exs: Vec<&str> = ex.iter().map(String::as_str).collect();
        let o = extract_from(s, &u, &back, &exs);
        assert_ok(&o, &format!("{name}: extract"));
        compare_backups(&local, &back, name);
        // verify --from checks it without extracting.
        let mut c = cmd(s, "hotbak");
        c.args(["verify", "--from", &u]);
        if name == "encrypted" {
            c.arg("--decrypt-key-file").arg(&key);
        }
        assert_ok(&run(c), &format!("{name}: verify --from"));
    }
    // info lists the three, complete, with the backup's LSNs (plain ones).
    let mut c = cmd(s, "hotbak");
    c.args(["info", &url(s, "backups"), "--output", "json"]);
    let o = run(c);
    assert_ok(&o, "info");
    let info: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let arr = info.as_array().expect("array");
    assert_eq!(arr.len(), 3, "{info}");
    assert!(arr.iter().all(|e| e["complete"] == true), "{info}");
    let plain = arr
        .iter()
        .find(|e| e["location"].as_str().is_some_and(|l| l.ends_with("plain")))
        .expect("plain listed");
    assert_eq!(plain["backup_type"], "full-backuped", "{info}");
    assert!(
        plain["to_lsn"]
            .as_str()
            .is_some_and(|l| l.parse::<u64>().is_ok()),
        "{info}"
    );
}

#[test]
fn s3_backup_killed_mid_upload_is_never_complete() {
    let Some(s) = store() else { return };
    let root = tempfile::tempdir().expect("tempdir");
    let Some(sb) = quiet_server(root.path()) else {
        return;
    };
    let slow = Proxy::start(&s.endpoint, None, Duration::from_millis(10));
    let u = url(s, "killed/one");
    let mut c = backup_cmd(s, &sb);
    c.env("AWS_ENDPOINT_URL", slow.endpoint())
        .args([
            "--stream-to",
            &u,
            "--s3-part-size",
            "5M",
            "--s3-parallel",
            "1",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    kill_when(c, "backup (until 8 MiB went up)", || {
        slow.up_bytes.load(Ordering::Relaxed) >= 8 << 20
    });
    let o = extract_from(s, &u, &root.path().join("x"), &[]);
    assert_code(&o, 5, "no commit object", "extract of a killed backup");
    let mut c = cmd(s, "hotbak");
    c.args(["verify", "--from", &u]);
    assert_code(&run(c), 5, "no commit object", "verify of a killed backup");
    let mut c = cmd(s, "hotbak");
    c.args(["info", &url(s, "killed"), "--output", "json"]);
    let o = run(c);
    assert_ok(&o, "info");
    let info: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert!(
        info.as_array()
            .is_some_and(|a| a.iter().all(|e| e["complete"] == false)),
        "{info}"
    );
}

// -- retakes (a live backup that died, taken again) ---------------------------

/// A quiet server with large cold tables (InnoDB and MyISAM) and an InnoDB
/// table `hot` that the test changes between attempts.
fn cold_server(root: &Path) -> Option<Sandbox> {
    tool("mariadbd")?;
    tool("mariadb-install-db")?;
    let sb = Sandbox::create(&root.join("srv"), SandboxOptions::default()).expect("sandbox");
    let fill =
        "SELECT seq, CONCAT(SHA2(seq * {n}, 512), SHA2(seq + {n}, 256)) FROM mysql.seq_1_to_40000";
    let mut qs = vec!["CREATE DATABASE s3".to_owned()];
    for (t, engine) in [
        ("cold1", "InnoDB"),
        ("cold2", "InnoDB"),
        ("hot", "InnoDB"),
        ("arch", "MyISAM"),
    ] {
        qs.push(format!(
            "CREATE TABLE s3.{t} (id INT PRIMARY KEY, pad VARCHAR(200)) ENGINE={engine}{}",
            if engine == "InnoDB" {
                " STATS_PERSISTENT=0"
            } else {
                ""
            }
        ));
        qs.push(format!(
            "INSERT INTO s3.{t} {}",
            fill.replace("{n}", &t.len().to_string())
        ));
    }
    qs.push("FLUSH TABLES s3.cold1, s3.cold2, s3.hot FOR EXPORT".into());
    qs.push("UNLOCK TABLES".into());
    qs.push("SET GLOBAL innodb_max_dirty_pages_pct = 0".into());
    exec_all(&sb, &qs);
    std::thread::sleep(Duration::from_secs(2));
    Some(sb)
}

fn exec_all(sb: &Sandbox, qs: &[String]) {
    crate::support::rt().block_on(async {
        let mut s = hotbak::mysql::Session::connect(&sb.connect_options())
            .await
            .expect("connect");
        for q in qs {
            s.execute(q).await.unwrap_or_else(|e| panic!("{q}: {e}"));
        }
        s.close().await.expect("close");
    });
}

/// The paths the indexes of the attempts under `prefix` list.
fn indexed_paths(s: &TestStore, prefix: &str) -> Vec<String> {
    use hotbak::objstore::{layout, reuse, Client};
    crate::support::rt().block_on(async {
        let c = Client::new(s.config(), &s.bucket).expect("client");
        let root = format!("{prefix}/");
        let mut out = Vec::new();
        for l in c.list(&root).await.unwrap_or_default() {
            let rel = l.key.strip_prefix(&root).unwrap_or(&l.key);
            if layout::index_of(rel).is_none() {
                continue;
            }
            let body = c.get_small(&l.key).await.expect("index");
            let idx = reuse::SegIndex::parse(&body).expect("a valid index");
            out.extend(idx.files.into_iter().map(|f| f.path));
        }
        out
    })
}

/// Keys under `prefix/`.
fn keys(s: &TestStore, prefix: &str) -> Vec<String> {
    crate::support::rt().block_on(async {
        let c = hotbak::objstore::Client::new(s.config(), &s.bucket).expect("client");
        c.list(&format!("{prefix}/"))
            .await
            .expect("list")
            .into_iter()
            .map(|l| l.key)
            .collect()
    })
}

/// Spawn `c`, SIGKILL it once `ready` says so (polled every 20 ms, for at
/// most 3 minutes); it must not end by itself before.
fn kill_when(mut c: Command, what: &str, mut ready: impl FnMut() -> bool) {
    let mut child = c.spawn().expect("starts");
    let deadline = Instant::now() + Duration::from_secs(180);
    while !ready() {
        assert!(
            Instant::now() < deadline,
            "{what}: never ready to be killed"
        );
        assert!(
            child.try_wait().expect("wait").is_none(),
            "{what}: ended before it was killed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
}

/// A live backup to `u` through a counting proxy, which must succeed: its
/// output and the bytes it sent to the store.
fn counted_backup(s: &TestStore, sb: &Sandbox, u: &str, extra: &[&str]) -> (Output, u64) {
    let count = Proxy::start(&s.endpoint, None, Duration::ZERO);
    let mut c = backup_cmd(s, sb);
    c.env("AWS_ENDPOINT_URL", count.endpoint())
        .args(["--stream-to", u])
        .args(extra);
    let o = run(c);
    assert_ok(&o, &format!("backup to {u}"));
    (o, count.up_bytes.load(Ordering::SeqCst))
}

/// A number in `line` right before `word`.
fn number_before(line: &str, word: &str) -> u64 {
    let i = line
        .find(word)
        .unwrap_or_else(|| panic!("{word} in {line}"));
    line[..i]
        .split_whitespace()
        .last()
        .and_then(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("number before {word} in {line}"))
}

/// A live backup of a server with large cold tables is SIGKILLed mid-upload;
/// the table `hot` changes; a retake to the same prefix (itself killed once
/// in the plain case) completes, reuses the cold files without uploading
/// them, never `hot`, sends fewer bytes than a backup that was never
/// interrupted, and extracts to the same tree (plain: prepared, it serves
/// the source's checksums). Plain and zstd.
#[test]
fn s3_backup_retake_reuses_what_a_killed_attempt_stored() {
    let Some(s) = store() else { return };
    let root = tempfile::tempdir().expect("tempdir");
    let Some(sb) = cold_server(root.path()) else {
        return;
    };
    let seg = ["--s3-part-size", "5M", "--s3-segment-size", "5M"];
    for (case, args, ex) in [
        ("plain", vec![], vec![]),
        ("zstd", vec!["--compress"], vec!["--decompress"]),
    ] {
        let prefix = format!("retake/{case}");
        let u = url(s, &prefix);
        // 1. The first attempt, slowed, killed once the cold tables and
        //    `hot` are in completed, indexed segments.
        // One part in flight, slowed (each proxied connection is slowed on
        // its own); the zstd stream is about 8 times smaller: slowed more.
        let delay = Duration::from_millis(if case == "zstd" { 60 } else { 10 });
        let slow = Proxy::start(&s.endpoint, None, delay);
        let mut c = backup_cmd(s, &sb);
        c.env("AWS_ENDPOINT_URL", slow.endpoint())
            .args(["--stream-to", &u, "--s3-parallel", "1"])
            .args(seg)
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut indexed = Vec::new();
        kill_when(c, &format!("{case}: the first attempt"), || {
            indexed = indexed_paths(s, &prefix);
            let has = |t: &str| {
                indexed
                    .iter()
                    .any(|p| p.starts_with(&format!("s3/{t}.ibd")))
            };
            // zstd: its stream is mostly these tables, so `hot` is indexed
            // only just before the commit; the plain case covers it.
            if case == "zstd" {
                has("cold1") || has("cold2")
            } else {
                has("hot") && has("cold1") && has("cold2")
            }
        });
        drop(slow);
        let o = extract_from(s, &u, &root.path().join(format!("{case}-x")), &[]);
        assert_code(
            &o,
            5,
            "no commit object",
            &format!("{case}: extract of a killed attempt"),
        );
        let mut c = cmd(s, "hotbak");
        c.args(["info", &u, "--output", "json"]);
        let o = run(c);
        assert_ok(&o, "info");
        let info: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
        assert_eq!(info[0]["complete"], false, "{info}");
        assert!(
            info[0]["note"]
                .as_str()
                .is_some_and(|n| n.contains("1 attempt(s)")),
            "{case}: info does not name the attempt: {info}"
        );
        // 2. `hot` changes: every row, written out, purged.
        exec_all(
            &sb,
            &[
                "UPDATE s3.hot SET pad = REVERSE(pad)".into(),
                "SET GLOBAL innodb_max_purge_lag_wait = 0".into(),
                "FLUSH TABLES s3.hot FOR EXPORT".into(),
                "UNLOCK TABLES".into(),
            ],
        );
        std::thread::sleep(Duration::from_secs(2));
        // 3. A backup never interrupted, counted.
        let ref_u = url(s, &format!("retake/{case}-ref"));
        let (_, full_up) = counted_backup(s, &sb, &ref_u, &[&seg[..], &args[..]].concat());
        // 4. Plain: a retake killed too leaves the prefix without a commit.
        if case == "plain" {
            let slow = Proxy::start(&s.endpoint, None, Duration::from_millis(10));
            let mut c = backup_cmd(s, &sb);
            c.env("AWS_ENDPOINT_URL", slow.endpoint())
                .args(["--stream-to", &u, "--s3-parallel", "1"])
                .args(seg)
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            kill_when(c, "the retake", || {
                slow.up_bytes.load(Ordering::Relaxed) >= 6 << 20
            });
            let o = extract_from(s, &u, &root.path().join("plain-y"), &[]);
            assert_code(&o, 5, "no commit object", "extract after a killed retake");
        }
        // 5. The retake, counted.
        let (o, retake_up) = counted_backup(s, &sb, &u, &[&seg[..], &args[..]].concat());
        let t = text(&o);
        let summary = t
            .lines()
            .find(|l| l.contains("s3: attempt"))
            .unwrap_or_else(|| panic!("{case}: no retake summary: {t}"));
        let reused = number_before(summary, "bytes from");
        let whole_line = t
            .lines()
            .find(|l| l.contains("reused whole:"))
            .unwrap_or("");
        let part_line = t
            .lines()
            .find(|l| l.contains("reused in part:"))
            .unwrap_or("");
        assert!(
            whole_line.contains("s3/cold1.ibd") || whole_line.contains("s3/cold2.ibd"),
            "{case}: no cold table reused whole (indexed: {indexed:?}): {t}"
        );
        assert!(
            !whole_line.contains("s3/hot.ibd") && !part_line.contains("s3/hot.ibd"),
            "{case}: the changed table was reused: {t}"
        );
        assert!(reused >= 2 << 20, "{case}: only {reused} bytes reused: {t}");
        assert!(
            retake_up + (2 << 20) < full_up,
            "{case}: the retake sent {retake_up} bytes, a full backup {full_up}: {t}"
        );
        eprintln!(
            "{case}: full backup sent {full_up} bytes, the retake {retake_up} ({reused} stream bytes reused)"
        );
        // The commit deleted the indexes and what it does not reference.
        let left = keys(s, &prefix);
        assert!(
            !left.iter().any(|k| k.ends_with(".idx.json")),
            "{case}: indexes left: {left:?}"
        );
        // 6. Both extract to the same tree.
        let a = root.path().join(format!("{case}-ref"));
        let b = root.path().join(format!("{case}-retake"));
        assert_ok(
            &extract_from(s, &ref_u, &a, &ex),
            &format!("{case}: extract ref"),
        );
        assert_ok(
            &extract_from(s, &u, &b, &ex),
            &format!("{case}: extract retake"),
        );
        // Every file's bytes against the manifest made from what the retake read.
        let mut c = cmd(s, "hotbak");
        c.args(["verify", "--from", &u]);
        assert_ok(&run(c), &format!("{case}: verify --from"));
        // The system tablespace, undo logs and persistent statistics move
        // with the server's own background work between two backups (purge,
        // flushing, statistics); the prepared retake's checksums cover them.
        let (ta, tb) = (tree(&a), tree(&b));
        assert_eq!(
            ta.keys().collect::<Vec<_>>(),
            tb.keys().collect::<Vec<_>>(),
            "{case}"
        );
        let mut same = 0;
        for (p, d) in &ta {
            let n = p.to_string_lossy();
            let system = n.starts_with("ibdata1")
                || n.starts_with("undo0")
                || n.starts_with("mysql/innodb_index_stats")
                || n.starts_with("mysql/innodb_table_stats");
            if volatile(p) || system {
                continue;
            }
            assert!(tb[p] == *d, "{case}: {n} differs");
            same += 1;
        }
        assert!(same >= 8, "{case}: only {same} files compared");
        // 7. Plain: prepared, the retake serves the source's checksums.
        if case == "plain" {
            let o = Command::new(bin("hotbak"))
                .args(["prepare", "--target-dir"])
                .arg(&b)
                .output()
                .expect("prepare");
            assert!(
                o.status.success(),
                "prepare: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            let want = crate::support::rt().block_on(async {
                let mut c = hotbak::mysql::Session::connect(&sb.connect_options())
                    .await
                    .expect("connect");
                hotbak::testkit::checksum_all(&mut c).await.expect("sums")
            });
            let mut served =
                Sandbox::start_on(&b, &root.path().join("served"), SandboxOptions::default())
                    .expect("a server starts on the prepared retake");
            let got = crate::support::rt().block_on(async {
                let mut c = hotbak::mysql::Session::connect(&served.connect_options())
                    .await
                    .expect("connect");
                hotbak::testkit::checksum_all(&mut c).await.expect("sums")
            });
            served.stop().expect("stop");
            assert!(want.keys().any(|k| k.contains("cold1")), "{want:?}");
            assert_eq!(got, want, "the prepared retake serves other data");
        }
    }
}
