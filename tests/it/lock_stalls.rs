//! The lock-stall probe of `bench/lock_stalls.sh` (issue 11): small
//! sessions loop one kind of statement each against a server the bench
//! names, while a backup command runs; the longest time any one statement
//! took while the command ran is what the server's users felt of the
//! backup's locks. Ignored in the suite: a benchmark driver, not a test.
//!
//! Environment: `PROBE_SOCKET`, `PROBE_USER`, `PROBE_PASSWORD`, `PROBE_CMD`
//! (run with `sh -c`), `PROBE_LABEL`. Prints one line
//! `STALLS <label> wall=<s> ddl=<s> myisam=<s> aria=<s> user=<s> innodb=<s>`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hotbak::mysql::{ConnectOptions, Password, Session};

use crate::support::rt;

/// One probe: the statements of one round, and the longest round seen in
/// the measured window.
struct Probe {
    name: &'static str,
    round: fn(u64) -> Vec<String>,
}

const PROBES: [Probe; 5] = [
    Probe {
        name: "ddl",
        round: |n| {
            vec![
                format!("CREATE TABLE hb_probe.t_{n} (id INT PRIMARY KEY) ENGINE=InnoDB"),
                format!("DROP TABLE hb_probe.t_{n}"),
            ]
        },
    },
    Probe {
        name: "myisam",
        round: |_| vec!["INSERT INTO hb_probe.m VALUES ()".into()],
    },
    Probe {
        name: "aria",
        round: |_| vec!["INSERT INTO hb_probe.a VALUES ()".into()],
    },
    Probe {
        name: "user",
        round: |n| {
            vec![
                format!("CREATE USER 'hbp_{n}'@'localhost'"),
                format!("DROP USER 'hbp_{n}'@'localhost'"),
            ]
        },
    },
    Probe {
        name: "innodb",
        round: |_| vec!["UPDATE hb_probe.i SET v = v + 1 WHERE id = 1".into()],
    },
];

fn env(k: &str) -> Option<String> {
    std::env::var(k).ok().filter(|v| !v.is_empty())
}

#[test]
#[ignore = "benchmark driver: run by bench/lock_stalls.sh"]
fn lock_stall_probe() {
    let (Some(socket), Some(cmd)) = (env("PROBE_SOCKET"), env("PROBE_CMD")) else {
        eprintln!("PROBE_SOCKET and PROBE_CMD are required");
        return;
    };
    let label = env("PROBE_LABEL").unwrap_or_else(|| "run".into());
    let conn = ConnectOptions {
        socket: Some(socket.into()),
        user: Some(env("PROBE_USER").unwrap_or_else(|| "root".into())),
        password: env("PROBE_PASSWORD").map(Password::new),
        ..ConnectOptions::default()
    };
    rt().block_on(async {
        let mut admin = Session::connect(&conn).await.expect("connect");
        for st in [
            "CREATE DATABASE IF NOT EXISTS hb_probe",
            "DROP TABLE IF EXISTS hb_probe.m, hb_probe.a, hb_probe.i",
            "CREATE TABLE hb_probe.m (id INT AUTO_INCREMENT PRIMARY KEY) ENGINE=MyISAM",
            "CREATE TABLE hb_probe.a (id INT AUTO_INCREMENT PRIMARY KEY) ENGINE=Aria",
            "CREATE TABLE hb_probe.i (id INT PRIMARY KEY, v BIGINT NOT NULL) ENGINE=InnoDB",
            "INSERT INTO hb_probe.i VALUES (1, 0)",
        ] {
            admin.execute(st).await.expect(st);
        }
        let stop = Arc::new(AtomicBool::new(false));
        // The window in which stalls count: (start, end) as offsets from t0.
        let t0 = Instant::now();
        let mut tasks = Vec::new();
        for (k, p) in PROBES.iter().enumerate() {
            let conn = conn.clone();
            let stop = stop.clone();
            let round = p.round;
            tasks.push(tokio::spawn(async move {
                let mut s = Session::connect(&conn).await.expect("probe connects");
                // Wait for the lock as long as it takes: the wait is the measure.
                s.execute("SET SESSION lock_wait_timeout = 3600")
                    .await
                    .expect("timeout");
                let mut rounds: Vec<(Duration, Duration)> = Vec::new();
                let mut n = (k as u64) << 32;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let start = t0.elapsed();
                    for st in round(n) {
                        s.execute(&st).await.expect("probe statement");
                    }
                    rounds.push((start, t0.elapsed()));
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                let _ = s.close().await;
                rounds
            }));
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let from = t0.elapsed();
        let st = tokio::task::spawn_blocking(move || {
            std::process::Command::new("sh")
                .arg("-c")
                .arg(&cmd)
                .status()
        })
        .await
        .expect("join")
        .expect("command starts");
        let to = t0.elapsed();
        assert!(st.success(), "the backup command failed: {st}");
        tokio::time::sleep(Duration::from_secs(1)).await;
        stop.store(true, Ordering::Relaxed);
        let mut line = format!("STALLS {label} wall={:.2}", (to - from).as_secs_f64());
        for (p, t) in PROBES.iter().zip(tasks) {
            let rounds = t.await.expect("probe");
            // A round counts when it overlaps the command's run.
            let worst = rounds
                .iter()
                .filter(|(a, b)| *b >= from && *a <= to)
                .map(|(a, b)| *b - *a)
                .max()
                .unwrap_or_default();
            line.push_str(&format!(" {}={:.3}", p.name, worst.as_secs_f64()));
        }
        println!("{line}");
        admin.execute("DROP DATABASE hb_probe").await.expect("drop");
        let _ = admin.close().await;
    });
}
