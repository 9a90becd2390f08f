//! The test half of the sandbox (feature `testkit`): fresh datadirs from
//! `mariadb-install-db`, restarts, and connection options for root. Tests,
//! the demo and the benches use it; `hotbak prepare` only needs
//! [`Sandbox::start_on`] and [`Sandbox::stop`].

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

use super::{
    find_tool, io_err, private_tmp, running_as_root, tail_lines, Error, Result, Sandbox,
    SandboxOptions, Tools, LOG_TAIL_LINES,
};
use crate::mysql::ConnectOptions;

impl Sandbox {
    /// Create a fresh datadir `dir/data` with `mariadb-install-db` (root
    /// without password, normal authentication, no test database), then
    /// start the server.
    ///
    /// # Errors
    /// Missing tools, install or startup failure (with the log's last lines).
    pub fn create(dir: &Path, opts: SandboxOptions) -> Result<Sandbox> {
        let tools = Tools::discover(opts.mariadbd.as_deref())?;
        let install_db = find_tool("mariadb-install-db")
            .or_else(|| find_tool("mysql_install_db"))
            .ok_or(Error::ToolMissing {
                tool: "mariadb-install-db",
            })?;
        fs::create_dir_all(dir).map_err(io_err("creating", dir))?;
        let datadir = dir.join("data");
        let log = dir.join("install-db.log");
        let out = fs::File::create(&log).map_err(io_err("creating", &log))?;
        let err = out.try_clone().map_err(io_err("opening", &log))?;
        let mut cmd = Command::new(&install_db);
        cmd.arg("--no-defaults");
        if running_as_root() {
            cmd.arg("--user=root");
        }
        cmd.arg(format!("--datadir={}", datadir.display()))
            .arg("--auth-root-authentication-method=normal")
            .arg("--skip-test-db")
            .arg("--innodb-use-native-aio=0")
            // A private tmpdir: temporary tables are named after the pid, and a
            // file left in a shared /tmp by an earlier process with the same pid
            // makes the bootstrap fail ("Could not remove temporary table").
            .arg(format!("--tmpdir={}", private_tmp(dir)?.display()))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        let status = cmd.status().map_err(|source| Error::Spawn {
            program: install_db.clone(),
            source,
        })?;
        if !status.success() {
            // The generic advice mariadb-install-db prints last hides the cause: show the errors first.
            let errors: String = fs::read_to_string(&log)
                .unwrap_or_default()
                .lines()
                .filter(|l| l.contains("ERROR") || l.contains("rror:"))
                .take(10)
                .map(|l| format!("{l}\n"))
                .collect();
            return Err(Error::InstallFailed {
                datadir,
                status,
                tail: format!("{errors}{}", tail_lines(&log, LOG_TAIL_LINES)),
                log,
            });
        }
        Self::start_with(tools, dir, datadir, opts)
    }

    /// Restart a stopped or killed sandbox on the same datadir, socket and
    /// (when networking) the same port.
    ///
    /// # Errors
    /// As for [`Sandbox::start_on`].
    pub fn restart(&mut self) -> Result<()> {
        if self.is_running() {
            self.stop()?;
        }
        if self.opts.networking {
            self.opts.port = self.port;
        }
        self.spawn_and_wait()
    }

    /// Connection options for this sandbox: root without password over the socket.
    #[must_use]
    pub fn connect_options(&self) -> ConnectOptions {
        ConnectOptions::socket(&self.socket, "root")
    }

    /// Connection options for this sandbox over TCP 127.0.0.1 (`None` without networking).
    #[must_use]
    pub fn tcp_connect_options(&self) -> Option<ConnectOptions> {
        self.port
            .map(|p| ConnectOptions::tcp("127.0.0.1", p, "root"))
    }
}
