//! XtraBackup's long-query policy around lock statements (pure parts).
//!
//! Semantics, as in `backup_mysql.cc` of mariabackup 10.11 / XtraBackup:
//!
//! - **`--ftwrl-wait-timeout=N`** (0 = off): before the lock statement, poll
//!   `SHOW FULL PROCESSLIST` once a second for up to `N` seconds until no
//!   *long* query is running; if one still runs at the end, do not issue the
//!   lock and fail ("Unable to obtain lock"), naming the queries.
//! - **`--ftwrl-wait-threshold=S`** (default 60): a query is long when its
//!   `Time` is `>= S` seconds.
//! - **`--ftwrl-wait-query-type`** (`all` default, `update`, `select`): which
//!   queries are waited for. The test is
//!   `(type == all && is_query(info)) || is_update_query(info)`, so `update`
//!   and `select` both wait for updates only (XtraBackup's behaviour, kept).
//! - **`--kill-long-queries-timeout=K`** (0 = off): when the lock statement
//!   has been pending `K` seconds, a second connection, once a second,
//!   `KILL`s (the connection of) every query whose `Time` is at least the
//!   time since the lock statement was issued (that is, queries that were
//!   already running when it was issued) and that matches the kill type.
//! - **`--kill-long-query-type`** (`select` default, `all`, `update`): the
//!   test is `(type == all && is_query(info)) || is_select_query(info)`, so
//!   `update` kills SELECTs only (XtraBackup's behaviour, kept).
//!
//! `is_query` is a statement starting (after whitespace, `(` and `/* */`
//! comments) with insert, update, delete, replace, alter, load, select, do,
//! handler, call, execute or begin; `is_update_query` with insert, update,
//! delete, replace, alter or load; `is_select_query` with select.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use super::Error;

/// `all`, `update` or `select` (see the module docs for what each matches).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueryType {
    /// Every data statement.
    All,
    /// Data-changing statements.
    Update,
    /// SELECTs.
    Select,
}

impl FromStr for QueryType {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s.to_ascii_lowercase().as_str() {
            "all" => Ok(QueryType::All),
            "update" => Ok(QueryType::Update),
            "select" => Ok(QueryType::Select),
            _ => Err(Error::BadOption {
                name: "query type".into(),
                value: s.to_owned(),
                reason: "expected all, update or select".into(),
            }),
        }
    }
}

impl fmt::Display for QueryType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            QueryType::All => "all",
            QueryType::Update => "update",
            QueryType::Select => "select",
        })
    }
}

/// What to do about long queries around lock statements.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockPolicy {
    /// `--ftwrl-wait-timeout`; zero = do not wait.
    pub ftwrl_wait_timeout: Duration,
    /// `--ftwrl-wait-threshold`, in whole seconds.
    pub ftwrl_wait_threshold: u64,
    /// `--ftwrl-wait-query-type`.
    pub ftwrl_wait_query_type: QueryType,
    /// `--kill-long-queries-timeout`; zero = never kill.
    pub kill_long_queries_timeout: Duration,
    /// `--kill-long-query-type`.
    pub kill_long_query_type: QueryType,
    /// How often the wait and the killer poll the process list (1 s in XtraBackup).
    pub poll_interval: Duration,
}

impl Default for LockPolicy {
    fn default() -> Self {
        LockPolicy {
            ftwrl_wait_timeout: Duration::ZERO,
            ftwrl_wait_threshold: 60,
            ftwrl_wait_query_type: QueryType::All,
            kill_long_queries_timeout: Duration::ZERO,
            kill_long_query_type: QueryType::Select,
            poll_interval: Duration::from_secs(1),
        }
    }
}

/// One row of `SHOW FULL PROCESSLIST`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessInfo {
    /// Connection id.
    pub id: u64,
    /// User.
    pub user: String,
    /// `Command`.
    pub command: String,
    /// `Time` in seconds.
    pub time: u64,
    /// `State`.
    pub state: Option<String>,
    /// `Info` (the statement), if any.
    pub info: Option<String>,
}

impl fmt::Display for ProcessInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let info = self.info.as_deref().unwrap_or("");
        let short: String = info.chars().take(120).collect();
        write!(
            f,
            "id {} (user {}, {} s): {}",
            self.id, self.user, self.time, short
        )?;
        if short.len() < info.len() {
            f.write_str("…")?;
        }
        Ok(())
    }
}

fn eat_sql_whitespace(q: &str) -> &str {
    let mut s = q;
    loop {
        if let Some(rest) = s.strip_prefix("/*") {
            s = match rest.find("*/") {
                Some(i) => &rest[i + 2..],
                None => "",
            };
            continue;
        }
        match s.chars().next() {
            Some('\t' | '\n' | '\r' | ' ' | '(') => s = &s[1..],
            _ => return s,
        }
    }
}

fn starts_with_any(q: &str, list: &[&str]) -> bool {
    let q = eat_sql_whitespace(q);
    list.iter().any(|w| {
        q.len() >= w.len() && q.is_char_boundary(w.len()) && q[..w.len()].eq_ignore_ascii_case(w)
    })
}

/// Any data statement.
#[must_use]
pub fn is_query(q: &str) -> bool {
    starts_with_any(
        q,
        &[
            "insert", "update", "delete", "replace", "alter", "load", "select", "do", "handler",
            "call", "execute", "begin",
        ],
    )
}

/// A SELECT.
#[must_use]
pub fn is_select_query(q: &str) -> bool {
    starts_with_any(q, &["select"])
}

/// A data-changing statement.
#[must_use]
pub fn is_update_query(q: &str) -> bool {
    starts_with_any(
        q,
        &["insert", "update", "delete", "replace", "alter", "load"],
    )
}

/// Whether the lock must wait for this process (`--ftwrl-wait-*`).
#[must_use]
pub fn must_wait_for(p: &ProcessInfo, threshold: u64, ty: QueryType) -> bool {
    match &p.info {
        Some(info) => {
            p.time >= threshold
                && ((ty == QueryType::All && is_query(info)) || is_update_query(info))
        }
        None => false,
    }
}

/// Whether the killer kills this process (`--kill-long-query*`), the lock
/// statement having been pending `pending_secs`.
#[must_use]
pub fn must_kill(p: &ProcessInfo, pending_secs: u64, ty: QueryType) -> bool {
    match &p.info {
        Some(info) => {
            p.time >= pending_secs
                && ((ty == QueryType::All && is_query(info)) || is_select_query(info))
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(time: u64, info: Option<&str>) -> ProcessInfo {
        ProcessInfo {
            id: 7,
            user: "u".into(),
            command: "Query".into(),
            time,
            state: None,
            info: info.map(str::to_owned),
        }
    }

    #[test]
    fn classification() {
        assert!(is_query("  /* hint */ (SELECT 1)"));
        assert!(is_select_query("\n\tselect sleep(3)"));
        assert!(!is_select_query("show processlist"));
        assert!(is_update_query("INSERT INTO t VALUES (1)"));
        assert!(is_update_query("Load data infile 'x'"));
        assert!(!is_update_query("select 1"));
        assert!(is_query("BEGIN"));
        assert!(!is_query("FLUSH TABLES WITH READ LOCK"));
        assert!(!is_query("BACKUP STAGE BLOCK_DDL"));
        assert!(!is_query("/* unterminated"));
        assert!(!is_query("sé"));
    }

    #[test]
    fn wait_rules() {
        let sel = p(70, Some("SELECT SLEEP(100)"));
        let upd = p(70, Some("UPDATE t SET a=1"));
        let young = p(5, Some("UPDATE t SET a=1"));
        let idle = p(900, None);
        assert!(must_wait_for(&sel, 60, QueryType::All));
        assert!(!must_wait_for(&sel, 60, QueryType::Update));
        assert!(
            !must_wait_for(&sel, 60, QueryType::Select),
            "XtraBackup: select waits for updates only"
        );
        assert!(must_wait_for(&upd, 60, QueryType::Select));
        assert!(!must_wait_for(&young, 60, QueryType::All));
        assert!(!must_wait_for(&idle, 0, QueryType::All));
    }

    #[test]
    fn kill_rules() {
        let sel = p(10, Some("SELECT SLEEP(100)"));
        let upd = p(10, Some("UPDATE t SET a=1"));
        assert!(must_kill(&sel, 10, QueryType::Select));
        assert!(
            !must_kill(&sel, 11, QueryType::Select),
            "started after the lock statement"
        );
        assert!(!must_kill(&upd, 5, QueryType::Select));
        assert!(must_kill(&upd, 5, QueryType::All));
        assert!(
            !must_kill(&upd, 5, QueryType::Update),
            "XtraBackup: update kills selects only"
        );
        assert!(must_kill(&sel, 5, QueryType::Update));
    }

    #[test]
    fn parse_types() {
        assert_eq!("ALL".parse::<QueryType>().expect("all"), QueryType::All);
        assert_eq!(
            "select".parse::<QueryType>().expect("select"),
            QueryType::Select
        );
        assert!("both".parse::<QueryType>().is_err());
    }
}
