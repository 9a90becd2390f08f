//! A real S3-compatible store for the tests and benches (feature `testkit`):
//! SeaweedFS's `weed mini` (installed by `.ci/install-seaweedfs.sh`) on
//! free loopback ports in a directory of its own, with credentials and one
//! bucket.
//!
//! `weed` runs under a small `sh` watchdog that kills it by pid when the
//! process that started it is gone, so a test binary that exits (or is
//! killed) never leaves a store behind; [`TestStore::stop`] (also on drop)
//! kills it by pid at once.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{Config, Error, Result};

/// A running `weed mini`.
#[derive(Debug)]
pub struct TestStore {
    watchdog: Child,
    pid: Option<u32>,
    /// Its directory (data, log, pid file).
    pub dir: PathBuf,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    /// The bucket created at start.
    pub bucket: String,
    /// Access key id.
    pub access_key: String,
    /// Secret key.
    pub secret_key: String,
}

/// A port `p` with `p` and `p + 10000` (weed's gRPC twin) free on loopback.
fn free_port_pair(taken: &mut Vec<u16>) -> Result<u16> {
    let seed = u64::from(std::process::id()) * 7919 + u64::from(rand::random::<u16>());
    for i in 0..2000u64 {
        let p = u16::try_from(20_000 + (seed + i * 37) % 25_000).unwrap_or(20_000);
        if taken.contains(&p) || taken.contains(&(p + 10_000)) {
            continue;
        }
        let a = TcpListener::bind(("127.0.0.1", p));
        let b = TcpListener::bind(("127.0.0.1", p + 10_000));
        if a.is_ok() && b.is_ok() {
            taken.push(p);
            return Ok(p);
        }
    }
    Err(Error::Usage("no free loopback port pair for weed".into()))
}

impl TestStore {
    /// Start `weed` (the binary at `weed`) in `dir` with bucket `bucket`,
    /// and wait until its S3 port answers. With `remove_dir_at_exit` the
    /// watchdog removes `dir` once `weed` has stopped.
    ///
    /// # Errors
    /// [`Error::Io`] when it cannot start or does not answer within 60 s.
    pub fn start(
        weed: &Path,
        dir: &Path,
        bucket: &str,
        remove_dir_at_exit: bool,
    ) -> Result<TestStore> {
        let io = |what: &str, source| Error::Io {
            path: format!("{what} {}", dir.display()),
            source,
        };
        std::fs::create_dir_all(dir.join("data")).map_err(|e| io("creating", e))?;
        let mut taken = Vec::new();
        let s3 = free_port_pair(&mut taken)?;
        let master = free_port_pair(&mut taken)?;
        let volume = free_port_pair(&mut taken)?;
        let filer = free_port_pair(&mut taken)?;
        let admin = free_port_pair(&mut taken)?;
        let access_key = "hotbaktest".to_owned();
        let secret_key = format!("secret-{:016x}", rand::random::<u64>());
        let pidfile = dir.join("weed.pid");
        let log = dir.join("weed.log");
        // weed reads flags from same-named environment variables, so the
        // script's own variables carry a prefix no flag has.
        let script = r#"
"$HBW_WEED" mini -dir="$HBW_DIR/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
  -admin.ui=false -webdav=false -master.telemetry=false \
  -s3.port.iceberg=0 -s3.port.lance=0 \
  -s3.port="$HBW_S3" -master.port="$HBW_MASTER" -volume.port="$HBW_VOLUME" \
  -filer.port="$HBW_FILER" -admin.port="$HBW_ADMIN" -bucket="$HBW_BUCKET" >"$HBW_LOG" 2>&1 &
W=$!
echo "$W" >"$HBW_PIDFILE"
while kill -0 "$HBW_OWNER" 2>/dev/null && kill -0 "$W" 2>/dev/null; do sleep 1; done
kill "$W" 2>/dev/null
wait "$W" 2>/dev/null
[ -n "$HBW_CLEAN" ] && rm -rf "$HBW_DIR"
"#;
        let watchdog = Command::new("sh")
            .arg("-c")
            .arg(script)
            .env("HBW_WEED", weed)
            .env("HBW_DIR", dir)
            .env("HBW_S3", s3.to_string())
            .env("HBW_MASTER", master.to_string())
            .env("HBW_VOLUME", volume.to_string())
            .env("HBW_FILER", filer.to_string())
            .env("HBW_ADMIN", admin.to_string())
            .env("HBW_BUCKET", bucket)
            .env("HBW_LOG", &log)
            .env("HBW_PIDFILE", &pidfile)
            .env("HBW_OWNER", std::process::id().to_string())
            .env("HBW_CLEAN", if remove_dir_at_exit { "1" } else { "" })
            .env("AWS_ACCESS_KEY_ID", &access_key)
            .env("AWS_SECRET_ACCESS_KEY", &secret_key)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| io("starting weed in", e))?;
        let mut store = TestStore {
            watchdog,
            pid: None,
            dir: dir.to_path_buf(),
            endpoint: format!("http://127.0.0.1:{s3}"),
            bucket: bucket.to_owned(),
            access_key,
            secret_key,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if store.pid.is_none() {
                store.pid = std::fs::read_to_string(&pidfile)
                    .ok()
                    .and_then(|s| s.trim().parse().ok());
            }
            if store.pid.is_some() && store.bucket_ready() {
                return Ok(store);
            }
            if Instant::now() > deadline || matches!(store.watchdog.try_wait(), Ok(Some(_))) {
                let tail = std::fs::read_to_string(&log).unwrap_or_default();
                let tail: String = tail.lines().rev().take(20).collect::<Vec<_>>().join("\n");
                store.stop();
                return Err(io(
                    "weed did not come up in",
                    std::io::Error::other(format!("log (last lines, newest first):\n{tail}")),
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Whether the bucket answers a signed listing (the S3 gateway is up
    /// and the bucket exists).
    fn bucket_ready(&self) -> bool {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return false;
        };
        let Ok(client) = super::Client::new(
            Config {
                attempts: 1,
                ..self.config()
            },
            &self.bucket,
        ) else {
            return false;
        };
        rt.block_on(client.list("")).is_ok()
    }

    /// A client configuration for this store (path style, its credentials).
    #[must_use]
    pub fn config(&self) -> Config {
        Config {
            endpoint: Some(self.endpoint.clone()),
            region: Some("us-east-1".into()),
            access_key: Some(self.access_key.clone()),
            secret_key: Some(self.secret_key.clone()),
            addressing: super::Addressing::Path,
            ..Config::default()
        }
        .resolve(|_| None)
    }

    /// The environment a child process needs to use this store.
    #[must_use]
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_ACCESS_KEY_ID", self.access_key.clone()),
            ("AWS_SECRET_ACCESS_KEY", self.secret_key.clone()),
            ("AWS_REGION", "us-east-1".into()),
        ]
    }

    /// The pid of `weed`.
    #[must_use]
    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// Kill `weed` by pid and reap the watchdog.
    pub fn stop(&mut self) {
        if let Some(pid) = self.pid.take() {
            let _ = Command::new("kill").arg(pid.to_string()).status();
        }
        let _ = self.watchdog.kill();
        let _ = self.watchdog.wait();
    }
}

impl Drop for TestStore {
    fn drop(&mut self) {
        self.stop();
    }
}
