//! The README demo: a hot backup of a busy throwaway server, restored and checked.
//!
//! ```text
//! cargo build --release && cargo run --release --example demo
//! ```
//!
//! Starts `mariadbd` in a temp dir, creates a schema (InnoDB of every kind,
//! MyISAM, Aria, CSV), starts writers (bank transfers with a fixed total,
//! gap-free inserts, non-transactional inserts), runs
//! `hotbak backup --stream | xbextract -x -C DIR` while they write, then
//! `hotbak prepare` and `hotbak restore`, starts a server on the restored
//! datadir and checks it. Exits 0 only if every check passed.

use std::ffi::OsStr;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use hotbak::sandbox::{Sandbox, SandboxOptions};
use hotbak::testkit::{self, Binaries, Expect, SchemaOptions, Writer, WriterOptions};

/// Extra `hotbak backup` options (e.g. `--compress zstd`), in one place.
const BACKUP_OPTIONS: &[&str] = &[];

fn step(msg: &str) {
    println!("==> {msg}");
}

fn run(bins: &Binaries, args: &[&OsStr]) -> anyhow::Result<()> {
    let t = Instant::now();
    let (st, out) = testkit::run_tool(&bins.hotbak, args)?;
    if !st.success() {
        bail!("hotbak {:?} failed ({st}):\n{out}", args);
    }
    for l in out.lines().filter(|l| l.starts_with("hotbak:")) {
        println!("    {l}");
    }
    println!("    ({:.1}s)", t.elapsed().as_secs_f64());
    Ok(())
}

fn human(n: u64) -> String {
    if n >= 1 << 20 {
        format!("{:.1} MiB", n as f64 / f64::from(1 << 20))
    } else {
        format!("{:.1} KiB", n as f64 / 1024.0)
    }
}

async fn demo(root: &Path) -> anyhow::Result<bool> {
    let bins = Binaries::next_to_current_exe()?;
    step(&format!(
        "starting a throwaway MariaDB server in {}",
        root.display()
    ));
    let mut src = tokio::task::spawn_blocking({
        let d = root.join("source");
        move || Sandbox::create(&d, SandboxOptions::default())
    })
    .await??;
    let conn = src.connect_options();

    step("creating the schema (InnoDB partitioned/compressed/FULLTEXT/blobs, MyISAM, Aria, CSV)");
    let schema = testkit::setup_schema(&conn, &SchemaOptions::default()).await?;
    println!(
        "    {} bank accounts, total {}; datadir {}",
        schema.accounts,
        schema.bank_total,
        human(testkit::dir_size(src.datadir()))
    );

    step("starting the writers (bank transfers, gap-free seq inserts, MyISAM/Aria inserts, churn)");
    let writer = Writer::start(&conn, &schema, &WriterOptions::default()).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = writer.snapshot();

    let backup = root.join("backup");
    step(&format!(
        "hotbak backup --stream | xbextract -x -C {} (writes go on)",
        backup.display()
    ));
    let extra: Vec<String> = ["--max-rate", "20"]
        .iter()
        .chain(BACKUP_OPTIONS)
        .map(|s| (*s).to_owned())
        .collect();
    let outcome = tokio::task::spawn_blocking({
        let (b, s, l) = (bins.clone(), src.socket().to_owned(), root.join("logs"));
        let dest = backup.clone();
        move || testkit::run_stream_backup(&b, &s, &dest, &l, &extra)
    })
    .await??;
    let during = writer.snapshot();
    let after = writer.stop().await?;
    if !outcome.success() {
        bail!("backup failed: {outcome}");
    }
    for l in outcome
        .hotbak_stderr
        .lines()
        .skip_while(|l| !l.contains("hotbak: backup summary"))
    {
        println!("    {l}");
    }
    println!(
        "    writes during the backup: {} transfers, {} seq rows, {} MyISAM rows",
        during.transfers - before.transfers,
        during.seq - before.seq,
        during.myisam - before.myisam
    );
    println!("    writer total: {after}");
    if !after.errors.is_empty() {
        bail!("writer errors: {}", after.errors.join("; "));
    }
    let backup_size = testkit::dir_size(&backup);
    tokio::task::spawn_blocking(move || src.stop()).await??;

    step("hotbak prepare");
    run(
        &bins,
        &[
            OsStr::new("prepare"),
            OsStr::new("--target-dir"),
            backup.as_os_str(),
        ],
    )?;
    let datadir = root.join("restored");
    step(&format!("hotbak restore into {}", datadir.display()));
    run(
        &bins,
        &[
            OsStr::new("restore"),
            OsStr::new("--target-dir"),
            backup.as_os_str(),
            OsStr::new("--datadir"),
            datadir.as_os_str(),
        ],
    )?;

    step("starting a server on the restored datadir and checking it");
    let mut restored = tokio::task::spawn_blocking({
        let (d, r) = (datadir.clone(), root.join("restored-run"));
        move || Sandbox::start_on(&d, &r, SandboxOptions::default())
    })
    .await??;
    let report = testkit::check_restored(
        &restored.connect_options(),
        &Expect::between(&schema, &before, &after),
    )
    .await;
    tokio::task::spawn_blocking(move || restored.stop()).await??;
    let report = report?;

    println!();
    println!("hotbak demo: what was checked");
    println!(
        "  backup           {} in {:.1}s while the writers ran",
        human(backup_size),
        outcome.elapsed.as_secs_f64()
    );
    println!(
        "  bank total       before {} / after {}",
        schema.bank_total, report.bank_total
    );
    println!(
        "  seq              writer had committed {}..{} rows during the backup; restored {}",
        before.seq, after.seq, report.seq_rows
    );
    println!("{report}");
    Ok(report.ok())
}

fn main() -> ExitCode {
    // A fresh Debian 12 gets the packages the demo needs (apt-get as root
    // or through sudo; HOTBAK_NO_INSTALL=1 turns it off).
    testkit::provision_only(&["mariadbd", "mariadb-install-db", "mariadb"]);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("demo: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let root = match tempfile::Builder::new().prefix("hotbak-demo-").tempdir() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("demo: cannot create a temp dir: {e}");
            return ExitCode::FAILURE;
        }
    };
    let t = Instant::now();
    let res = rt.block_on(demo(root.path())).context("demo");
    match res {
        Ok(true) => {
            println!("\ndemo passed in {:.1}s", t.elapsed().as_secs_f64());
            ExitCode::SUCCESS
        }
        Ok(false) => {
            println!("\ndemo FAILED: see the problems above");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("demo FAILED: {e:#}");
            ExitCode::FAILURE
        }
    }
}
