//! mariabackup's invocation style and the option files' tool groups,
//! translated into `hotbak`'s own command line (pure; the files are read by
//! [`super::invocation`]).
//!
//! - `hotbak --backup --stream=xbstream --target-dir=W --user=U …` (options
//!   in any order, no subcommand) becomes `hotbak backup --stream=xbstream
//!   --user=U …`: each option is looked up in [`ROWS`], mariabackup 10.11's
//!   options, one row each: passed on (under hotbak's name), accepted and
//!   ignored as mariabackup itself ignores it, a mode (`--backup`,
//!   `--prepare`, `--copy-back`, `--move-back`), or refused with "not
//!   supported by hotbak: …". An option with no row that the chosen
//!   command has (`--max-rate`, `--lock`, …) is passed on as is. As in
//!   mariabackup, an option the mode does not use is accepted and ignored
//!   (`--parallel` in `--prepare`).
//! - Options from the `[mariabackup]`, `[mariadb-backup]` and `[xtrabackup]`
//!   groups are read the same way (with mariabackup's meaning), and those of
//!   `[hotbak]` with hotbak's own meaning; they come before the command
//!   line, which wins.
//!
//! A new option of mariabackup that hotbak implements is one row here.

use clap::CommandFactory;

use super::args::Cli;
use crate::error::UsageError;
use crate::mysql::options::{normalize_key, OptionEntry};

/// Whether an option takes a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Takes {
    /// A flag.
    Nothing,
    /// `--name=value` or `--name value`.
    Value,
    /// `--name` or `--name=value` (never the next argument).
    Optional,
}

/// What hotbak does with a mariabackup option.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// A mode: the `hotbak` subcommand and the options it implies.
    Mode(&'static str, &'static [&'static str]),
    /// Passed on under this hotbak option name, to every command that has
    /// it (another mode's option is ignored, as mariabackup ignores it).
    Pass(&'static str),
    /// Accepted and ignored; the reason is shown in the README's table.
    NoOp(&'static str),
    /// Accepted and ignored with these values (lower-case), refused with others.
    NoOpWith(&'static [&'static str], &'static str),
    /// Refused: "not supported by hotbak: --NAME (hint)".
    Unsupported(&'static str),
    /// Chooses the option files (read before everything else).
    Defaults,
    /// `--help` or `--version`.
    Info(&'static str),
}

/// One mariabackup 10.11 option.
#[derive(Clone, Copy, Debug)]
pub struct Row {
    /// The long name, without dashes.
    pub name: &'static str,
    /// The one-letter form, if any.
    pub short: Option<char>,
    /// Whether it takes a value.
    pub takes: Takes,
    /// What hotbak does with it.
    pub action: Action,
}

const fn row(name: &'static str, takes: Takes, action: Action) -> Row {
    Row {
        name,
        short: None,
        takes,
        action,
    }
}

const fn short(name: &'static str, c: char, takes: Takes, action: Action) -> Row {
    Row {
        name,
        short: Some(c),
        takes,
        action,
    }
}

use Action::{Defaults, Info, Mode, NoOp, NoOpWith, Pass, Unsupported};
use Takes::{Nothing, Optional, Value};

const GEOMETRY: &str = "a server setting: hotbak reads it from the server when backing up and from backup-my.cnf when preparing";
const DISABLED: &str = "disabled in mariabackup 10.11 (no effect with BACKUP STAGE locks)";

/// mariabackup 10.11's options (`mariabackup --help`), one row each.
pub const ROWS: &[Row] = &[
    // Modes.
    row("backup", Nothing, Mode("backup", &[])),
    row("prepare", Nothing, Mode("prepare", &[])),
    row("copy-back", Nothing, Mode("restore", &["--copy-back"])),
    row("move-back", Nothing, Mode("restore", &["--move-back"])),
    row("export", Nothing, Pass("export")),
    row("decompress", Nothing, Unsupported("xbextract decompresses while extracting; for files at rest: xbextract --target-dir DIR --decompress")),
    row("remove-original", Nothing, Unsupported("use xbextract --target-dir DIR --decompress --remove-original")),
    row("apply-log", Nothing, Unsupported("use --prepare")),
    row("print-param", Nothing, Unsupported("the backup's backup-my.cnf holds the InnoDB settings")),
    // Information.
    row("help", Nothing, Info("--help")),
    short("version", 'v', Nothing, Info("--version")),
    short("verbose", 'V', Nothing, NoOp("hotbak shows its progress by itself (--progress: auto, lines or none)")),
    // Option files.
    row("defaults-file", Value, Defaults),
    row("defaults-extra-file", Value, Defaults),
    row("defaults-group-suffix", Value, Defaults),
    row("no-defaults", Nothing, Defaults),
    row("print-defaults", Nothing, Defaults),
    row("defaults-group", Value, Unsupported("use --defaults-group-suffix")),
    row("login-path", Value, Unsupported("MySQL's .mylogin.cnf is not read; use --defaults-extra-file")),
    // Connection.
    short("user", 'u', Value, Pass("user")),
    short("host", 'H', Value, Pass("host")),
    short("port", 'P', Value, Pass("port")),
    short("password", 'p', Value, Pass("password")),
    short("socket", 'S', Value, Pass("socket")),
    row("protocol", Value, Unsupported("--socket selects the socket, --host/--port TCP")),
    row("secure-auth", Nothing, NoOp("hotbak never uses the pre-4.1 protocol")),
    row("ssl", Nothing, Pass("ssl")),
    row("ssl-ca", Value, Pass("ssl-ca")),
    row("ssl-capath", Value, Unsupported("--ssl-ca, --ssl-cert, --ssl-key and --ssl-verify-server-cert are supported")),
    row("ssl-cert", Value, Pass("ssl-cert")),
    row("ssl-cipher", Value, Unsupported("--ssl-ca, --ssl-cert, --ssl-key and --ssl-verify-server-cert are supported")),
    row("ssl-key", Value, Pass("ssl-key")),
    row("ssl-crl", Value, Unsupported("--ssl-ca, --ssl-cert, --ssl-key and --ssl-verify-server-cert are supported")),
    row("ssl-crlpath", Value, Unsupported("--ssl-ca, --ssl-cert, --ssl-key and --ssl-verify-server-cert are supported")),
    row("tls-version", Value, Unsupported("TLS 1.2 and 1.3 are negotiated")),
    row("ssl-verify-server-cert", Nothing, Pass("ssl-verify-server-cert")),
    // Where.
    row("target-dir", Value, Pass("target-dir")),
    short("datadir", 'h', Value, Pass("datadir")),
    short("tmpdir", 't', Value, Pass("tmpdir")),
    row("extra-lsndir", Value, Pass("extra-lsndir")),
    row("stream", Value, Pass("stream")),
    row("force-non-empty-directories", Nothing, Unsupported("restore only into empty directories")),
    // Incremental.
    row("incremental-lsn", Value, Pass("incremental-lsn")),
    row("incremental-basedir", Value, Pass("incremental-basedir")),
    row("incremental-dir", Value, Pass("incremental-dir")),
    row("incremental-force-scan", Nothing, NoOp("hotbak always reads every page")),
    row("incremental-history-name", Value, Pass("incremental-history-name")),
    row("incremental-history-uuid", Value, Pass("incremental-history-uuid")),
    row("history", Optional, Pass("history")),
    // Partial backups.
    row("tables", Value, Pass("tables")),
    row("tables-file", Value, Pass("tables-file")),
    row("tables-exclude", Value, Pass("tables-exclude")),
    row("databases", Value, Pass("databases")),
    row("databases-file", Value, Pass("databases-file")),
    row("databases-exclude", Value, Pass("databases-exclude")),
    // Compression.
    row("compress", Optional, Pass("compress")),
    row("compress-threads", Value, Pass("compress-threads")),
    row("compress-chunk-size", Value, Pass("compress-chunk-size")),
    // Locking.
    row("no-lock", Nothing, Pass("no-lock")),
    row("ftwrl-wait-timeout", Value, Pass("ftwrl-wait-timeout")),
    row("startup-wait-timeout", Value, Pass("ftwrl-wait-timeout")),
    row("ftwrl-wait-threshold", Value, NoOp(DISABLED)),
    row("ftwrl-wait-query-type", Value, NoOp(DISABLED)),
    row("kill-long-queries-timeout", Value, NoOp(DISABLED)),
    row("kill-long-query-type", Value, Pass("kill-long-query-type")),
    row("lock-ddl-per-table", Nothing, NoOp("DDL during the copy is tracked through the redo log")),
    row("no-backup-locks", Nothing, NoOp("obsolete in mariabackup 10.11")),
    row("rsync", Nothing, NoOp("obsolete in mariabackup 10.11")),
    row("binlog-info", Optional, NoOpWith(&["on", "auto"], "the binlog position is always recorded under the lock")),
    // Replication and clusters.
    row("slave-info", Nothing, Pass("slave-info")),
    row("safe-slave-backup", Nothing, Pass("safe-slave-backup")),
    row("safe-slave-backup-timeout", Value, Pass("safe-slave-backup-timeout")),
    row("galera-info", Nothing, Pass("galera-info")),
    // Copying.
    row("parallel", Value, Pass("parallel")),
    row("use-memory", Value, Pass("use-memory")),
    row("log-copy-interval", Value, Pass("log-copy-interval")),
    row("throttle", Value, Unsupported("use --max-rate MB/s")),
    row("close-files", Nothing, NoOp("hotbak opens each file once")),
    row("extended-validation", Nothing, NoOp("hotbak checks every page's checksum")),
    row("encrypted-backup", Nothing, NoOp("encrypted tablespaces are copied as they are")),
    row("log-innodb-page-corruption", Nothing, Unsupported("a corrupt page fails the backup")),
    row("check-privileges", Nothing, NoOp("a missing privilege fails the backup naming it")),
    row("no-version-check", Nothing, NoOp("hotbak never calls home")),
    row("core-file", Nothing, NoOp("no effect")),
    row("open-files-limit", Value, NoOp("hotbak opens few files at a time")),
    row("log", Optional, NoOp("ignored by mariabackup too")),
    row("log-bin", Optional, NoOp(GEOMETRY)),
    row("plugin-dir", Value, NoOp("no server plugins are loaded")),
    row("rocksdb-datadir", Value, Unsupported("MyRocks is not backed up")),
    row("rocksdb-backup", Nothing, Unsupported("MyRocks is not backed up")),
    row("mysqld-args", Nothing, Unsupported("prepare runs mariadbd with the backup's own settings")),
    row("innodb-force-recovery", Optional, Unsupported("a prepare that needs it is a damaged backup")),
    row("innodb-log-checkpoint-now", Nothing, NoOp("not needed: the redo log is followed from the checkpoint")),
    // InnoDB settings: hotbak takes them from the server or backup-my.cnf;
    // the three directories matter for copy-back.
    row("innodb-data-home-dir", Value, Pass("innodb-data-home-dir")),
    row("innodb-undo-directory", Value, Pass("innodb-undo-directory")),
    row("innodb-log-group-home-dir", Value, Pass("innodb-log-group-home-dir")),
    row("aria-log-dir-path", Value, NoOp(GEOMETRY)),
    row("innodb", Optional, NoOp(GEOMETRY)),
    row("innodb-adaptive-hash-index", Nothing, NoOp(GEOMETRY)),
    row("innodb-autoextend-increment", Value, NoOp(GEOMETRY)),
    row("innodb-data-file-path", Value, NoOp(GEOMETRY)),
    row("innodb-doublewrite", Nothing, NoOp(GEOMETRY)),
    row("innodb-io-capacity", Optional, NoOp(GEOMETRY)),
    row("innodb-file-io-threads", Value, NoOp(GEOMETRY)),
    row("innodb-read-io-threads", Value, NoOp(GEOMETRY)),
    row("innodb-write-io-threads", Value, NoOp(GEOMETRY)),
    row("innodb-file-per-table", Nothing, NoOp(GEOMETRY)),
    row("innodb-flush-method", Value, NoOp(GEOMETRY)),
    row("innodb-log-buffer-size", Value, NoOp(GEOMETRY)),
    row("innodb-log-file-mmap", Nothing, NoOp(GEOMETRY)),
    row("innodb-log-file-buffering", Nothing, NoOp(GEOMETRY)),
    row("innodb-log-file-size", Value, NoOp(GEOMETRY)),
    row("innodb-log-write-ahead-size", Value, NoOp(GEOMETRY)),
    row("innodb-max-dirty-pages-pct", Value, NoOp(GEOMETRY)),
    row("innodb-use-native-aio", Nothing, NoOp(GEOMETRY)),
    row("innodb-linux-aio", Value, NoOp(GEOMETRY)),
    row("innodb-page-size", Value, NoOp(GEOMETRY)),
    row("innodb-buffer-pool-filename", Value, NoOp(GEOMETRY)),
    row("innodb-checksum-algorithm", Value, NoOp(GEOMETRY)),
    row("innodb-undo-tablespaces", Value, NoOp(GEOMETRY)),
    row("innodb-compression-level", Value, NoOp(GEOMETRY)),
];

/// The row of a long name (normalised: lower case, `-`).
#[must_use]
pub fn find(name: &str) -> Option<&'static Row> {
    ROWS.iter().find(|r| r.name == name)
}

fn find_short(c: char) -> Option<&'static Row> {
    ROWS.iter().find(|r| r.short == Some(c))
}

/// The groups read with mariabackup's meaning.
pub const MARIABACKUP_GROUPS: &[&str] = &["xtrabackup", "mariabackup", "mariadb-backup"];
/// The group read with hotbak's meaning (after the others).
pub const HOTBAK_GROUP: &str = "hotbak";

/// The option files chosen on the command line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DefaultsChoice {
    /// `--no-defaults`.
    pub no_defaults: bool,
    /// `--defaults-file`.
    pub file: Option<String>,
    /// `--defaults-extra-file`.
    pub extra_file: Option<String>,
    /// `--defaults-group-suffix`.
    pub group_suffix: Option<String>,
    /// `--print-defaults`.
    pub print: bool,
}

impl DefaultsChoice {
    /// These choices as options, for the commands that take them.
    fn as_args(&self) -> Vec<(&'static str, Option<String>)> {
        let mut out = Vec::new();
        if self.no_defaults {
            out.push(("no-defaults", None));
        }
        for (name, v) in [
            ("defaults-file", &self.file),
            ("defaults-extra-file", &self.extra_file),
            ("defaults-group-suffix", &self.group_suffix),
        ] {
            if let Some(v) = v {
                out.push((name, Some(v.clone())));
            }
        }
        out
    }
}

/// How `hotbak` was invoked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Style {
    /// `hotbak SUBCOMMAND …` (or `--help`, `--version`, nothing).
    Native,
    /// `hotbak --backup …`: mariabackup's style.
    Mariabackup,
}

/// The style of `args` (without the program name): mariabackup's when the
/// first argument is an option other than `--help`/`--version`.
#[must_use]
pub fn style(args: &[String]) -> Style {
    match args.first().map(String::as_str) {
        None | Some("--help" | "-V" | "--version") => Style::Native,
        Some("-h") if args.len() == 1 => Style::Native,
        Some(a) if a.starts_with('-') => Style::Mariabackup,
        Some(_) => Style::Native,
    }
}

/// One option, from the command line or a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Setting {
    /// Normalised long name (a `skip-`/`disable-`/`enable-` prefix removed
    /// into `value`).
    pub name: String,
    /// The value (`0`/`1` for prefixed flags).
    pub value: Option<String>,
    /// `None` for the command line; else `FILE line N [group]`.
    pub origin: Option<String>,
    /// Written `loose-NAME` in a file: ignored when unknown.
    pub loose: bool,
}

impl Setting {
    fn label(&self) -> String {
        match &self.origin {
            None => format!("--{}", self.name),
            Some(o) => format!("{} (from {o})", self.name),
        }
    }
}

fn usage(msg: String) -> UsageError {
    UsageError(msg)
}

/// Split mariabackup-style arguments into settings (pure).
///
/// # Errors
/// A positional argument, a value missing, an unknown short option.
pub fn split_args(args: &[String]) -> Result<Vec<Setting>, UsageError> {
    let mut out = Vec::new();
    let mut i = 0;
    let setting = |name: String, value: Option<String>| Setting {
        name,
        value,
        origin: None,
        loose: false,
    };
    while i < args.len() {
        let a = &args[i];
        i += 1;
        if let Some(long) = a.strip_prefix("--") {
            let (raw, value) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v.to_owned())),
                None => (long, None),
            };
            let name = normalize_key(raw);
            let takes = takes_of(&name);
            let value = match (value, takes) {
                (None, Some(Takes::Value)) => {
                    let v = args
                        .get(i)
                        .ok_or_else(|| usage(format!("--{name} needs a value")))?;
                    i += 1;
                    Some(v.clone())
                }
                (v, _) => v,
            };
            out.push(setting(name, value));
        } else if let Some(rest) = a.strip_prefix('-').filter(|r| !r.is_empty()) {
            let mut chars = rest.chars();
            let c = chars.next().unwrap_or('-');
            let row = find_short(c).ok_or_else(|| {
                usage(format!(
                    "unknown option -{c} (mariabackup's one-letter options: -u -p -H -P -S -h -t -V -v)"
                ))
            })?;
            let attached: String = chars.collect();
            let value = match row.takes {
                Takes::Nothing if attached.is_empty() => None,
                Takes::Nothing => {
                    return Err(usage(format!("-{c} takes no value (got -{c}{attached})")))
                }
                _ if !attached.is_empty() => Some(attached),
                _ => {
                    let v = args
                        .get(i)
                        .ok_or_else(|| usage(format!("-{c} needs a value")))?;
                    i += 1;
                    Some(v.clone())
                }
            };
            out.push(setting(row.name.to_owned(), value));
        } else {
            return Err(usage(format!(
                "unexpected argument '{a}': with mariabackup's options (--backup, --prepare, --copy-back, --move-back) every argument is an option; hotbak's own style is `hotbak backup …`"
            )));
        }
    }
    Ok(out)
}

/// How a long option takes its value: its row's, else hotbak's own
/// option's of that name in any command (`Value` when it takes one).
fn takes_of(name: &str) -> Option<Takes> {
    if let Some(r) = find(name) {
        return Some(r.takes);
    }
    if let Some(base) = flag_base(name) {
        if find(base).is_some_and(|r| r.takes == Takes::Nothing) {
            return Some(Takes::Nothing);
        }
    }
    let cmd = command();
    let found = cmd
        .get_subcommands()
        .flat_map(clap::Command::get_arguments)
        .find(|a| a.get_long() == Some(name))
        .map(|a| {
            let range = a.get_num_args().unwrap_or_default();
            if !a.get_action().takes_values() {
                Takes::Nothing
            } else if range.min_values() == 0 {
                Takes::Optional
            } else {
                Takes::Value
            }
        });
    found
}

/// `skip-X`, `disable-X`, `enable-X` → `X`.
fn flag_base(name: &str) -> Option<&str> {
    ["skip-", "disable-", "enable-"]
        .iter()
        .find_map(|p| name.strip_prefix(p))
}

/// The built clap command of `hotbak`.
fn command() -> clap::Command {
    let mut c = Cli::command();
    c.build();
    c
}

/// Is this value a boolean "off"?
fn is_off(v: &str) -> bool {
    matches!(
        v.to_ascii_lowercase().as_str(),
        "0" | "off" | "false" | "no"
    )
}

fn is_on(v: &str) -> bool {
    matches!(v.to_ascii_lowercase().as_str(), "1" | "on" | "true" | "yes")
}

/// The mode of mariabackup-style settings: the subcommand and its implied options.
///
/// # Errors
/// No mode, or two different ones.
pub fn mode(settings: &[Setting]) -> Result<(&'static str, &'static [&'static str]), UsageError> {
    let mut found: Option<(&'static str, &'static [&'static str], &str)> = None;
    for s in settings {
        if let Some(Row {
            action: Action::Mode(cmd, extra),
            ..
        }) = find(&s.name)
        {
            if let Some((_, _, prev)) = found {
                if prev != s.name {
                    return Err(usage(format!(
                        "--{prev} and --{} are two modes; give one",
                        s.name
                    )));
                }
            }
            found = Some((cmd, extra, &s.name));
        }
    }
    found.map(|(c, e, _)| (c, e)).ok_or_else(|| {
        usage(
            "no mode: give one of --backup, --prepare, --copy-back or --move-back (or use hotbak's subcommands: hotbak backup|prepare|restore|verify)".into(),
        )
    })
}

/// What one setting becomes for command `cmd`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// These arguments.
    Args(Vec<String>),
    /// Nothing (ignored, or another mode's option).
    Ignored,
    /// `--help` / `--version`.
    Info(&'static str),
}

/// Translate one setting for command `cmd` (pure). `mariabackup_meaning`:
/// the setting is looked up in [`ROWS`] first (command line in
/// mariabackup's style, the mariabackup groups); otherwise only hotbak's
/// own options apply (`[hotbak]`).
///
/// # Errors
/// "not supported by hotbak: …", an unknown option, a bad flag value.
pub fn translate(s: &Setting, cmd: &str, mariabackup_meaning: bool) -> Result<Outcome, UsageError> {
    let root = command();
    let sub = root
        .find_subcommand(cmd)
        .ok_or_else(|| usage(format!("no command {cmd}")))?;
    // A `skip-`/`disable-`/`enable-` prefixed flag.
    let (name, value) = match flag_base(&s.name) {
        Some(base) if find(base).is_some() || has_long(&root, base) => {
            let on = s.name.starts_with("enable-");
            (base, Some(if on { "1" } else { "0" }.to_owned()))
        }
        _ => (s.name.as_str(), s.value.clone()),
    };
    let target = if mariabackup_meaning {
        match find(name).map(|r| r.action) {
            Some(Action::Pass(to)) => to,
            Some(Action::Mode(..) | Action::Defaults) => return Ok(Outcome::Ignored),
            Some(Action::Info(what)) => return Ok(Outcome::Info(what)),
            Some(Action::NoOp(_)) => return Ok(Outcome::Ignored),
            Some(Action::NoOpWith(ok, _)) => {
                let v = value.as_deref().unwrap_or("on").to_ascii_lowercase();
                if ok.contains(&v.as_str()) {
                    return Ok(Outcome::Ignored);
                }
                return Err(usage(format!(
                    "not supported by hotbak: {}={v} (accepted: {})",
                    s.label(),
                    ok.join(", ")
                )));
            }
            Some(Action::Unsupported(hint)) => {
                return Err(usage(format!(
                    "not supported by hotbak: {} ({hint})",
                    s.label()
                )))
            }
            None => name,
        }
    } else {
        name
    };
    let Some(arg) = sub.get_arguments().find(|a| a.get_long() == Some(target)) else {
        if has_long(&root, target) || (mariabackup_meaning && find(name).is_some()) {
            return Ok(Outcome::Ignored);
        }
        if s.loose {
            return Ok(Outcome::Ignored);
        }
        return Err(usage(format!(
            "unknown option {}{}",
            s.label(),
            if mariabackup_meaning {
                " (neither a mariabackup 10.11 option nor one of hotbak's)"
            } else {
                " (not an option of hotbak)"
            }
        )));
    };
    let flag = !arg.get_action().takes_values();
    let out = if flag {
        match value.as_deref() {
            None => vec![format!("--{target}")],
            Some(v) if is_on(v) => vec![format!("--{target}")],
            Some(v) if is_off(v) => vec![],
            Some(v) => {
                return Err(usage(format!(
                    "{}: '{v}' is not a boolean (1/0, on/off, true/false)",
                    s.label()
                )))
            }
        }
    } else {
        match value {
            Some(v) => vec![format!("--{target}={v}")],
            None if arg.get_num_args().is_some_and(|r| r.min_values() == 0) => {
                vec![format!("--{target}")]
            }
            None => return Err(usage(format!("{} needs a value", s.label()))),
        }
    };
    Ok(Outcome::Args(out))
}

fn has_long(root: &clap::Command, name: &str) -> bool {
    root.get_subcommands()
        .flat_map(clap::Command::get_arguments)
        .any(|a| a.get_long() == Some(name))
}

/// Is `name` one of `hotbak`'s subcommands?
#[must_use]
pub fn is_command(name: &str) -> bool {
    name != "help" && Cli::command().find_subcommand(name).is_some()
}

/// Does command `cmd` take option `name`?
#[must_use]
pub fn accepts(cmd: &str, name: &str) -> bool {
    command()
        .find_subcommand(cmd)
        .is_some_and(|s| s.get_arguments().any(|a| a.get_long() == Some(name)))
}

/// The option-file entries as settings, the mariabackup groups' and then
/// `[hotbak]`'s (each flagged with its meaning).
#[must_use]
pub fn file_settings(entries: &[OptionEntry]) -> Vec<(Setting, bool)> {
    entries
        .iter()
        .map(|e| {
            let mb = !e.group.starts_with(HOTBAK_GROUP);
            (
                Setting {
                    name: e.key.clone(),
                    value: e.value.clone(),
                    origin: Some(e.origin()),
                    loose: e.loose,
                },
                mb,
            )
        })
        .collect()
}

/// The translated command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Translated {
    /// The arguments for clap, without the program name.
    pub args: Vec<String>,
    /// `--help` or `--version` was asked for.
    pub info: Option<&'static str>,
}

/// Build `hotbak`'s own arguments (pure): the subcommand, the options the
/// mode implies, the option-file choices the command takes, the files'
/// settings, then the command line's (later wins).
///
/// # Errors
/// As [`translate`].
pub fn build(
    cmd: &str,
    implied: &[&str],
    defaults: &DefaultsChoice,
    files: &[(Setting, bool)],
    cmdline: &[Setting],
    cmdline_mariabackup: bool,
) -> Result<Translated, UsageError> {
    let mut args = vec![cmd.to_owned()];
    args.extend(implied.iter().map(|s| (*s).to_owned()));
    for (name, v) in defaults.as_args() {
        if accepts(cmd, name) {
            args.push(match v {
                Some(v) => format!("--{name}={v}"),
                None => format!("--{name}"),
            });
        }
    }
    let mut info = None;
    for (s, mb) in files {
        match translate(s, cmd, *mb)? {
            Outcome::Args(a) => args.extend(a),
            Outcome::Ignored | Outcome::Info(_) => {}
        }
    }
    let mut rest = Vec::new();
    for s in cmdline {
        match translate(s, cmd, cmdline_mariabackup)? {
            Outcome::Args(a) => rest.extend(a),
            Outcome::Ignored => {}
            Outcome::Info(i) => info = Some(i),
        }
    }
    // mariabackup's --target-dir beside --stream is a work directory:
    // nothing of the backup is written there.
    if cmd == "backup" && cmdline_mariabackup {
        let streaming = args.iter().chain(&rest).any(|a| a.starts_with("--stream"));
        if streaming {
            args.retain(|a| !a.starts_with("--target-dir"));
            rest.retain(|a| !a.starts_with("--target-dir"));
        }
    }
    args.extend(rest);
    Ok(Translated { args, info })
}

/// Pull the option-file choices out of the command line (any position).
///
/// # Errors
/// A choice without its value.
pub fn defaults_choice(args: &[String]) -> Result<DefaultsChoice, UsageError> {
    let mut d = DefaultsChoice::default();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        i += 1;
        let Some(long) = a.strip_prefix("--") else {
            continue;
        };
        let (raw, inline) = match long.split_once('=') {
            Some((n, v)) => (n, Some(v.to_owned())),
            None => (long, None),
        };
        let name = normalize_key(raw);
        let slot = match name.as_str() {
            "no-defaults" => {
                d.no_defaults = true;
                continue;
            }
            "print-defaults" => {
                d.print = true;
                continue;
            }
            "defaults-file" => &mut d.file,
            "defaults-extra-file" => &mut d.extra_file,
            "defaults-group-suffix" => &mut d.group_suffix,
            _ => continue,
        };
        let v = match inline {
            Some(v) => v,
            None => {
                let v = args
                    .get(i)
                    .ok_or_else(|| usage(format!("--{name} needs a value")))?;
                i += 1;
                v.clone()
            }
        };
        *slot = Some(v);
    }
    Ok(d)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn strs(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| (*s).to_owned()).collect()
    }

    fn mb(a: &[&str]) -> Result<Translated, UsageError> {
        let settings = split_args(&strs(a))?;
        let (cmd, implied) = mode(&settings)?;
        build(
            cmd,
            implied,
            &defaults_choice(&strs(a))?,
            &[],
            &settings,
            true,
        )
    }

    #[test]
    fn every_passed_row_reaches_a_command() {
        let root = command();
        for r in ROWS {
            if let Action::Pass(to) = r.action {
                assert!(
                    has_long(&root, to),
                    "--{} passes to --{to}, which no command has",
                    r.name
                );
            }
            if let Action::Mode(cmd, _) = r.action {
                assert!(root.find_subcommand(cmd).is_some(), "{cmd}");
            }
        }
        // Names are unique.
        let mut names: Vec<&str> = ROWS.iter().map(|r| r.name).collect();
        names.sort_unstable();
        let n = names.len();
        names.dedup();
        assert_eq!(n, names.len(), "a row twice");
    }

    #[test]
    fn the_cron_job_line_translates() {
        let t = mb(&[
            "--backup",
            "--stream=xbstream",
            "--target-dir=/tmp/work",
            "--socket",
            "/run/s.sock",
            "-uroot",
            "--parallel=4",
            "--kill-long-queries-timeout=5",
            "--ftwrl-wait-threshold=1",
            "--kill-long-query-type=ALL",
        ])
        .unwrap();
        assert_eq!(
            t.args,
            strs(&[
                "backup",
                "--stream=xbstream",
                "--socket=/run/s.sock",
                "--user=root",
                "--parallel=4",
                "--kill-long-query-type=ALL",
            ])
        );
        // Parses, and the no-ops really are: no killing, the default threshold.
        let cli = <Cli as clap::Parser>::try_parse_from(
            std::iter::once("hotbak".to_owned()).chain(t.args),
        )
        .unwrap();
        let super::super::args::Command::Backup(b) = cli.command else {
            panic!("backup")
        };
        assert_eq!(b.kill_long_queries_timeout, 0);
        assert_eq!(b.ftwrl_wait_threshold, 60);
        assert!(b.target_dir.is_none());
    }

    #[test]
    fn modes_map_onto_subcommands() {
        assert_eq!(
            mb(&[
                "--prepare",
                "--target-dir",
                "/b",
                "--use-memory=1G",
                "--parallel=3"
            ])
            .unwrap()
            .args,
            strs(&["prepare", "--target-dir=/b", "--use-memory=1G"])
        );
        assert_eq!(
            mb(&["--copy-back", "--target-dir=/b", "-h", "/d", "--parallel=3"])
                .unwrap()
                .args,
            strs(&[
                "restore",
                "--copy-back",
                "--target-dir=/b",
                "--datadir=/d",
                "--parallel=3"
            ])
        );
        assert_eq!(
            mb(&["--move-back", "--target-dir=/b", "--datadir=/d"])
                .unwrap()
                .args,
            strs(&["restore", "--move-back", "--target-dir=/b", "--datadir=/d"])
        );
        // A backup into a directory keeps --target-dir.
        assert_eq!(
            mb(&[
                "--backup",
                "--target-dir=/b",
                "--skip-safe-slave-backup",
                "--slave-info=1"
            ])
            .unwrap()
            .args,
            strs(&["backup", "--target-dir=/b", "--slave-info"])
        );
    }

    #[test]
    fn refusals_name_the_option() {
        for (args, needle) in [
            (
                &["--backup", "--throttle=10"][..],
                "not supported by hotbak: --throttle",
            ),
            (
                &["--backup", "--binlog-info=LOCKLESS"],
                "binlog-info=lockless",
            ),
            (&["--backup", "--frobnicate"], "unknown option --frobnicate"),
            (&["--target-dir=x"], "no mode"),
            (&["--backup", "--prepare"], "two modes"),
            (&["--backup", "stray"], "unexpected argument 'stray'"),
            (&["--backup", "-q"], "unknown option -q"),
            (&["--backup", "--user"], "--user needs a value"),
            (&["--backup", "--no-lock=maybe"], "not a boolean"),
        ] {
            let e = mb(args).unwrap_err().to_string();
            assert!(e.contains(needle), "{args:?}: {e}");
        }
        // Accepted: binlog-info=AUTO, hotbak's own options, help.
        assert!(mb(&["--backup", "--stream", "--binlog-info=AUTO", "--max-rate=5"]).is_ok());
        // Partial backups, export and incrementals pass on under their names.
        assert_eq!(
            mb(&[
                "--backup",
                "--target-dir=/b",
                "--databases=a b",
                "--tables-exclude=^a[.]x$"
            ])
            .unwrap()
            .args,
            strs(&[
                "backup",
                "--target-dir=/b",
                "--databases=a b",
                "--tables-exclude=^a[.]x$"
            ])
        );
        assert_eq!(
            mb(&["--prepare", "--export", "--target-dir=/b"])
                .unwrap()
                .args,
            strs(&["prepare", "--export", "--target-dir=/b"])
        );
        assert_eq!(mb(&["--backup", "--help"]).unwrap().info, Some("--help"));
    }

    #[test]
    fn file_settings_come_first_and_name_their_line() {
        let e = |k: &str, v: Option<&str>, g: &str, line: usize| OptionEntry {
            group: g.into(),
            key: k.into(),
            value: v.map(str::to_owned),
            path: "/etc/my.cnf".into(),
            line,
            loose: false,
        };
        let files = file_settings(&[
            e("user", Some("bk"), "mariabackup", 2),
            e("parallel", Some("3"), "mariadb-backup", 3),
            e("kill-long-queries-timeout", Some("9"), "xtrabackup", 4),
            e("compress", None, "mariabackup", 5),
            e("kill-long-queries-timeout", Some("7"), "hotbak", 6),
        ]);
        let t = build(
            "backup",
            &[],
            &DefaultsChoice::default(),
            &files,
            &[],
            false,
        )
        .unwrap();
        assert_eq!(
            t.args,
            strs(&[
                "backup",
                "--user=bk",
                "--parallel=3",
                "--compress",
                "--kill-long-queries-timeout=7",
            ])
        );
        // The same files for prepare: only what prepare takes.
        let t = build(
            "prepare",
            &[],
            &DefaultsChoice::default(),
            &files,
            &[],
            false,
        )
        .unwrap();
        assert_eq!(t.args, strs(&["prepare"]));
        let bad = file_settings(&[e("throttle", Some("3"), "mariabackup", 7)]);
        let err = build("backup", &[], &DefaultsChoice::default(), &bad, &[], false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("/etc/my.cnf line 7 [mariabackup]"), "{err}");
        let mut loose = e("frob", None, "hotbak", 8);
        loose.loose = true;
        assert!(build(
            "backup",
            &[],
            &DefaultsChoice::default(),
            &file_settings(&[loose]),
            &[],
            false
        )
        .is_ok());
    }

    /// README's comparison table, one line per row.
    fn readme_table() -> String {
        let mut out = String::from("| mariabackup 10.11 | hotbak |\n|---|---|\n");
        for r in ROWS {
            let opt = match (r.short, r.takes) {
                (Some(c), Takes::Value) => format!("`-{c}`, `--{}=…`", r.name),
                (Some(c), _) => format!("`-{c}`, `--{}`", r.name),
                (None, Takes::Value) => format!("`--{}=…`", r.name),
                (None, Takes::Optional) => format!("`--{}[=…]`", r.name),
                (None, Takes::Nothing) => format!("`--{}`", r.name),
            };
            let what = match r.action {
                Action::Mode(cmd, []) => format!("`hotbak {cmd}`"),
                Action::Mode(cmd, extra) => format!("`hotbak {cmd} {}`", extra.join(" ")),
                Action::Pass(to) if to == r.name => "same".to_owned(),
                Action::Pass(to) => format!("as `--{to}`"),
                Action::NoOp(why) => format!("accepted, no effect: {why}"),
                Action::NoOpWith(vals, why) => format!(
                    "accepted with {}, no effect: {why}; other values refused",
                    vals.join(", ")
                ),
                Action::Unsupported(hint) => format!("**not supported by hotbak**: {hint}"),
                Action::Defaults => "same (option files)".to_owned(),
                Action::Info(_) => "same".to_owned(),
            };
            out.push_str(&format!("| {opt} | {what} |\n"));
        }
        out
    }

    #[test]
    fn readme_lists_every_mariabackup_option() {
        let readme = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"),
        )
        .unwrap();
        let (start, end) = (
            "<!-- mariabackup-options:begin -->\n",
            "<!-- mariabackup-options:end -->",
        );
        let from = readme
            .find(start)
            .expect("README has the table's begin marker")
            + start.len();
        let to = readme.find(end).expect("README has the table's end marker");
        let want = readme_table();
        assert!(
            readme[from..to] == want,
            "README's mariabackup option table is out of date; it should be:\n{want}"
        );
    }

    #[test]
    fn defaults_choices_anywhere() {
        let d = defaults_choice(&strs(&[
            "--backup",
            "--defaults-file",
            "/a.cnf",
            "--defaults-group-suffix=_x",
            "--defaults_extra_file=/b.cnf",
            "--print-defaults",
        ]))
        .unwrap();
        assert_eq!(d.file.as_deref(), Some("/a.cnf"));
        assert_eq!(d.group_suffix.as_deref(), Some("_x"));
        assert_eq!(d.extra_file.as_deref(), Some("/b.cnf"));
        assert!(d.print && !d.no_defaults);
        assert_eq!(style(&strs(&["--backup"])), Style::Mariabackup);
        assert_eq!(style(&strs(&["backup", "--stream"])), Style::Native);
        assert_eq!(style(&strs(&["--help"])), Style::Native);
    }
}
