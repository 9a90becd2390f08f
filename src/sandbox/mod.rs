//! Throwaway MariaDB servers: for the tests, the README demo, and
//! `hotbak prepare` (which starts `mariadbd` on a backup directory so that
//! the server runs crash recovery on it).
//!
//! The API is synchronous (`std::process`); async callers wrap the blocking
//! calls in `tokio::task::spawn_blocking`. A [`Sandbox`] owns its `mariadbd`
//! child: [`Sandbox::stop`] shuts it down cleanly (SIGTERM, then waits),
//! [`Sandbox::kill`] sends SIGKILL, and dropping a still-running sandbox
//! kills it. A sandbox never touches a server it did not start.
//!
//! Layout of a sandbox directory `dir`:
//!
//! | path | what |
//! |---|---|
//! | `dir/data` | datadir ([`Sandbox::create`] only; [`Sandbox::start_on`] uses the given datadir) |
//! | `dir/mysqld.sock` | the socket, or a short directory under `/tmp` when that path would exceed [`MAX_SOCKET_PATH`] |
//! | `dir/mariadbd.pid` | pid file |
//! | `dir/error.log` | error log (appended to across restarts) |
//! | `dir/install-db.log` | output of `mariadb-install-db` |

use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::net::TcpListener;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::error::{Classify, ErrorClass};

#[cfg(feature = "testkit")]
mod testing;

/// Longest socket path accepted by the kernel (`sun_path` is 108 bytes with the NUL).
pub const MAX_SOCKET_PATH: usize = 107;

/// How many lines of the error log an error message quotes.
const LOG_TAIL_LINES: usize = 30;

/// The line `mariadbd` prints to its error log once it accepts connections.
const READY_MARKER: &str = "ready for connections";

/// Errors of the sandbox.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A MariaDB program is not installed.
    #[error("{tool} not found (looked in PATH, /usr/sbin, /usr/bin); install mariadb-server 10.8 or later")]
    ToolMissing {
        /// Program name.
        tool: &'static str,
    },
    /// Creating a directory or reading a log failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// `mariadb-install-db` failed.
    #[error("mariadb-install-db into {datadir} failed ({status}); last lines of {log}:\n{tail}")]
    InstallFailed {
        /// Target datadir.
        datadir: PathBuf,
        /// Exit status.
        status: ExitStatus,
        /// Its log file.
        log: PathBuf,
        /// Last lines of its output.
        tail: String,
    },
    /// `mariadbd` exited during startup.
    #[error(
        "mariadbd on {datadir} exited during startup ({status}); last lines of {log}:\n{tail}"
    )]
    StartFailed {
        /// Datadir.
        datadir: PathBuf,
        /// Exit status.
        status: ExitStatus,
        /// Error log.
        log: PathBuf,
        /// Last lines of the error log.
        tail: String,
    },
    /// `mariadbd` did not become ready in time (it was killed).
    #[error("mariadbd on {datadir} not ready after {waited:?}; last lines of {log}:\n{tail}")]
    StartTimeout {
        /// Datadir.
        datadir: PathBuf,
        /// How long we waited.
        waited: Duration,
        /// Error log.
        log: PathBuf,
        /// Last lines of the error log.
        tail: String,
    },
    /// `mariadbd` did not exit in time after SIGTERM (it was then killed).
    #[error("mariadbd (pid {pid}) did not shut down within {waited:?}; it was killed")]
    StopTimeout {
        /// Pid.
        pid: u32,
        /// How long we waited.
        waited: Duration,
    },
    /// `mariadbd` exited with a failure status at shutdown.
    #[error("mariadbd (pid {pid}) exited with {status}; last lines of {log}:\n{tail}")]
    ExitedWithError {
        /// Pid.
        pid: u32,
        /// Exit status.
        status: ExitStatus,
        /// Error log.
        log: PathBuf,
        /// Last lines of the error log.
        tail: String,
    },
    /// A process could not be spawned or signalled.
    #[error("running {program}: {source}")]
    Spawn {
        /// Program.
        program: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

impl Classify for Error {
    fn class(&self) -> ErrorClass {
        match self {
            Error::ToolMissing { .. } => ErrorClass::Usage,
            Error::Io { .. } | Error::Spawn { .. } => ErrorClass::Io,
            Error::InstallFailed { .. } => ErrorClass::Failed,
            Error::StartFailed { .. }
            | Error::StartTimeout { .. }
            | Error::StopTimeout { .. }
            | Error::ExitedWithError { .. } => ErrorClass::Server,
        }
    }
}

type Result<T> = std::result::Result<T, Error>;

/// The MariaDB programs a sandbox runs.
#[derive(Clone, Debug)]
pub struct Tools {
    /// `mariadbd`.
    pub mariadbd: PathBuf,
    /// `mariadb-admin` (optional: only used as a shutdown fallback).
    pub admin: Option<PathBuf>,
}

/// Find `name` in `PATH`, then `/usr/sbin`, `/usr/bin`.
#[must_use]
pub fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .chain([
            Path::new("/usr/sbin").join(name),
            Path::new("/usr/bin").join(name),
        ])
        .find(|p| p.is_file())
}

impl Tools {
    /// Look the programs up; `mariadbd` names the server binary to use
    /// instead of the one found on `PATH`.
    ///
    /// # Errors
    /// [`Error::ToolMissing`] when no `mariadbd` is found, or the given one
    /// is not a file.
    pub fn discover(mariadbd: Option<&Path>) -> Result<Tools> {
        let mariadbd = match mariadbd {
            Some(m) if m.is_file() => m.to_owned(),
            Some(_) => return Err(Error::ToolMissing { tool: "mariadbd" }),
            None => find_tool("mariadbd")
                .or_else(|| find_tool("mysqld"))
                .ok_or(Error::ToolMissing { tool: "mariadbd" })?,
        };
        let admin = find_tool("mariadb-admin").or_else(|| find_tool("mysqladmin"));
        Ok(Tools { mariadbd, admin })
    }
}

/// How to start a sandbox.
#[derive(Clone, Debug)]
pub struct SandboxOptions {
    /// Extra `mariadbd` arguments, appended last (e.g. `--log-bin=mysql-bin`,
    /// `--server-id=1`, `--innodb-log-file-size=16M`, `--innodb-page-size=…`).
    pub server_args: Vec<String>,
    /// Listen on TCP `127.0.0.1` (tests). `false` passes `--skip-networking`
    /// (prepare): only the socket is reachable.
    pub networking: bool,
    /// TCP port; `None` picks a free one. Ignored without `networking`.
    pub port: Option<u16>,
    /// How long to wait for "ready for connections" (crash recovery of a
    /// large backup can take a while).
    pub startup_timeout: Duration,
    /// How long [`Sandbox::stop`] waits after SIGTERM before killing.
    pub shutdown_timeout: Duration,
    /// `--innodb-buffer-pool-size` (bytes, or with a K/M/G suffix); `None`
    /// leaves the server default.
    pub buffer_pool_size: Option<String>,
    /// The `mariadbd` binary to run; `None` finds it on `PATH` (or in
    /// `/usr/sbin`, `/usr/bin`).
    pub mariadbd: Option<PathBuf>,
}

impl Default for SandboxOptions {
    fn default() -> Self {
        SandboxOptions {
            server_args: Vec::new(),
            networking: true,
            port: None,
            startup_timeout: Duration::from_secs(120),
            shutdown_timeout: Duration::from_secs(120),
            buffer_pool_size: Some("64M".to_owned()),
            mariadbd: None,
        }
    }
}

impl SandboxOptions {
    /// Options for `prepare`: no networking, a long startup timeout.
    #[must_use]
    pub fn for_prepare(server_args: Vec<String>) -> Self {
        SandboxOptions {
            server_args,
            networking: false,
            port: None,
            startup_timeout: Duration::from_secs(3600),
            shutdown_timeout: Duration::from_secs(3600),
            buffer_pool_size: None,
            mariadbd: None,
        }
    }
}

/// `dir/tmp`, created if needed: the server's private tmpdir.
fn private_tmp(dir: &Path) -> Result<PathBuf> {
    let t = dir.join("tmp");
    fs::create_dir_all(&t).map_err(io_err("creating", &t))?;
    Ok(t)
}

/// A running throwaway `mariadbd`.
#[derive(Debug)]
pub struct Sandbox {
    dir: PathBuf,
    datadir: PathBuf,
    socket: PathBuf,
    /// A short directory we created for the socket (removed on drop).
    short_socket_dir: Option<PathBuf>,
    port: Option<u16>,
    pid_file: PathBuf,
    error_log: PathBuf,
    child: Option<Child>,
    pid: u32,
    tools: Tools,
    opts: SandboxOptions,
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |source| Error::Io {
        what,
        path: path.to_owned(),
        source,
    }
}

/// True when this process runs as root (`mariadbd` then needs `--user=root`).
fn running_as_root() -> bool {
    fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// A port that was free a moment ago on 127.0.0.1.
fn free_port() -> Result<u16> {
    let l =
        TcpListener::bind("127.0.0.1:0").map_err(io_err("binding", Path::new("127.0.0.1:0")))?;
    let port = l
        .local_addr()
        .map_err(io_err("binding", Path::new("127.0.0.1:0")))?
        .port();
    Ok(port)
}

/// The last `n` lines of a text file (empty if unreadable).
#[must_use]
pub fn tail_lines(path: &Path, n: usize) -> String {
    let Ok(mut f) = fs::File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(64 * 1024);
    if f.seek(SeekFrom::Start(start)).is_err() {
        return String::new();
    }
    let mut buf = Vec::new();
    if f.read_to_end(&mut buf).is_err() {
        return String::new();
    }
    let text = String::from_utf8_lossy(&buf);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Choose the socket path: `dir/mysqld.sock`, or a fresh short directory in
/// `/tmp` when that is too long for `sun_path`.
fn choose_socket(dir: &Path) -> Result<(PathBuf, Option<PathBuf>)> {
    let sock = dir.join("mysqld.sock");
    if sock.as_os_str().len() <= MAX_SOCKET_PATH - 8 {
        return Ok((sock, None));
    }
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    loop {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let short = PathBuf::from(format!("/tmp/hbsock-{}-{n}", std::process::id()));
        match fs::create_dir(&short) {
            Ok(()) => return Ok((short.join("mysqld.sock"), Some(short))),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(Error::Io {
                    what: "creating socket directory",
                    path: short,
                    source: e,
                })
            }
        }
    }
}

impl Sandbox {
    /// Start `mariadbd` on an existing datadir (a restored or extracted
    /// backup, for prepare or verification). Socket, pid file and error log
    /// go into `dir`, which is created if needed.
    ///
    /// # Errors
    /// Missing tools, startup failure (with the error log's last lines).
    pub fn start_on(datadir: &Path, dir: &Path, opts: SandboxOptions) -> Result<Sandbox> {
        let tools = Tools::discover(opts.mariadbd.as_deref())?;
        fs::create_dir_all(dir).map_err(io_err("creating", dir))?;
        Self::start_with(tools, dir, datadir.to_owned(), opts)
    }

    fn start_with(
        tools: Tools,
        dir: &Path,
        datadir: PathBuf,
        opts: SandboxOptions,
    ) -> Result<Sandbox> {
        private_tmp(dir)?;
        let (socket, short_socket_dir) = choose_socket(dir)?;
        let mut sb = Sandbox {
            dir: dir.to_owned(),
            datadir,
            socket,
            short_socket_dir,
            port: None,
            pid_file: dir.join("mariadbd.pid"),
            error_log: dir.join("error.log"),
            child: None,
            pid: 0,
            tools,
            opts,
        };
        // A port picked as free can be taken before mariadbd binds it: retry.
        let attempts = if sb.opts.networking && sb.opts.port.is_none() {
            3
        } else {
            1
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            match sb.spawn_and_wait() {
                Ok(()) => return Ok(sb),
                Err(e @ Error::StartFailed { .. })
                    if attempt < attempts && e.to_string().contains("already in use") => {}
                Err(e) => return Err(e),
            }
        }
    }

    fn server_command(&self, port: Option<u16>) -> Command {
        let mut cmd = Command::new(&self.tools.mariadbd);
        cmd.arg("--no-defaults");
        if running_as_root() {
            cmd.arg("--user=root");
        }
        cmd.arg(format!("--datadir={}", self.datadir.display()))
            .arg(format!("--socket={}", self.socket.display()))
            .arg(format!("--pid-file={}", self.pid_file.display()))
            .arg(format!("--log-error={}", self.error_log.display()))
            .arg("--skip-name-resolve")
            .arg(format!("--tmpdir={}", self.dir.join("tmp").display()))
            // Many throwaway servers share one machine's io_uring/AIO limits
            // (ulimit -l); synchronous I/O is plenty for them.
            .arg("--innodb-use-native-aio=0");
        match port {
            Some(p) => {
                cmd.arg(format!("--port={p}"))
                    .arg("--bind-address=127.0.0.1");
            }
            None => {
                cmd.arg("--skip-networking");
            }
        }
        if let Some(bp) = &self.opts.buffer_pool_size {
            cmd.arg(format!("--innodb-buffer-pool-size={bp}"));
        }
        cmd.args(&self.opts.server_args);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        cmd
    }

    fn spawn_and_wait(&mut self) -> Result<()> {
        let port = if self.opts.networking {
            Some(self.opts.port.map_or_else(free_port, Ok)?)
        } else {
            None
        };
        self.port = port;
        // Only look at what this start appends to the error log.
        let log_offset = fs::metadata(&self.error_log).map(|m| m.len()).unwrap_or(0);
        let mut cmd = self.server_command(port);
        let child = cmd.spawn().map_err(|source| Error::Spawn {
            program: self.tools.mariadbd.clone(),
            source,
        })?;
        self.pid = child.id();
        self.child = Some(child);
        // Stopped with SIGTERM when hotbak itself gets a signal.
        crate::interrupt::track_child(self.pid);
        let started = Instant::now();
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    return Err(Error::StartFailed {
                        datadir: self.datadir.clone(),
                        status,
                        log: self.error_log.clone(),
                        tail: tail_lines(&self.error_log, LOG_TAIL_LINES),
                    });
                }
            }
            if self.log_says_ready(log_offset) && self.socket.exists() {
                return Ok(());
            }
            if started.elapsed() > self.opts.startup_timeout {
                let _ = self.kill();
                return Err(Error::StartTimeout {
                    datadir: self.datadir.clone(),
                    waited: started.elapsed(),
                    log: self.error_log.clone(),
                    tail: tail_lines(&self.error_log, LOG_TAIL_LINES),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log_says_ready(&self, offset: u64) -> bool {
        let Ok(mut f) = fs::File::open(&self.error_log) else {
            return false;
        };
        if f.seek(SeekFrom::Start(offset)).is_err() {
            return false;
        }
        let mut buf = Vec::new();
        if f.read_to_end(&mut buf).is_err() {
            return false;
        }
        String::from_utf8_lossy(&buf).contains(READY_MARKER)
    }

    /// Clean shutdown: SIGTERM, then wait up to the shutdown timeout
    /// (SIGKILL after that, reported as [`Error::StopTimeout`]).
    ///
    /// # Errors
    /// [`Error::StopTimeout`], [`Error::ExitedWithError`], or a failure to signal.
    pub fn stop(&mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        crate::interrupt::untrack_child(self.pid);
        if let Ok(Some(_)) = child.try_wait() {
            return Ok(());
        }
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if !matches!(status, Ok(s) if s.success()) {
            // Fall back to mariadb-admin shutdown over the socket.
            if let Some(admin) = &self.tools.admin {
                let _ = Command::new(admin)
                    .arg("--no-defaults")
                    .arg(format!("--socket={}", self.socket.display()))
                    .arg("--user=root")
                    .arg("shutdown")
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
        }
        let started = Instant::now();
        loop {
            match child.try_wait() {
                Ok(Some(status)) => {
                    if status.success() {
                        return Ok(());
                    }
                    return Err(Error::ExitedWithError {
                        pid: self.pid,
                        status,
                        log: self.error_log.clone(),
                        tail: tail_lines(&self.error_log, LOG_TAIL_LINES),
                    });
                }
                Ok(None) => {}
                Err(source) => {
                    return Err(Error::Spawn {
                        program: self.tools.mariadbd.clone(),
                        source,
                    })
                }
            }
            if started.elapsed() > self.opts.shutdown_timeout {
                let _ = child.kill();
                let _ = child.wait();
                return Err(Error::StopTimeout {
                    pid: self.pid,
                    waited: started.elapsed(),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL the server and reap it (the "server died mid-backup" case).
    ///
    /// # Errors
    /// A failure to signal or reap the process.
    pub fn kill(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            crate::interrupt::untrack_child(self.pid);
            if let Ok(Some(_)) = child.try_wait() {
                return Ok(());
            }
            child.kill().map_err(|source| Error::Spawn {
                program: self.tools.mariadbd.clone(),
                source,
            })?;
            child.wait().map_err(|source| Error::Spawn {
                program: self.tools.mariadbd.clone(),
                source,
            })?;
        }
        Ok(())
    }

    /// Whether the server process is still alive.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// The sandbox directory.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The datadir.
    #[must_use]
    pub fn datadir(&self) -> &Path {
        &self.datadir
    }

    /// The socket path.
    #[must_use]
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The TCP port on 127.0.0.1 (`None` without networking).
    #[must_use]
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// The server pid.
    #[must_use]
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The pid file path.
    #[must_use]
    pub fn pid_file(&self) -> &Path {
        &self.pid_file
    }

    /// The error log path.
    #[must_use]
    pub fn error_log(&self) -> &Path {
        &self.error_log
    }

    /// The last `n` lines of the error log.
    #[must_use]
    pub fn error_log_tail(&self, n: usize) -> String {
        tail_lines(&self.error_log, n)
    }

    /// The programs in use.
    #[must_use]
    pub fn tools(&self) -> &Tools {
        &self.tools
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = self.kill();
        if let Some(d) = &self.short_socket_dir {
            let _ = fs::remove_dir_all(d);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_dirs_get_a_short_socket_dir() {
        let long = PathBuf::from(format!("/tmp/{}", "x".repeat(120)));
        let (sock, short) = choose_socket(&long).expect("socket dir");
        assert!(sock.as_os_str().len() <= MAX_SOCKET_PATH);
        let short = short.expect("short dir used");
        assert!(short.is_dir());
        fs::remove_dir_all(short).expect("cleanup");
        let (sock, short) = choose_socket(Path::new("/tmp/hb")).expect("socket");
        assert_eq!(sock, Path::new("/tmp/hb/mysqld.sock"));
        assert!(short.is_none());
    }

    #[test]
    fn tail_of_missing_file_is_empty() {
        assert_eq!(tail_lines(Path::new("/nonexistent/x.log"), 5), "");
    }
}
