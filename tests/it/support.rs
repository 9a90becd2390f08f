//! Shared helpers for the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

/// Path of a built binary of this package.
pub fn bin(name: &str) -> PathBuf {
    match name {
        "hotbak" => PathBuf::from(env!("CARGO_BIN_EXE_hotbak")),
        "xbextract" => PathBuf::from(env!("CARGO_BIN_EXE_xbextract")),
        other => panic!("unknown binary {other}"),
    }
}

/// Find an external tool. Returns `None` (after printing why) when it is missing,
/// unless `HOTBAK_REQUIRE_TOOLS=1`, in which case a missing tool fails the test.
///
/// The first call installs what this machine lacks
/// ([`hotbak::testkit::provision`]): the README's test command sets a fresh
/// Debian 12 up itself.
pub fn tool(name: &str) -> Option<PathBuf> {
    hotbak::testkit::provision();
    if let Some(p) = hotbak::sandbox::find_tool(name) {
        return Some(p);
    }
    if std::env::var("HOTBAK_REQUIRE_TOOLS").as_deref() == Ok("1") {
        panic!("required tool {name} is not installed (HOTBAK_REQUIRE_TOOLS=1)");
    }
    eprintln!("SKIP: {name} not found on PATH");
    None
}

/// Path to the shared reference material (vectors), if present beside the repo.
pub fn shared_dir() -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared");
    p.is_dir().then_some(p)
}

/// A two-thread tokio runtime for tests that drive async code.
pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Replay binlog `files` from position `pos` of the first into the server
/// at `socket` (`mariadb-binlog | mariadb`), panicking on any failure.
pub fn replay_binlog(files: &[PathBuf], pos: u64, socket: &std::path::Path) {
    use std::process::{Command, Stdio};
    let binlog_tool = tool("mariadb-binlog").expect("mariadb-binlog");
    let client = tool("mariadb").expect("mariadb client");
    let mut dump = Command::new(&binlog_tool)
        .arg("--no-defaults")
        .arg(format!("--start-position={pos}"))
        .args(files)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mariadb-binlog");
    let out = dump.stdout.take().expect("pipe");
    let apply = Command::new(&client)
        .arg("--no-defaults")
        .arg(format!("--socket={}", socket.display()))
        .arg("-uroot")
        .stdin(Stdio::from(out))
        .output()
        .expect("mariadb client");
    let dumped = dump.wait_with_output().expect("mariadb-binlog");
    assert!(
        dumped.status.success(),
        "mariadb-binlog: {}",
        String::from_utf8_lossy(&dumped.stderr)
    );
    assert!(
        apply.status.success(),
        "replaying the binlog from position {pos} of {files:?} failed: {}",
        String::from_utf8_lossy(&apply.stderr)
    );
}

/// `cp -a from to` (a fresh copy: `to` is removed first).
pub fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    let _ = std::fs::remove_dir_all(to);
    let st = std::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .expect("cp");
    assert!(st.success(), "cp -a {} {}", from.display(), to.display());
}

/// `file` and `position` of a backup's `xtrabackup_binlog_info`.
pub fn binlog_info(backup: &std::path::Path) -> (String, u64) {
    let text = std::fs::read_to_string(backup.join("xtrabackup_binlog_info")).expect("binlog info");
    let mut f = text.split_whitespace();
    let file = f.next().expect("file").to_owned();
    let pos = f
        .next()
        .and_then(|p| p.parse().ok())
        .expect("numeric position");
    (file, pos)
}

/// Every table of `source` is in `got` with the same checksum, and no
/// other (`who` names `got` in the failure).
pub fn assert_sums_match(
    source: &std::collections::BTreeMap<String, u64>,
    got: &std::collections::BTreeMap<String, u64>,
    who: &str,
) {
    let diff: Vec<String> = source
        .iter()
        .filter(|(k, v)| got.get(*k) != Some(v))
        .map(|(k, v)| format!("{k}: source {v}, {who} {:?}", got.get(k)))
        .collect();
    assert!(
        diff.is_empty(),
        "{who}: checksums differ:\n{}",
        diff.join("\n")
    );
    assert_eq!(source.len(), got.len(), "{who}: table count");
}

/// A source server's final state for a binlog replay: every user table's
/// checksum, and the paths of its binlogs from `first` on (which must be
/// one of them).
pub async fn source_state(
    sb: &hotbak::sandbox::Sandbox,
    first: &str,
) -> (std::collections::BTreeMap<String, u64>, Vec<PathBuf>) {
    let mut s = hotbak::mysql::Session::connect(&sb.connect_options())
        .await
        .expect("connect");
    let sums = hotbak::testkit::checksum_all(&mut s)
        .await
        .expect("checksums");
    let logs: Vec<String> = s
        .query("SHOW BINARY LOGS")
        .await
        .expect("binary logs")
        .iter()
        .map(|r| r.at(0).expect("log name").to_owned())
        .collect();
    s.close().await.expect("close");
    assert!(logs.iter().any(|l| l == first), "{first} not in {logs:?}");
    let files = logs
        .iter()
        .filter(|l| l.as_str() >= first)
        .map(|l| sb.datadir().join(l))
        .collect();
    (sums, files)
}

/// A `mariadbd` started with `--defaults-file` only, as a server whose
/// option file names its datadir and InnoDB directories is started.
/// Stopped (SIGTERM, then waited for) on drop.
pub struct DefaultsFileServer {
    child: std::process::Child,
    /// Its socket (from the option file).
    pub socket: PathBuf,
    /// Its error log.
    pub log: PathBuf,
}

impl DefaultsFileServer {
    /// Start `mariadbd --defaults-file=cnf` (adding `--user=root` when
    /// root) and wait up to 120 s for "ready for connections" in `log`.
    pub fn start(cnf: &std::path::Path, socket: &std::path::Path, log: &std::path::Path) -> Self {
        let mariadbd = tool("mariadbd").expect("mariadbd");
        let mut cmd = std::process::Command::new(mariadbd);
        cmd.arg(format!("--defaults-file={}", cnf.display()));
        let root = std::fs::metadata("/proc/self")
            .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
            .unwrap_or(false);
        if root {
            cmd.arg("--user=root");
        }
        let child = cmd
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("mariadbd starts");
        let mut s = DefaultsFileServer {
            child,
            socket: socket.to_owned(),
            log: log.to_owned(),
        };
        let started = std::time::Instant::now();
        loop {
            if let Ok(Some(st)) = s.child.try_wait() {
                panic!(
                    "mariadbd --defaults-file={} exited ({st}):\n{}",
                    cnf.display(),
                    hotbak::sandbox::tail_lines(log, 30)
                );
            }
            let ready =
                std::fs::read_to_string(log).is_ok_and(|t| t.contains("ready for connections"));
            if ready && socket.exists() {
                return s;
            }
            assert!(
                started.elapsed() < std::time::Duration::from_secs(120),
                "mariadbd not ready after 120 s:\n{}",
                hotbak::sandbox::tail_lines(log, 30)
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    /// Root over the socket.
    pub fn connect_options(&self) -> hotbak::mysql::ConnectOptions {
        hotbak::mysql::ConnectOptions::socket(&self.socket, "root")
    }
}

impl Drop for DefaultsFileServer {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

/// Every file and directory under `dir` (not following symlinks), with
/// its metadata, `dir` itself first.
pub fn walk_tree(dir: &std::path::Path) -> Vec<(PathBuf, std::fs::Metadata)> {
    let mut out = vec![(
        dir.to_path_buf(),
        std::fs::symlink_metadata(dir).expect("metadata"),
    )];
    let mut i = 0;
    while i < out.len() {
        if out[i].1.is_dir() {
            let d = out[i].0.clone();
            let mut more: Vec<_> = std::fs::read_dir(&d)
                .expect("read_dir")
                .map(|e| {
                    let p = e.expect("entry").path();
                    let m = std::fs::symlink_metadata(&p).expect("metadata");
                    (p, m)
                })
                .collect();
            more.sort_by(|a, b| a.0.cmp(&b.0));
            out.extend(more);
        }
        i += 1;
    }
    out
}

/// uid and gid of a user in /etc/passwd.
pub fn user_ids(name: &str) -> (u32, u32) {
    let text = std::fs::read_to_string("/etc/passwd").expect("/etc/passwd");
    text.lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() > 3 && f[0] == name {
                Some((f[2].parse().ok()?, f[3].parse().ok()?))
            } else {
                None
            }
        })
        .unwrap_or_else(|| panic!("no user {name}"))
}

/// `hotbak backup --stream EXTRA` of the server at `socket`, started with
/// its stdout and stderr piped.
pub fn spawn_stream_backup(socket: &std::path::Path, extra: &[String]) -> std::process::Child {
    use std::process::Stdio;
    hotbak::testkit::backup_command(&bin("hotbak"), socket, extra)
        .env_remove("HOTBAK_LOG_FORMAT")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("hotbak starts")
}

/// `hotbak backup --stream EXTRA` of the server at `socket` into `head -c
/// BYTES`, which closes the pipe: the backup fails mid-copy. Its output
/// (stderr captured).
pub fn backup_into_closing_pipe(
    socket: &std::path::Path,
    extra: &[String],
    bytes: u64,
) -> std::process::Output {
    use std::process::{Command, Stdio};
    let mut hb = spawn_stream_backup(socket, extra);
    let pipe = hb.stdout.take().expect("pipe");
    let head = Command::new("head")
        .arg("-c")
        .arg(bytes.to_string())
        .stdin(Stdio::from(pipe))
        .stdout(Stdio::null())
        .status()
        .expect("head");
    assert!(head.success());
    hb.wait_with_output().expect("hotbak exits")
}
