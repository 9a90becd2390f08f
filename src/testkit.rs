//! Workload and checks shared by the integration tests and the demo.
//!
//! Everything here runs against a throwaway server (see [`crate::sandbox`]);
//! nothing touches a server it did not start.
//!
//! - [`setup_schema`]: three schemas (`hb_app`, `hb_arch`, and `hb_ddl` for
//!   the [`DdlLoop`]) with InnoDB tables of every interesting kind
//!   (partitioned, `ROW_FORMAT=COMPRESSED`, FULLTEXT, blobs, a large filler),
//!   MyISAM, Aria and CSV tables, and the two invariant tables: `bank` (a
//!   fixed total over N accounts) and `seq` (ids 1..n, one per transaction).
//! - [`Writer`]: background tasks that write during the backup — bank
//!   transfers, `seq` inserts, sequence-numbered MyISAM and Aria inserts,
//!   and churn on the other tables.
//! - [`DdlLoop`]: CREATE / ALTER / RENAME / DROP / TRUNCATE on InnoDB and
//!   MyISAM tables in a loop, with a 1 s `lock_wait_timeout`; lock-wait
//!   timeouts (the backup's `BLOCK_DDL`) are counted, not errors.
//! - [`check_restored`]: the checks on a server started on a restored
//!   datadir, returning a [`CheckReport`] with the figures.
//! - [`checksum_all`]: `CHECKSUM TABLE` of every user table.
//! - [`Binaries`] and [`run_stream_backup`]: the one place that spells the
//!   `hotbak backup --stream | xbextract -x -C DIR` command.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::task::JoinHandle;

use crate::mysql::{ConnectOptions, Error as DbError, Session};

/// Result type of this module.
pub type Result<T> = anyhow::Result<T>;

/// The main schema (bank, seq, InnoDB tables of every kind).
pub const APP: &str = "hb_app";
/// The second schema (compressed InnoDB, MyISAM, Aria, CSV).
pub const ARCH: &str = "hb_arch";
/// The schema the [`DdlLoop`] works in.
pub const DDL: &str = "hb_ddl";

/// Schemas that are not user data.
const SYSTEM_SCHEMAS: &str = "'mysql','information_schema','performance_schema','sys'";

const ER_LOCK_DEADLOCK: u16 = 1213;

/// How big the schema is.
#[derive(Clone, Debug)]
pub struct SchemaOptions {
    /// Bank accounts.
    pub accounts: u32,
    /// Initial balance of each account.
    pub initial_balance: i64,
    /// Rows in `hb_app.filler` (about 150 bytes each on disk): the bulk of the data.
    pub filler_rows: u64,
    /// Rows in `hb_app.blobs`.
    pub blob_rows: u32,
    /// Bytes per blob.
    pub blob_bytes: u32,
    /// Rows in `hb_arch.compressed`.
    pub compressed_rows: u64,
    /// Rows in `hb_app.docs` (FULLTEXT).
    pub doc_rows: u64,
}

impl Default for SchemaOptions {
    /// About 30 MB of table data: a backup takes a couple of seconds.
    fn default() -> Self {
        SchemaOptions {
            accounts: 100,
            initial_balance: 1000,
            filler_rows: 100_000,
            blob_rows: 40,
            blob_bytes: 64 * 1024,
            compressed_rows: 20_000,
            doc_rows: 2_000,
        }
    }
}

impl SchemaOptions {
    /// About 60 MB of table data (slow, rate-limited backups).
    #[must_use]
    pub fn large() -> Self {
        SchemaOptions {
            filler_rows: 300_000,
            ..SchemaOptions::default()
        }
    }
}

/// What [`setup_schema`] created.
#[derive(Clone, Debug)]
pub struct Schema {
    /// Bank accounts.
    pub accounts: u32,
    /// The bank total (constant under the [`Writer`]).
    pub bank_total: i64,
}

fn q(ident: &str) -> String {
    format!("`{}`", ident.replace('`', "``"))
}

fn parse_num<T: std::str::FromStr>(what: &str, v: Option<&str>) -> Result<T> {
    let v = v.ok_or_else(|| anyhow!("{what}: no value (NULL or no row)"))?;
    v.trim()
        .parse()
        .map_err(|_| anyhow!("{what}: {v:?} is not a number"))
}

async fn value<T: std::str::FromStr>(s: &mut Session, sql: &str) -> Result<T> {
    let v = s.query_value(sql).await.with_context(|| sql.to_owned())?;
    parse_num(sql, v.as_deref())
}

async fn exec_all(s: &mut Session, stmts: &[String]) -> Result<()> {
    for st in stmts {
        s.execute(st).await.with_context(|| st.clone())?;
    }
    Ok(())
}

/// Create the schemas and fill them (drops them first if present).
///
/// # Errors
/// Any failing statement, named.
pub async fn setup_schema(conn: &ConnectOptions, o: &SchemaOptions) -> Result<Schema> {
    let mut s = Session::connect(conn).await?;
    let n_acc = o.accounts.max(2);
    let blob_repeat = (o.blob_bytes / 64).max(1);
    let stmts = vec![
        format!("DROP DATABASE IF EXISTS {APP}"),
        format!("DROP DATABASE IF EXISTS {ARCH}"),
        format!("CREATE DATABASE {APP}"),
        format!("CREATE DATABASE {ARCH}"),
        format!("USE {APP}"),
        // Invariant tables.
        "CREATE TABLE bank (id INT PRIMARY KEY, balance BIGINT NOT NULL, updated INT NOT NULL DEFAULT 0) ENGINE=InnoDB".into(),
        format!("INSERT INTO bank (id, balance) SELECT seq, {} FROM seq_1_to_{n_acc}", o.initial_balance),
        "CREATE TABLE seq (id BIGINT PRIMARY KEY, payload VARCHAR(200) NOT NULL) ENGINE=InnoDB".into(),
        // The bulk.
        "CREATE TABLE filler (id INT PRIMARY KEY, k INT NOT NULL, pad CHAR(100) NOT NULL, KEY (k)) ENGINE=InnoDB".into(),
        format!(
            "INSERT INTO filler SELECT seq, seq MOD 1000, REPEAT(CHAR(65 + seq MOD 26), 100) FROM seq_1_to_{}",
            o.filler_rows.max(1)
        ),
        // Partitioned.
        "CREATE TABLE orders (id INT NOT NULL, region INT NOT NULL, amount DECIMAL(10,2) NOT NULL, note VARCHAR(64), \
         PRIMARY KEY (id, region)) ENGINE=InnoDB PARTITION BY RANGE (region) \
         (PARTITION p0 VALUES LESS THAN (10), PARTITION p1 VALUES LESS THAN (20), PARTITION p2 VALUES LESS THAN MAXVALUE)".into(),
        "INSERT INTO orders SELECT seq, seq MOD 30, seq / 7, CONCAT('order ', seq) FROM seq_1_to_20000".into(),
        // FULLTEXT.
        "CREATE TABLE docs (id INT AUTO_INCREMENT PRIMARY KEY, title VARCHAR(200) NOT NULL, body TEXT NOT NULL, \
         FULLTEXT KEY ft (title, body)) ENGINE=InnoDB".into(),
        format!(
            "INSERT INTO docs (title, body) SELECT CONCAT('document ', seq, ' about ', ELT(1 + seq MOD 5, 'backups', 'redo', 'pages', 'locks', 'binlogs')), \
             REPEAT(CONCAT('word', seq MOD 97, ' lorem ipsum dolor sit amet '), 8) FROM seq_1_to_{}",
            o.doc_rows.max(1)
        ),
        // Blobs.
        "CREATE TABLE blobs (id INT PRIMARY KEY, version INT NOT NULL DEFAULT 0, data LONGBLOB NOT NULL) ENGINE=InnoDB".into(),
        format!(
            "INSERT INTO blobs (id, data) SELECT seq, REPEAT(SHA2(seq, 256), {blob_repeat}) FROM seq_1_to_{}",
            o.blob_rows.max(1)
        ),
        format!("USE {ARCH}"),
        "CREATE TABLE compressed (id INT PRIMARY KEY, v INT NOT NULL, s VARCHAR(255) NOT NULL) \
         ENGINE=InnoDB ROW_FORMAT=COMPRESSED KEY_BLOCK_SIZE=8".into(),
        format!(
            "INSERT INTO compressed SELECT seq, 0, REPEAT(MD5(seq), 6) FROM seq_1_to_{}",
            o.compressed_rows.max(1)
        ),
        // Non-transactional: sequence-numbered (checked as gap-free prefixes) plus static rows.
        "CREATE TABLE nt_myisam (id INT PRIMARY KEY, s VARCHAR(40) NOT NULL) ENGINE=MyISAM".into(),
        "CREATE TABLE nt_aria (id INT PRIMARY KEY, s VARCHAR(40) NOT NULL) ENGINE=Aria TRANSACTIONAL=1".into(),
        "CREATE TABLE m_static (id INT PRIMARY KEY, s VARCHAR(40) NOT NULL, KEY (s)) ENGINE=MyISAM".into(),
        "INSERT INTO m_static SELECT seq, CONCAT('m', seq) FROM seq_1_to_5000".into(),
        "CREATE TABLE a_static (id INT PRIMARY KEY, s VARCHAR(40) NOT NULL) ENGINE=Aria".into(),
        "INSERT INTO a_static SELECT seq, CONCAT('a', seq) FROM seq_1_to_5000".into(),
        "CREATE TABLE csv_t (id INT NOT NULL, s VARCHAR(20) NOT NULL) ENGINE=CSV".into(),
        "INSERT INTO csv_t SELECT seq, CONCAT('c', seq) FROM seq_1_to_500".into(),
    ];
    exec_all(&mut s, &stmts).await?;
    let total: i64 = value(&mut s, &format!("SELECT SUM(balance) FROM {APP}.bank")).await?;
    s.close().await?;
    Ok(Schema {
        accounts: n_acc,
        bank_total: total,
    })
}

// ---------------------------------------------------------------- Writer

/// How hard the [`Writer`] writes.
#[derive(Clone, Debug)]
pub struct WriterOptions {
    /// Concurrent bank-transfer tasks (deadlocks between them are retried).
    pub bank_tasks: usize,
    /// Pause between transactions of each task.
    pub pause: Duration,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            bank_tasks: 2,
            pause: Duration::from_millis(2),
        }
    }
}

#[derive(Debug, Default)]
struct Counters {
    transfers: AtomicU64,
    deadlocks: AtomicU64,
    seq: AtomicU64,
    myisam: AtomicU64,
    aria: AtomicU64,
    churn: AtomicU64,
}

/// What the [`Writer`] has done so far (counts of committed work).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriterReport {
    /// Committed bank transfers.
    pub transfers: u64,
    /// Transfers rolled back after a deadlock or lock wait timeout.
    pub deadlocks: u64,
    /// Highest committed `seq.id` (= rows in `seq`).
    pub seq: u64,
    /// Highest inserted `nt_myisam.id`.
    pub myisam: u64,
    /// Highest inserted `nt_aria.id`.
    pub aria: u64,
    /// Committed churn transactions (blobs, docs, orders, compressed).
    pub churn: u64,
    /// Unexpected errors (each stopped its task).
    pub errors: Vec<String>,
}

impl fmt::Display for WriterReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} transfers ({} deadlocks retried), seq {} rows, MyISAM {} rows, Aria {} rows, {} churn transactions",
            self.transfers, self.deadlocks, self.seq, self.myisam, self.aria, self.churn
        )?;
        if !self.errors.is_empty() {
            write!(f, "; errors: {}", self.errors.join("; "))?;
        }
        Ok(())
    }
}

/// Background writers; run them for the whole backup, then [`Writer::stop`].
pub struct Writer {
    stop: Arc<AtomicBool>,
    counters: Arc<Counters>,
    errors: Arc<Mutex<Vec<String>>>,
    tasks: Vec<JoinHandle<()>>,
}

type TaskFuture = std::pin::Pin<Box<dyn std::future::Future<Output = Result<()>> + Send>>;

fn is_retryable(e: &DbError) -> bool {
    matches!(e, DbError::LockTimeout { .. }) || e.server_code() == Some(ER_LOCK_DEADLOCK)
}

impl Writer {
    /// Connect every task and start writing.
    ///
    /// # Errors
    /// A task cannot connect or read its starting point.
    pub async fn start(
        conn: &ConnectOptions,
        schema: &Schema,
        o: &WriterOptions,
    ) -> Result<Writer> {
        let stop = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(Counters::default());
        let errors = Arc::new(Mutex::new(Vec::new()));
        let mut futs: Vec<(&'static str, TaskFuture)> = Vec::new();
        for i in 0..o.bank_tasks.max(1) {
            let s = Session::connect(conn).await?;
            futs.push((
                "bank",
                Box::pin(bank_task(
                    s,
                    schema.accounts,
                    i as u64,
                    o.pause,
                    stop.clone(),
                    counters.clone(),
                )),
            ));
        }
        let mut s = Session::connect(conn).await?;
        let start: u64 = value(&mut s, &format!("SELECT COUNT(*) FROM {APP}.seq")).await?;
        counters.seq.store(start, Ordering::SeqCst);
        futs.push((
            "seq",
            Box::pin(seq_task(s, start, o.pause, stop.clone(), counters.clone())),
        ));
        let mut s = Session::connect(conn).await?;
        let m: u64 = value(&mut s, &format!("SELECT COUNT(*) FROM {ARCH}.nt_myisam")).await?;
        let a: u64 = value(&mut s, &format!("SELECT COUNT(*) FROM {ARCH}.nt_aria")).await?;
        counters.myisam.store(m, Ordering::SeqCst);
        counters.aria.store(a, Ordering::SeqCst);
        futs.push((
            "nontx",
            Box::pin(nontx_task(s, o.pause, stop.clone(), counters.clone())),
        ));
        let s = Session::connect(conn).await?;
        futs.push((
            "churn",
            Box::pin(churn_task(s, o.pause, stop.clone(), counters.clone())),
        ));
        let tasks = futs
            .into_iter()
            .map(|(name, f)| {
                let errors = errors.clone();
                tokio::spawn(async move {
                    if let Err(e) = f.await {
                        if let Ok(mut g) = errors.lock() {
                            g.push(format!("{name} writer: {e:#}"));
                        }
                    }
                })
            })
            .collect();
        Ok(Writer {
            stop,
            counters,
            errors,
            tasks,
        })
    }

    /// The counts so far.
    #[must_use]
    pub fn snapshot(&self) -> WriterReport {
        let c = &self.counters;
        WriterReport {
            transfers: c.transfers.load(Ordering::SeqCst),
            deadlocks: c.deadlocks.load(Ordering::SeqCst),
            seq: c.seq.load(Ordering::SeqCst),
            myisam: c.myisam.load(Ordering::SeqCst),
            aria: c.aria.load(Ordering::SeqCst),
            churn: c.churn.load(Ordering::SeqCst),
            errors: self.errors.lock().map(|g| g.clone()).unwrap_or_default(),
        }
    }

    /// Stop every task after its current transaction and report.
    ///
    /// # Errors
    /// A task panicked.
    pub async fn stop(self) -> Result<WriterReport> {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.tasks {
            t.await.map_err(|e| anyhow!("writer task: {e}"))?;
        }
        let c = &self.counters;
        let errors = self.errors.lock().map(|g| g.clone()).unwrap_or_default();
        Ok(WriterReport {
            transfers: c.transfers.load(Ordering::SeqCst),
            deadlocks: c.deadlocks.load(Ordering::SeqCst),
            seq: c.seq.load(Ordering::SeqCst),
            myisam: c.myisam.load(Ordering::SeqCst),
            aria: c.aria.load(Ordering::SeqCst),
            churn: c.churn.load(Ordering::SeqCst),
            errors,
        })
    }
}

async fn bank_task(
    mut s: Session,
    accounts: u32,
    seed: u64,
    pause: Duration,
    stop: Arc<AtomicBool>,
    c: Arc<Counters>,
) -> Result<()> {
    let mut rng = StdRng::seed_from_u64(0x5eed ^ seed.wrapping_mul(0x9e37_79b9));
    s.execute(&format!("USE {APP}")).await?;
    s.execute("SET SESSION innodb_lock_wait_timeout = 5")
        .await?;
    while !stop.load(Ordering::SeqCst) {
        let a = rng.gen_range(1..=accounts);
        let mut b = rng.gen_range(1..=accounts);
        if a == b {
            b = a % accounts + 1;
        }
        let amount: i64 = rng.gen_range(1..=50);
        let stmts = [
            "START TRANSACTION".to_owned(),
            format!("UPDATE bank SET balance = balance - {amount}, updated = updated + 1 WHERE id = {a}"),
            format!("UPDATE bank SET balance = balance + {amount}, updated = updated + 1 WHERE id = {b}"),
            "COMMIT".to_owned(),
        ];
        let mut res = Ok(());
        for st in &stmts {
            res = s.execute(st).await;
            if res.is_err() {
                break;
            }
        }
        match res {
            Ok(()) => {
                c.transfers.fetch_add(1, Ordering::SeqCst);
            }
            Err(e) if is_retryable(&e) => {
                s.execute("ROLLBACK").await?;
                c.deadlocks.fetch_add(1, Ordering::SeqCst);
            }
            Err(e) => return Err(e.into()),
        }
        tokio::time::sleep(pause).await;
    }
    Ok(())
}

async fn seq_task(
    mut s: Session,
    mut n: u64,
    pause: Duration,
    stop: Arc<AtomicBool>,
    c: Arc<Counters>,
) -> Result<()> {
    s.execute(&format!("USE {APP}")).await?;
    while !stop.load(Ordering::SeqCst) {
        let id = n + 1;
        s.execute("START TRANSACTION").await?;
        s.execute(&format!(
            "INSERT INTO seq (id, payload) VALUES ({id}, REPEAT(CHAR(97 + {id} MOD 26), 150))"
        ))
        .await?;
        s.execute("COMMIT").await?;
        n = id;
        c.seq.store(n, Ordering::SeqCst);
        tokio::time::sleep(pause).await;
    }
    Ok(())
}

async fn nontx_task(
    mut s: Session,
    pause: Duration,
    stop: Arc<AtomicBool>,
    c: Arc<Counters>,
) -> Result<()> {
    s.execute(&format!("USE {ARCH}")).await?;
    while !stop.load(Ordering::SeqCst) {
        let m = c.myisam.load(Ordering::SeqCst) + 1;
        s.execute(&format!(
            "INSERT INTO nt_myisam VALUES ({m}, CONCAT('myisam row ', {m}))"
        ))
        .await?;
        c.myisam.store(m, Ordering::SeqCst);
        let a = c.aria.load(Ordering::SeqCst) + 1;
        s.execute(&format!(
            "INSERT INTO nt_aria VALUES ({a}, CONCAT('aria row ', {a}))"
        ))
        .await?;
        c.aria.store(a, Ordering::SeqCst);
        tokio::time::sleep(pause).await;
    }
    Ok(())
}

async fn churn_task(
    mut s: Session,
    pause: Duration,
    stop: Arc<AtomicBool>,
    c: Arc<Counters>,
) -> Result<()> {
    let mut rng = StdRng::seed_from_u64(0xc4u64);
    let mut i: u64 = 0;
    while !stop.load(Ordering::SeqCst) {
        i += 1;
        let st = match i % 4 {
            0 => format!(
                "UPDATE {APP}.blobs SET version = version + 1, data = REPEAT(SHA2(CONCAT(id, '/', {i}), 256), 1024) WHERE id = {}",
                rng.gen_range(1..=40)
            ),
            1 => format!(
                "INSERT INTO {APP}.docs (title, body) VALUES ('churn {i}', REPEAT('redo pages locks ', 20))"
            ),
            2 => format!(
                "INSERT INTO {APP}.orders VALUES ({}, {}, {i} / 3, 'churn') ON DUPLICATE KEY UPDATE amount = amount + 1",
                100_000 + i,
                i % 30
            ),
            _ => format!(
                "UPDATE {ARCH}.compressed SET v = v + 1, s = REPEAT(MD5({i}), 6) WHERE id BETWEEN {0} AND {0} + 20",
                rng.gen_range(1..=1000) * 10
            ),
        };
        s.execute("START TRANSACTION").await?;
        match s.execute(&st).await {
            Ok(()) => {
                s.execute("COMMIT").await?;
                c.churn.fetch_add(1, Ordering::SeqCst);
            }
            Err(e) if is_retryable(&e) => {
                s.execute("ROLLBACK").await?;
            }
            Err(e) => return Err(e.into()),
        }
        tokio::time::sleep(pause).await;
    }
    Ok(())
}

// ---------------------------------------------------------------- DdlLoop

/// What the [`DdlLoop`] did.
#[derive(Clone, Debug, Default)]
pub struct DdlReport {
    /// Statements that succeeded, by kind (`CREATE`, `ALTER`, `RENAME`, `DROP`, `TRUNCATE`, `INSERT`).
    pub ok: BTreeMap<&'static str, u64>,
    /// Statements that hit the 1 s `lock_wait_timeout`.
    pub lock_timeouts: u64,
    /// Completed loop rounds.
    pub rounds: u64,
    /// Unexpected errors (each stopped the loop).
    pub errors: Vec<String>,
}

impl DdlReport {
    /// Total successful statements.
    #[must_use]
    pub fn total_ok(&self) -> u64 {
        self.ok.values().sum()
    }
}

impl fmt::Display for DdlReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} rounds, {} lock-wait timeouts, ok:",
            self.rounds, self.lock_timeouts
        )?;
        for (k, v) in &self.ok {
            write!(f, " {k}={v}")?;
        }
        if !self.errors.is_empty() {
            write!(f, "; errors: {}", self.errors.join("; "))?;
        }
        Ok(())
    }
}

/// Rows in the DDL loop's fixed tables (checked after restore).
pub const DDL_ROWS: u64 = 300;

/// A loop of DDL statements on `hb_ddl`, run during the backup.
pub struct DdlLoop {
    stop: Arc<AtomicBool>,
    task: JoinHandle<DdlReport>,
}

/// The tables of `hb_ddl` whose state the loop tracks.
#[derive(Debug, Default)]
struct DdlState {
    round: u64,
    inno_ren_b: bool,
    my_ren_b: bool,
    inno_alt_extra: bool,
    my_alt_extra: bool,
    created: std::collections::VecDeque<String>,
}

impl DdlLoop {
    /// Create `hb_ddl` and start the loop.
    ///
    /// # Errors
    /// Setup statements fail.
    pub async fn start(conn: &ConnectOptions, pause: Duration) -> Result<DdlLoop> {
        let mut s = Session::connect(conn).await?;
        let n = DDL_ROWS;
        let stmts = vec![
            format!("DROP DATABASE IF EXISTS {DDL}"),
            format!("CREATE DATABASE {DDL}"),
            format!("USE {DDL}"),
            "CREATE TABLE i_alt (id INT PRIMARY KEY, s VARCHAR(50) NOT NULL) ENGINE=InnoDB".into(),
            format!("INSERT INTO i_alt SELECT seq, CONCAT('alter', seq) FROM seq_1_to_{n}"),
            "CREATE TABLE i_ren_a (id INT PRIMARY KEY) ENGINE=InnoDB".into(),
            format!("INSERT INTO i_ren_a SELECT seq FROM seq_1_to_{n}"),
            "CREATE TABLE i_trunc (id INT PRIMARY KEY) ENGINE=InnoDB".into(),
            "CREATE TABLE m_alt (id INT PRIMARY KEY, s VARCHAR(50) NOT NULL) ENGINE=MyISAM".into(),
            format!("INSERT INTO m_alt SELECT seq, CONCAT('alter', seq) FROM seq_1_to_{n}"),
            "CREATE TABLE m_ren_a (id INT PRIMARY KEY) ENGINE=MyISAM".into(),
            format!("INSERT INTO m_ren_a SELECT seq FROM seq_1_to_{n}"),
            "CREATE TABLE m_trunc (id INT PRIMARY KEY) ENGINE=MyISAM".into(),
        ];
        exec_all(&mut s, &stmts).await?;
        s.execute("SET SESSION lock_wait_timeout = 1").await?;
        s.execute("SET SESSION innodb_lock_wait_timeout = 1")
            .await?;
        let stop = Arc::new(AtomicBool::new(false));
        let st = stop.clone();
        let task = tokio::spawn(async move {
            let mut r = DdlReport::default();
            let mut state = DdlState::default();
            while !st.load(Ordering::SeqCst) {
                if let Err(e) = ddl_round(&mut s, &mut state, &mut r).await {
                    r.errors.push(format!("{e:#}"));
                    break;
                }
                r.rounds += 1;
                tokio::time::sleep(pause).await;
            }
            let _ = s.close().await;
            r
        });
        Ok(DdlLoop { stop, task })
    }

    /// Stop after the current round and report.
    ///
    /// # Errors
    /// The loop task panicked.
    pub async fn stop(self) -> Result<DdlReport> {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.map_err(|e| anyhow!("DDL loop task: {e}"))
    }
}

/// Run one DDL statement: `Ok(true)` done, `Ok(false)` lock-wait timeout.
async fn ddl(s: &mut Session, r: &mut DdlReport, kind: &'static str, sql: &str) -> Result<bool> {
    match s.execute(sql).await {
        Ok(()) => {
            *r.ok.entry(kind).or_default() += 1;
            Ok(true)
        }
        Err(DbError::LockTimeout { .. }) => {
            r.lock_timeouts += 1;
            Ok(false)
        }
        Err(e) => Err(anyhow::Error::new(e).context(format!("DDL loop: {sql}"))),
    }
}

async fn ddl_round(s: &mut Session, st: &mut DdlState, r: &mut DdlReport) -> Result<()> {
    st.round += 1;
    let i = st.round;
    let n = DDL_ROWS;
    // CREATE (InnoDB and MyISAM alternately), fill it, DROP the oldest.
    let engine = if i % 2 == 0 { "InnoDB" } else { "MyISAM" };
    let name = format!("new_{i}");
    if ddl(
        s,
        r,
        "CREATE",
        &format!(
            "CREATE TABLE {name} (id INT PRIMARY KEY, s VARCHAR(20) NOT NULL) ENGINE={engine}"
        ),
    )
    .await?
    {
        st.created.push_back(name.clone());
        // The table may also be left empty if this times out; both are consistent.
        ddl(
            s,
            r,
            "INSERT",
            &format!("INSERT INTO {name} SELECT seq, 'new' FROM seq_1_to_100"),
        )
        .await?;
    }
    if st.created.len() > 2 {
        if let Some(old) = st.created.front().cloned() {
            if ddl(s, r, "DROP", &format!("DROP TABLE {old}")).await? {
                st.created.pop_front();
            }
        }
    }
    // ALTER: add a column with a rebuild, then drop it again.
    let alt = if st.inno_alt_extra {
        "ALTER TABLE i_alt DROP COLUMN extra, FORCE"
    } else {
        "ALTER TABLE i_alt ADD COLUMN extra INT NOT NULL DEFAULT 7, FORCE"
    };
    if ddl(s, r, "ALTER", alt).await? {
        st.inno_alt_extra = !st.inno_alt_extra;
    }
    let alt = if st.my_alt_extra {
        "ALTER TABLE m_alt DROP COLUMN extra"
    } else {
        "ALTER TABLE m_alt ADD COLUMN extra INT NOT NULL DEFAULT 5"
    };
    if ddl(s, r, "ALTER", alt).await? {
        st.my_alt_extra = !st.my_alt_extra;
    }
    // RENAME back and forth.
    let ren = if st.inno_ren_b {
        "RENAME TABLE i_ren_b TO i_ren_a"
    } else {
        "RENAME TABLE i_ren_a TO i_ren_b"
    };
    if ddl(s, r, "RENAME", ren).await? {
        st.inno_ren_b = !st.inno_ren_b;
    }
    let ren = if st.my_ren_b {
        "RENAME TABLE m_ren_b TO m_ren_a"
    } else {
        "RENAME TABLE m_ren_a TO m_ren_b"
    };
    if ddl(s, r, "RENAME", ren).await? {
        st.my_ren_b = !st.my_ren_b;
    }
    // TRUNCATE and refill.
    for t in ["i_trunc", "m_trunc"] {
        if ddl(s, r, "TRUNCATE", &format!("TRUNCATE TABLE {t}")).await? {
            ddl(
                s,
                r,
                "INSERT",
                &format!("INSERT INTO {t} SELECT seq FROM seq_1_to_{n}"),
            )
            .await?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------- checks

/// What a restored server must show.
#[derive(Clone, Debug)]
pub struct Expect {
    /// The bank total.
    pub bank_total: i64,
    /// Bank accounts.
    pub accounts: u32,
    /// Bounds on the rows of `seq` (committed before the backup ..= committed at the end).
    pub seq: (u64, u64),
    /// Bounds on the rows of `nt_myisam`.
    pub myisam: (u64, u64),
    /// Bounds on the rows of `nt_aria`.
    pub aria: (u64, u64),
    /// Check the `hb_ddl` invariants.
    pub ddl: bool,
}

impl Expect {
    /// What to expect of a backup taken while the writer went from `before` to `after`.
    #[must_use]
    pub fn between(schema: &Schema, before: &WriterReport, after: &WriterReport) -> Expect {
        Expect {
            bank_total: schema.bank_total,
            accounts: schema.accounts,
            seq: (before.seq, after.seq),
            myisam: (before.myisam, after.myisam),
            aria: (before.aria, after.aria),
            ddl: false,
        }
    }
}

/// One table's `CHECK TABLE` result and row count.
#[derive(Clone, Debug)]
pub struct TableCheck {
    /// `schema.table`.
    pub name: String,
    /// Storage engine.
    pub engine: String,
    /// Rows (`COUNT(*)`).
    pub rows: u64,
    /// The final status message (`OK` when good).
    pub status: String,
    /// Other messages (warnings, notes, errors).
    pub messages: Vec<String>,
}

/// The figures [`check_restored`] saw, and the checks that failed.
#[derive(Clone, Debug, Default)]
pub struct CheckReport {
    /// Every user table.
    pub tables: Vec<TableCheck>,
    /// Bank accounts found.
    pub bank_accounts: u64,
    /// Bank total found.
    pub bank_total: i64,
    /// Rows in `seq` (= its highest id when gap-free).
    pub seq_rows: u64,
    /// Rows in `nt_myisam`.
    pub myisam_rows: u64,
    /// Rows in `nt_aria`.
    pub aria_rows: u64,
    /// InnoDB tables of the data dictionary without a table definition, or the reverse.
    pub orphans: Vec<String>,
    /// Failed checks; empty when everything passed.
    pub problems: Vec<String>,
}

impl CheckReport {
    /// True when every check passed.
    #[must_use]
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }

    /// Total rows in all user tables.
    #[must_use]
    pub fn total_rows(&self) -> u64 {
        self.tables.iter().map(|t| t.rows).sum()
    }

    /// `Err` listing the failed checks.
    ///
    /// # Errors
    /// Any check failed.
    pub fn ensure_ok(&self) -> Result<()> {
        if self.ok() {
            Ok(())
        } else {
            bail!(
                "restored server failed {} checks:\n  {}",
                self.problems.len(),
                self.problems.join("\n  ")
            )
        }
    }
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ok_tables = self.tables.iter().filter(|t| t.status == "OK").count();
        writeln!(
            f,
            "  CHECK TABLE      {ok_tables}/{} user tables OK ({} rows)",
            self.tables.len(),
            self.total_rows()
        )?;
        for t in &self.tables {
            writeln!(
                f,
                "    {:<28} {:<7} {:>8} rows  {}",
                t.name, t.engine, t.rows, t.status
            )?;
        }
        writeln!(
            f,
            "  bank             {} accounts, total {}",
            self.bank_accounts, self.bank_total
        )?;
        writeln!(
            f,
            "  seq              {} rows, ids 1..{} without gaps",
            self.seq_rows, self.seq_rows
        )?;
        writeln!(
            f,
            "  non-transactional MyISAM prefix 1..{}, Aria prefix 1..{}",
            self.myisam_rows, self.aria_rows
        )?;
        if self.problems.is_empty() {
            write!(f, "  result           every check passed")
        } else {
            write!(f, "  PROBLEMS:\n    {}", self.problems.join("\n    "))
        }
    }
}

/// Base tables of the user schemas: `(schema, table, engine)`.
///
/// # Errors
/// Query errors.
pub async fn user_tables(s: &mut Session) -> Result<Vec<(String, String, String)>> {
    let sql = format!(
        "SELECT TABLE_SCHEMA, TABLE_NAME, IFNULL(ENGINE, '') FROM information_schema.TABLES \
         WHERE TABLE_TYPE = 'BASE TABLE' AND TABLE_SCHEMA NOT IN ({SYSTEM_SCHEMAS}) ORDER BY 1, 2"
    );
    let rows = s.query(&sql).await?;
    rows.iter()
        .map(|r| {
            Ok((
                r.at(0)
                    .ok_or_else(|| anyhow!("{sql}: NULL schema"))?
                    .to_owned(),
                r.at(1)
                    .ok_or_else(|| anyhow!("{sql}: NULL table"))?
                    .to_owned(),
                r.at(2).unwrap_or("").to_owned(),
            ))
        })
        .collect()
}

/// A gap-free prefix check of an id column: returns the row count.
async fn prefix(s: &mut Session, table: &str, problems: &mut Vec<String>) -> Result<u64> {
    let sql = format!(
        "SELECT COUNT(*), IFNULL(MIN(id), 0), IFNULL(MAX(id), 0), COUNT(DISTINCT id) FROM {table}"
    );
    let rows = s.query(&sql).await?;
    let r = rows.first().ok_or_else(|| anyhow!("{sql}: no row"))?;
    let n: u64 = parse_num(&sql, r.at(0))?;
    let min: u64 = parse_num(&sql, r.at(1))?;
    let max: u64 = parse_num(&sql, r.at(2))?;
    let distinct: u64 = parse_num(&sql, r.at(3))?;
    if n > 0 && (min != 1 || max != n || distinct != n) {
        problems.push(format!(
            "{table}: ids are not 1..n without gaps: {n} rows, min {min}, max {max}, {distinct} distinct"
        ));
    }
    Ok(n)
}

fn within(problems: &mut Vec<String>, what: &str, n: u64, (lo, hi): (u64, u64)) {
    if n < lo || n > hi {
        problems.push(format!(
            "{what}: {n} rows, expected between {lo} (committed before the backup) and {hi} (at the end)"
        ));
    }
}

/// Check a server started on a restored datadir: `CHECK TABLE` on every user
/// table, the bank total, `seq` without gaps and within the writer's bounds,
/// the MyISAM and Aria sequences as gap-free prefixes, the InnoDB data
/// dictionary against the table definitions, and the `hb_ddl` invariants when
/// asked.
///
/// # Errors
/// Only when the checks cannot run (connection, query failure); failed checks
/// are in [`CheckReport::problems`].
pub async fn check_restored(conn: &ConnectOptions, e: &Expect) -> Result<CheckReport> {
    let mut s = Session::connect(conn).await?;
    let mut rep = CheckReport::default();
    let tables = user_tables(&mut s).await?;
    for (db, t, engine) in &tables {
        let full = format!("{}.{}", q(db), q(t));
        let name = format!("{db}.{t}");
        let rows = s.query(&format!("CHECK TABLE {full}")).await?;
        let mut status = String::from("(no status)");
        let mut messages = Vec::new();
        for r in &rows {
            let ty = r.get("Msg_type").unwrap_or("");
            let text = r.get("Msg_text").unwrap_or("").to_owned();
            if ty.eq_ignore_ascii_case("status") {
                status = text;
            } else {
                messages.push(format!("{ty}: {text}"));
            }
        }
        let count: u64 = match s.query_value(&format!("SELECT COUNT(*) FROM {full}")).await {
            Ok(v) => parse_num(&name, v.as_deref())?,
            Err(err) => {
                rep.problems
                    .push(format!("{name}: SELECT COUNT(*) failed: {err}"));
                0
            }
        };
        if status != "OK" {
            rep.problems.push(format!(
                "{name} ({engine}): CHECK TABLE status {status:?} {}",
                messages.join(" | ")
            ));
        }
        rep.tables.push(TableCheck {
            name,
            engine: engine.clone(),
            rows: count,
            status,
            messages,
        });
    }
    let have = |db: &str, t: &str| tables.iter().any(|(d, n, _)| d == db && n == t);
    for (db, t) in [
        (APP, "bank"),
        (APP, "seq"),
        (ARCH, "nt_myisam"),
        (ARCH, "nt_aria"),
    ] {
        if !have(db, t) {
            rep.problems.push(format!("{db}.{t} is missing"));
        }
    }
    if have(APP, "bank") {
        let sql = format!("SELECT COUNT(*), IFNULL(SUM(balance), 0) FROM {APP}.bank");
        let rows = s.query(&sql).await?;
        let r = rows.first().ok_or_else(|| anyhow!("{sql}: no row"))?;
        rep.bank_accounts = parse_num(&sql, r.at(0))?;
        rep.bank_total = parse_num(&sql, r.at(1))?;
        if rep.bank_total != e.bank_total {
            rep.problems.push(format!(
                "bank total is {}, expected {}",
                rep.bank_total, e.bank_total
            ));
        }
        if rep.bank_accounts != u64::from(e.accounts) {
            rep.problems.push(format!(
                "bank has {} accounts, expected {}",
                rep.bank_accounts, e.accounts
            ));
        }
    }
    if have(APP, "seq") {
        rep.seq_rows = prefix(&mut s, &format!("{APP}.seq"), &mut rep.problems).await?;
        within(&mut rep.problems, "seq", rep.seq_rows, e.seq);
    }
    if have(ARCH, "nt_myisam") {
        rep.myisam_rows = prefix(&mut s, &format!("{ARCH}.nt_myisam"), &mut rep.problems).await?;
        within(&mut rep.problems, "nt_myisam", rep.myisam_rows, e.myisam);
    }
    if have(ARCH, "nt_aria") {
        rep.aria_rows = prefix(&mut s, &format!("{ARCH}.nt_aria"), &mut rep.problems).await?;
        within(&mut rep.problems, "nt_aria", rep.aria_rows, e.aria);
    }
    rep.orphans = dictionary_orphans(&mut s, &tables).await?;
    for o in &rep.orphans {
        rep.problems.push(format!("data dictionary mismatch: {o}"));
    }
    if e.ddl {
        check_ddl(&mut s, &tables, &mut rep.problems).await?;
    }
    s.close().await?;
    Ok(rep)
}

/// InnoDB tables in `INNODB_SYS_TABLES` of the user schemas without a
/// table definition, and InnoDB tables with a definition but not in the
/// dictionary.
async fn dictionary_orphans(
    s: &mut Session,
    tables: &[(String, String, String)],
) -> Result<Vec<String>> {
    let rows = s
        .query("SELECT NAME FROM information_schema.INNODB_SYS_TABLES")
        .await?;
    let mut dict = std::collections::BTreeSet::new();
    for r in &rows {
        let Some(name) = r.at(0) else { continue };
        let Some((db, t)) = name.split_once('/') else {
            continue; // SYS_* tables
        };
        if ["mysql", "sys", "performance_schema", "information_schema"].contains(&db)
            || t.starts_with("FTS_")
        {
            continue;
        }
        let base = t.split("#P#").next().unwrap_or(t);
        dict.insert(format!("{db}.{base}"));
    }
    let defined: std::collections::BTreeSet<String> = tables
        .iter()
        .filter(|(_, _, e)| e.eq_ignore_ascii_case("InnoDB"))
        .map(|(d, t, _)| format!("{d}.{t}"))
        .collect();
    let mut out: Vec<String> = dict
        .difference(&defined)
        .map(|t| format!("{t} is in the InnoDB dictionary but has no table definition"))
        .collect();
    out.extend(
        defined
            .difference(&dict)
            .map(|t| format!("{t} has a definition but is not in the InnoDB dictionary")),
    );
    Ok(out)
}

async fn check_ddl(
    s: &mut Session,
    tables: &[(String, String, String)],
    problems: &mut Vec<String>,
) -> Result<()> {
    let have = |t: &str| tables.iter().any(|(d, n, _)| d == DDL && n == t);
    for (a, b) in [("i_ren_a", "i_ren_b"), ("m_ren_a", "m_ren_b")] {
        match (have(a), have(b)) {
            (true, false) | (false, true) => {
                let t = if have(a) { a } else { b };
                let n: u64 = value(s, &format!("SELECT COUNT(*) FROM {DDL}.{t}")).await?;
                if n != DDL_ROWS {
                    problems.push(format!("{DDL}.{t}: {n} rows, expected {DDL_ROWS}"));
                }
            }
            (x, y) => problems.push(format!(
                "{DDL}: exactly one of {a}/{b} must exist (found {a}: {x}, {b}: {y})"
            )),
        }
    }
    for t in ["i_alt", "m_alt"] {
        if !have(t) {
            problems.push(format!("{DDL}.{t} is missing"));
            continue;
        }
        let n: u64 = value(s, &format!("SELECT COUNT(*) FROM {DDL}.{t}")).await?;
        if n != DDL_ROWS {
            problems.push(format!("{DDL}.{t}: {n} rows, expected {DDL_ROWS}"));
        }
    }
    for t in ["i_trunc", "m_trunc"] {
        if !have(t) {
            problems.push(format!("{DDL}.{t} is missing"));
            continue;
        }
        let n: u64 = value(s, &format!("SELECT COUNT(*) FROM {DDL}.{t}")).await?;
        if n != 0 && n != DDL_ROWS {
            problems.push(format!("{DDL}.{t}: {n} rows, expected 0 or {DDL_ROWS}"));
        }
    }
    Ok(())
}

/// `CHECKSUM TABLE` of every user table, by `schema.table`.
///
/// # Errors
/// Query errors, a NULL checksum (the table could not be read).
pub async fn checksum_all(s: &mut Session) -> Result<BTreeMap<String, u64>> {
    let tables = user_tables(s).await?;
    let mut out = BTreeMap::new();
    if tables.is_empty() {
        return Ok(out);
    }
    let list = tables
        .iter()
        .map(|(d, t, _)| format!("{}.{}", q(d), q(t)))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!("CHECKSUM TABLE {list}");
    for r in s.query(&sql).await? {
        let name = r
            .at(0)
            .ok_or_else(|| anyhow!("CHECKSUM TABLE: NULL table name"))?
            .to_owned();
        let sum: u64 = parse_num(&format!("CHECKSUM TABLE {name}"), r.at(1))?;
        out.insert(name, sum);
    }
    Ok(out)
}

// ---------------------------------------------------------------- processes

/// The two binaries of this package.
#[derive(Clone, Debug)]
pub struct Binaries {
    /// `hotbak`.
    pub hotbak: PathBuf,
    /// `xbextract`.
    pub xbextract: PathBuf,
}

impl Binaries {
    /// The release binaries next to a running example (`target/release/examples/x`
    /// → `target/release/`).
    ///
    /// # Errors
    /// A binary is missing: the message says to run `cargo build --release`.
    pub fn next_to_current_exe() -> Result<Binaries> {
        let exe = std::env::current_exe().context("locating the running program")?;
        let dir = exe
            .parent()
            .and_then(Path::parent)
            .ok_or_else(|| anyhow!("{}: no parent directory", exe.display()))?;
        let b = Binaries {
            hotbak: dir.join("hotbak"),
            xbextract: dir.join("xbextract"),
        };
        for p in [&b.hotbak, &b.xbextract] {
            if !p.is_file() {
                bail!(
                    "{} not found: run `cargo build --release` first (the demo uses the release binaries)",
                    p.display()
                );
            }
        }
        Ok(b)
    }
}

/// How `hotbak backup --stream | xbextract -x -C DIR` ended.
#[derive(Debug)]
pub struct StreamOutcome {
    /// hotbak's exit status.
    pub hotbak: ExitStatus,
    /// xbextract's exit status.
    pub xbextract: ExitStatus,
    /// hotbak's stderr.
    pub hotbak_stderr: String,
    /// xbextract's stderr.
    pub xbextract_stderr: String,
    /// Wall time.
    pub elapsed: Duration,
}

impl StreamOutcome {
    /// Both exited 0.
    #[must_use]
    pub fn success(&self) -> bool {
        self.hotbak.success() && self.xbextract.success()
    }
}

impl fmt::Display for StreamOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "hotbak {} / xbextract {} after {:.1}s\n--- hotbak stderr:\n{}\n--- xbextract stderr:\n{}",
            self.hotbak,
            self.xbextract,
            self.elapsed.as_secs_f64(),
            self.hotbak_stderr,
            self.xbextract_stderr
        )
    }
}

/// The backup command line (one place): `hotbak backup --stream` to the
/// server at `socket` as root, with `extra` options.
#[must_use]
pub fn backup_command(hotbak: &Path, socket: &Path, extra: &[String]) -> Command {
    let mut c = Command::new(hotbak);
    c.arg("backup")
        .arg("--no-defaults")
        .arg("--socket")
        .arg(socket)
        .arg("-u")
        .arg("root")
        .arg("--stream")
        .arg("--progress")
        .arg("lines")
        .args(extra);
    c
}

/// Run `hotbak backup --stream … | xbextract -x -C dest` (blocking): two
/// processes connected by a pipe. Their stderr goes to `logs/hotbak.err`
/// and `logs/xbextract.err` and is returned.
///
/// # Errors
/// A process cannot be started or waited for.
pub fn run_stream_backup(
    bins: &Binaries,
    socket: &Path,
    dest: &Path,
    logs: &Path,
    extra: &[String],
) -> Result<StreamOutcome> {
    run_stream_backup_stalled(bins, socket, dest, logs, extra, None)
}

/// A destination that stops reading for a while: after `after` bytes the
/// pipe takes nothing for `pause` (an `ssh` or network stall, a busy
/// disk), then full speed again.
#[derive(Clone, Copy, Debug)]
pub struct Stall {
    /// Bytes passed before the stall.
    pub after: u64,
    /// How long nothing is read.
    pub pause: Duration,
}

/// [`run_stream_backup`] with a [`Stall`] in the pipe between the two, by
/// a thread copying between two pipes.
///
/// # Errors
/// A process cannot be started or waited for.
pub fn run_stream_backup_stalled(
    bins: &Binaries,
    socket: &Path,
    dest: &Path,
    logs: &Path,
    extra: &[String],
    stall: Option<Stall>,
) -> Result<StreamOutcome> {
    std::fs::create_dir_all(dest).with_context(|| dest.display().to_string())?;
    std::fs::create_dir_all(logs).with_context(|| logs.display().to_string())?;
    let hb_log = logs.join("hotbak.err");
    let xb_log = logs.join("xbextract.err");
    let started = Instant::now();
    let mut hb = backup_command(&bins.hotbak, socket, extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(File::create(&hb_log).with_context(|| hb_log.display().to_string())?)
        .spawn()
        .with_context(|| format!("starting {}", bins.hotbak.display()))?;
    let pipe = hb
        .stdout
        .take()
        .ok_or_else(|| anyhow!("hotbak: no stdout pipe"))?;
    let (stdin, mut stalled) = match stall {
        None => (Stdio::from(pipe), None),
        Some(stall) => (Stdio::piped(), Some((pipe, stall))),
    };
    let xb = Command::new(&bins.xbextract)
        .arg("-x")
        .arg("-C")
        .arg(dest)
        .stdin(stdin)
        .stdout(Stdio::null())
        .stderr(File::create(&xb_log).with_context(|| xb_log.display().to_string())?)
        .spawn();
    let mut xb = match xb {
        Ok(x) => x,
        Err(e) => {
            let _ = hb.kill();
            let _ = hb.wait();
            return Err(
                anyhow::Error::new(e).context(format!("starting {}", bins.xbextract.display()))
            );
        }
    };
    let copier = match (stalled.take(), xb.stdin.take()) {
        (Some((mut from, stall)), Some(mut to)) => Some(std::thread::spawn(move || {
            use std::io::{Read, Write};
            let mut sent = 0u64;
            let mut paused = false;
            let mut buf = vec![0u8; 64 << 10];
            loop {
                let n = match from.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
                sent += n as u64;
                if !paused && sent >= stall.after {
                    paused = true;
                    std::thread::sleep(stall.pause);
                }
            }
        })),
        _ => None,
    };
    let hotbak = hb.wait().context("waiting for hotbak")?;
    if let Some(c) = copier {
        let _ = c.join();
    }
    let xbextract = xb.wait().context("waiting for xbextract")?;
    let elapsed = started.elapsed();
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
    Ok(StreamOutcome {
        hotbak,
        xbextract,
        hotbak_stderr: read(&hb_log),
        xbextract_stderr: read(&xb_log),
        elapsed,
    })
}

/// Run a program to completion (blocking), returning status and stderr+stdout.
///
/// # Errors
/// It cannot be started.
pub fn run_tool(program: &Path, args: &[&std::ffi::OsStr]) -> Result<(ExitStatus, String)> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("starting {}", program.display()))?;
    let mut text = String::from_utf8_lossy(&out.stderr).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stdout));
    Ok((out.status, text))
}

/// Total size of the files under `dir`.
#[must_use]
pub fn dir_size(dir: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.filter_map(std::result::Result::ok)
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map(|m| m.len()).unwrap_or(0),
            _ => 0,
        })
        .sum()
}

// ------------------------------------------------------------ provisioning

/// The tools the tests and the demo run, each with the Debian 12 package
/// that provides it (`None`: SeaweedFS's `weed`, installed by
/// `.ci/install-seaweedfs.sh`, pinned by hash).
pub const TOOLS: &[(&str, Option<&str>)] = &[
    ("mariadbd", Some("mariadb-server")),
    ("mariadb-install-db", Some("mariadb-server")),
    ("mariadb", Some("mariadb-client")),
    ("mariadb-binlog", Some("mariadb-client")),
    ("mariabackup", Some("mariadb-backup")),
    ("mbstream", Some("mariadb-backup")),
    ("zstd", Some("zstd")),
    ("lz4", Some("lz4")),
    ("openssl", Some("openssl")),
    ("strace", Some("strace")),
    ("python3", Some("python3")),
    // A library, not a program: an absolute path, which `find_tool` takes
    // as is (the `--galera-info` test's single-node cluster).
    ("/usr/lib/galera/libgalera_smm.so", Some("galera-4")),
    ("weed", None),
];

/// Install what [`TOOLS`] lists and this machine lacks, once per process:
/// the README's two commands set a fresh Debian 12 up themselves.
/// `apt-get update` then `apt-get install` (as root, or through a sudo that
/// needs no password), then `.ci/install-seaweedfs.sh` for `weed`.
/// `HOTBAK_NO_INSTALL=1` turns it off; where nothing can be installed the
/// missing tools are named and the tests that need them skip (or fail
/// under `HOTBAK_REQUIRE_TOOLS=1`). Returns what it could not provide.
pub fn provision() -> Vec<String> {
    static DONE: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    DONE.get_or_init(|| provision_only(&TOOLS.iter().map(|(t, _)| *t).collect::<Vec<_>>()))
        .clone()
}

/// [`provision`] for these of [`TOOLS`] only (the demo needs no `weed`).
pub fn provision_only(wanted: &[&str]) -> Vec<String> {
    {
        let tools: Vec<(&str, Option<&str>)> = TOOLS
            .iter()
            .filter(|(t, _)| wanted.contains(t))
            .copied()
            .collect();
        let tools = tools.as_slice();
        let missing = |tools: &[(&str, Option<&str>)]| -> Vec<(String, Option<String>)> {
            tools
                .iter()
                .filter(|(t, _)| crate::sandbox::find_tool(t).is_none())
                .map(|(t, p)| ((*t).to_owned(), p.map(str::to_owned)))
                .collect()
        };
        let before = missing(tools);
        if before.is_empty() {
            return Vec::new();
        }
        let names = |m: &[(String, Option<String>)]| {
            m.iter()
                .map(|(t, _)| t.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        if std::env::var("HOTBAK_NO_INSTALL").as_deref() == Ok("1") {
            eprintln!(
                "hotbak provisioning: missing {} (HOTBAK_NO_INSTALL=1: not installing)",
                names(&before)
            );
            return before.into_iter().map(|(t, _)| t).collect();
        }
        let root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.trim_ascii() == b"0");
        let sudo = !root
            && Command::new("sudo")
                .args(["-n", "true"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
        let apt = crate::sandbox::find_tool("apt-get");
        let run = |argv: &[&str]| -> bool {
            let (prog, args): (&str, &[&str]) = if root {
                (argv[0], &argv[1..])
            } else {
                ("sudo", argv)
            };
            eprintln!("hotbak provisioning: {}", argv.join(" "));
            Command::new(prog)
                .args(args)
                .env("DEBIAN_FRONTEND", "noninteractive")
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        let mut pkgs: Vec<&str> = before.iter().filter_map(|(_, p)| p.as_deref()).collect();
        if before.iter().any(|(t, _)| t == "weed") {
            // install-seaweedfs.sh makes a virtualenv.
            pkgs.extend(["python3", "python3-venv"]);
        }
        pkgs.sort_unstable();
        pkgs.dedup();
        if !pkgs.is_empty() {
            if apt.is_some() && (root || sudo) {
                eprintln!(
                    "hotbak provisioning: {} missing; installing {}",
                    names(&before),
                    pkgs.join(" ")
                );
                let mut install =
                    vec!["apt-get", "install", "-y", "-qq", "--no-install-recommends"];
                install.extend(&pkgs);
                if !(run(&["apt-get", "update", "-qq"]) && run(&install)) {
                    eprintln!("hotbak provisioning: apt-get failed");
                }
            } else {
                eprintln!(
                    "hotbak provisioning: missing {}; cannot install them here (needs apt-get as root or sudo without a password): \
                     apt-get install {}",
                    names(&before),
                    pkgs.join(" ")
                );
            }
        }
        if before.iter().any(|(t, _)| t == "weed") && crate::sandbox::find_tool("python3").is_some()
        {
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join(".ci/install-seaweedfs.sh");
            eprintln!("hotbak provisioning: {}", script.display());
            let ok = Command::new("bash")
                .arg(&script)
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                eprintln!("hotbak provisioning: {} failed", script.display());
            }
        }
        let after: Vec<String> = missing(tools).into_iter().map(|(t, _)| t).collect();
        if !after.is_empty() {
            eprintln!("hotbak provisioning: still missing: {}", after.join(", "));
        }
        after
    }
}
