//! Connection options and MariaDB option files (`my.cnf`).
//!
//! Precedence, as in mariabackup: command line > option files > `MYSQL_PWD`
//! (password only) > built-in defaults. Option files are read in this order,
//! a later value overriding an earlier one:
//!
//! - `--no-defaults`: none;
//! - `--defaults-file=F`: only `F` (it must exist);
//! - otherwise `/etc/my.cnf`, `/etc/mysql/my.cnf`, then
//!   `--defaults-extra-file=F` if given, then `~/.my.cnf` (missing files are skipped).
//!
//! Within the files, the groups [`CLIENT_GROUPS`] are read in file order.
//! `!include FILE` and `!includedir DIR` (files ending in `.cnf`, sorted) are
//! followed up to [`MAX_INCLUDE_DEPTH`] levels.
//!
//! Parsing rules ([`parse_option_text`]): `#` and `;` start comment lines;
//! `#` outside quotes ends a value; `[group]`; `key`, `key=value`,
//! `key = value`; names are lower-cased, `_` becomes `-`, a `loose-` prefix is
//! dropped; values lose surrounding matching quotes and take the escapes
//! `\n \t \r \b \s \\ \" \'`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use zeroize::Zeroizing;

use super::Error;

/// Groups read from option files for the connection, in mariabackup's spirit.
pub const CLIENT_GROUPS: &[&str] = &[
    "client",
    "client-server",
    "client-mariadb",
    "mariabackup",
    "mariadb-backup",
    "hotbak",
];

/// How deep `!include` / `!includedir` may nest.
pub const MAX_INCLUDE_DEPTH: usize = 10;

/// Largest option file read (bytes).
pub const MAX_OPTION_FILE_LEN: u64 = 1 << 20;

/// Default socket of Debian/Ubuntu MariaDB packages.
pub const DEFAULT_SOCKET: &str = "/run/mysqld/mysqld.sock";

/// One line of an option file, after parsing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OptionLine {
    /// `[group]`, lower-cased.
    Group(String),
    /// `key` or `key = value`; the key normalised.
    Option {
        /// Normalised name (`lower-case-with-dashes`, no `loose-`).
        key: String,
        /// The value, unquoted and unescaped; `None` for a bare key.
        value: Option<String>,
    },
    /// `!include PATH`.
    Include(String),
    /// `!includedir PATH`.
    IncludeDir(String),
}

/// Normalise an option name: trim, lower-case, `_` → `-`, drop `loose-`.
#[must_use]
pub fn normalize_key(key: &str) -> String {
    let k = key.trim().to_ascii_lowercase().replace('_', "-");
    match k.strip_prefix("loose-") {
        Some(rest) => rest.to_owned(),
        None => k,
    }
}

/// Cut a trailing `#` comment that is outside quotes (mysys `remove_end_comment`).
fn remove_end_comment(s: &str) -> &str {
    let mut quote: Option<char> = None;
    let mut escape = false;
    for (i, c) in s.char_indices() {
        if (c == '\'' || c == '"') && !escape {
            match quote {
                None => quote = Some(c),
                Some(q) if q == c => quote = None,
                Some(_) => {}
            }
        }
        if quote.is_none() && c == '#' {
            return &s[..i];
        }
        escape = quote.is_some() && c == '\\' && !escape;
    }
    s
}

/// Unquote and unescape a value.
fn unquote(v: &str) -> String {
    let v = v.trim();
    let inner = if v.len() >= 2
        && ((v.starts_with('"') && v.ends_with('"')) || (v.starts_with('\'') && v.ends_with('\'')))
    {
        &v[1..v.len() - 1]
    } else {
        v
    };
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('b') => out.push('\u{8}'),
            Some('s') => out.push(' '),
            Some('"') => out.push('"'),
            Some('\'') => out.push('\''),
            Some('\\') => out.push('\\'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

/// Parse the text of one option file (pure). `origin` names it in errors.
///
/// # Errors
/// [`Error::OptionFile`] for an unterminated `[group`, an option with an
/// empty name, or an unknown `!directive`.
pub fn parse_option_text(text: &str, origin: &Path) -> Result<Vec<OptionLine>, Error> {
    Ok(parse_option_lines(text, origin)?
        .into_iter()
        .map(|l| l.line)
        .collect())
}

/// One parsed line with where it was: its number (1-based) and whether the
/// option had a `loose-` prefix (an unknown loose option is ignored).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NumberedLine {
    /// 1-based line number.
    pub number: usize,
    /// The option was written `loose-NAME`.
    pub loose: bool,
    /// The line.
    pub line: OptionLine,
}

/// [`parse_option_text`] keeping each line's number and `loose-` prefix.
///
/// # Errors
/// As [`parse_option_text`].
pub fn parse_option_lines(text: &str, origin: &Path) -> Result<Vec<NumberedLine>, Error> {
    let mut out = Vec::new();
    let mut push = |number: usize, line: OptionLine, loose: bool| {
        out.push(NumberedLine {
            number,
            loose,
            line,
        });
    };
    for (n, raw) in text.lines().enumerate() {
        let line_no = n + 1;
        let bad = |message: &str| Error::OptionFile {
            path: origin.to_owned(),
            line: line_no,
            message: message.to_owned(),
        };
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(rest) = line.strip_prefix('!') {
            let (directive, arg) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
            let arg = arg.trim().to_owned();
            match directive {
                "include" if !arg.is_empty() => push(line_no, OptionLine::Include(arg), false),
                "includedir" if !arg.is_empty() => {
                    push(line_no, OptionLine::IncludeDir(arg), false);
                }
                _ => {
                    return Err(bad(&format!(
                        "unknown or incomplete directive !{directive}"
                    )))
                }
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix('[') {
            let rest = remove_end_comment(rest).trim_end();
            let Some(name) = rest.strip_suffix(']') else {
                return Err(bad("group header without closing ']'"));
            };
            push(
                line_no,
                OptionLine::Group(name.trim().to_ascii_lowercase()),
                false,
            );
            continue;
        }
        let line = remove_end_comment(line);
        let (key, value) = match line.split_once('=') {
            Some((k, v)) => (k, Some(unquote(v))),
            None => (line, None),
        };
        let loose = key
            .trim()
            .to_ascii_lowercase()
            .replace('_', "-")
            .starts_with("loose-");
        let key = normalize_key(key);
        if key.is_empty() {
            return Err(bad("option without a name"));
        }
        push(line_no, OptionLine::Option { key, value }, loose);
    }
    Ok(out)
}

/// One option read from a file, with where it was found.
#[derive(Clone, PartialEq, Eq)]
pub struct OptionEntry {
    /// The group it was in (lower-case).
    pub group: String,
    /// Normalised name.
    pub key: String,
    /// The value; `None` for a bare key.
    pub value: Option<String>,
    /// The file.
    pub path: PathBuf,
    /// 1-based line number.
    pub line: usize,
    /// Written with a `loose-` prefix.
    pub loose: bool,
}

impl OptionEntry {
    /// `FILE line N, [group]` for messages.
    #[must_use]
    pub fn origin(&self) -> String {
        format!(
            "{} line {} [{}]",
            self.path.display(),
            self.line,
            self.group
        )
    }
}

impl fmt::Debug for OptionEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let value = if self.key == "password" {
            self.value.as_ref().map(|_| "***")
        } else {
            self.value.as_deref()
        };
        f.debug_struct("OptionEntry")
            .field("key", &self.key)
            .field("value", &value)
            .field("origin", &self.origin())
            .finish()
    }
}

/// `groups` and, with a `--defaults-group-suffix`, each also with the suffix
/// appended (`mariabackup` → `mariabackup` and `mariabackup_suffix`).
#[must_use]
pub fn groups_with_suffix(groups: &[&str], suffix: Option<&str>) -> Vec<String> {
    let mut out: Vec<String> = groups.iter().map(|g| (*g).to_owned()).collect();
    if let Some(sfx) = suffix.filter(|s| !s.is_empty()) {
        out.extend(
            groups
                .iter()
                .map(|g| format!("{g}{sfx}").to_ascii_lowercase()),
        );
    }
    out
}

/// Values collected from option files for a set of groups.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct OptionSet {
    values: BTreeMap<String, Option<String>>,
    /// Files actually read, in order.
    pub files: Vec<PathBuf>,
    /// Every option of the selected groups, in the order read (with
    /// [`OptionSet::read_file`]; not printed by `Debug`).
    pub entries: Vec<OptionEntry>,
}

impl fmt::Debug for OptionSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print passwords.
        let shown: BTreeMap<&str, Option<&str>> = self
            .values
            .iter()
            .map(|(k, v)| {
                let v = if k == "password" {
                    v.as_ref().map(|_| "***")
                } else {
                    v.as_deref()
                };
                (k.as_str(), v)
            })
            .collect();
        f.debug_struct("OptionSet")
            .field("values", &shown)
            .field("files", &self.files)
            .finish()
    }
}

impl OptionSet {
    /// The value of `key` (normalised name); `Some(None)` for a bare key.
    #[must_use]
    pub fn get(&self, key: &str) -> Option<Option<&str>> {
        self.values.get(&normalize_key(key)).map(Option::as_deref)
    }

    /// The value of `key`, if it has one.
    #[must_use]
    pub fn value(&self, key: &str) -> Option<&str> {
        self.get(key).flatten()
    }

    /// Apply parsed lines, keeping options of `groups` only. Later values win.
    pub fn apply(&mut self, lines: &[OptionLine], groups: &[&str]) {
        let mut active = false;
        for l in lines {
            match l {
                OptionLine::Group(g) => active = groups.iter().any(|w| w.eq_ignore_ascii_case(g)),
                OptionLine::Option { key, value } if active => {
                    self.values.insert(key.clone(), value.clone());
                }
                _ => {}
            }
        }
    }

    /// Read one file (and its includes) into the set.
    ///
    /// # Errors
    /// [`Error::OptionFileIo`] if it cannot be read, [`Error::OptionFile`] on
    /// a syntax error or an include loop deeper than [`MAX_INCLUDE_DEPTH`].
    pub fn read_file(&mut self, path: &Path, groups: &[&str]) -> Result<(), Error> {
        self.read_file_depth(path, groups, 0)
    }

    fn read_file_depth(&mut self, path: &Path, groups: &[&str], depth: usize) -> Result<(), Error> {
        if depth > MAX_INCLUDE_DEPTH {
            return Err(Error::OptionFile {
                path: path.to_owned(),
                line: 0,
                message: format!("includes nested deeper than {MAX_INCLUDE_DEPTH}"),
            });
        }
        let io = |source| Error::OptionFileIo {
            path: path.to_owned(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(io)?;
        if meta.len() > MAX_OPTION_FILE_LEN {
            return Err(Error::OptionFile {
                path: path.to_owned(),
                line: 0,
                message: format!("larger than {MAX_OPTION_FILE_LEN} bytes"),
            });
        }
        let bytes = std::fs::read(path).map_err(|source| Error::OptionFileIo {
            path: path.to_owned(),
            source,
        })?;
        let text = String::from_utf8_lossy(&bytes);
        let lines = parse_option_lines(&text, path)?;
        self.files.push(path.to_owned());
        let base = path.parent().unwrap_or_else(|| Path::new("/"));
        // Apply in order, following includes where they appear; an included
        // file starts outside any group and does not change ours.
        let mut active: Option<&str> = None;
        for numbered in &lines {
            match &numbered.line {
                OptionLine::Include(p) => self.read_file_depth(&base.join(p), groups, depth + 1)?,
                OptionLine::IncludeDir(d) => {
                    let dir = base.join(d);
                    let Ok(rd) = std::fs::read_dir(&dir) else {
                        continue;
                    };
                    let mut files: Vec<PathBuf> = rd
                        .filter_map(|e| e.ok().map(|e| e.path()))
                        .filter(|p| p.extension().is_some_and(|x| x == "cnf") && p.is_file())
                        .collect();
                    files.sort();
                    for f in files {
                        self.read_file_depth(&f, groups, depth + 1)?;
                    }
                }
                OptionLine::Group(g) => {
                    active = groups
                        .iter()
                        .any(|w| w.eq_ignore_ascii_case(g))
                        .then_some(g.as_str());
                }
                OptionLine::Option { key, value } => {
                    if let Some(group) = active {
                        self.values.insert(key.clone(), value.clone());
                        self.entries.push(OptionEntry {
                            group: group.to_owned(),
                            key: key.clone(),
                            value: value.clone(),
                            path: path.to_owned(),
                            line: numbered.number,
                            loose: numbered.loose,
                        });
                    }
                }
            }
        }
        Ok(())
    }
}

/// Where option files come from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Defaults {
    /// `--no-defaults`.
    None,
    /// `--defaults-file=F`: only this file.
    File(PathBuf),
    /// The standard files, plus an optional `--defaults-extra-file`.
    #[default]
    Standard,
    /// The standard files plus this extra file (read before `~/.my.cnf`).
    StandardWithExtra(PathBuf),
}

impl Defaults {
    /// Load the option files for `groups`.
    ///
    /// # Errors
    /// An explicitly named file that cannot be read, or a syntax error.
    pub fn load(&self, groups: &[&str]) -> Result<OptionSet, Error> {
        let mut set = OptionSet::default();
        let home = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".my.cnf"));
        let optional = |set: &mut OptionSet, p: &Path| -> Result<(), Error> {
            if p.is_file() {
                set.read_file(p, groups)?;
            }
            Ok(())
        };
        match self {
            Defaults::None => {}
            Defaults::File(f) => set.read_file(f, groups)?,
            Defaults::Standard | Defaults::StandardWithExtra(_) => {
                optional(&mut set, Path::new("/etc/my.cnf"))?;
                optional(&mut set, Path::new("/etc/mysql/my.cnf"))?;
                if let Defaults::StandardWithExtra(extra) = self {
                    set.read_file(extra, groups)?;
                }
                if let Some(h) = home {
                    optional(&mut set, &h)?;
                }
            }
        }
        Ok(set)
    }
}

/// A password: zeroed on drop, never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(Zeroizing<String>);

impl Password {
    /// Wrap a password.
    #[must_use]
    pub fn new(s: impl Into<String>) -> Self {
        Password(Zeroizing::new(s.into()))
    }

    /// The secret.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(***)")
    }
}

/// How to reach and log into the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectOptions {
    /// Host; `None` or `localhost` means the socket.
    pub host: Option<String>,
    /// TCP port (default 3306).
    pub port: Option<u16>,
    /// Unix socket path.
    pub socket: Option<PathBuf>,
    /// User name.
    pub user: Option<String>,
    /// Password.
    pub password: Option<Password>,
    /// Time allowed to connect.
    pub connect_timeout: Duration,
    /// Session `lock_wait_timeout` in seconds (mariabackup `--lock-wait-timeout`);
    /// `None` sets the maximum (31536000) so that a changed global default
    /// does not make the backup locks time out.
    pub lock_wait_timeout: Option<u64>,
    /// `--ssl` (`Some(false)`: `--skip-ssl`).
    pub ssl: Option<bool>,
    /// `--ssl-ca`: the CA certificates (PEM) the server's certificate is checked against.
    pub ssl_ca: Option<PathBuf>,
    /// `--ssl-cert`: our client certificate (PEM).
    pub ssl_cert: Option<PathBuf>,
    /// `--ssl-key`: its private key (PEM).
    pub ssl_key: Option<PathBuf>,
    /// `--ssl-verify-server-cert`: check the server's certificate chain and
    /// host name (as the MariaDB 10.11 client, not checked otherwise).
    pub ssl_verify_server_cert: Option<bool>,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            host: None,
            port: None,
            socket: None,
            user: None,
            password: None,
            connect_timeout: Duration::from_secs(30),
            lock_wait_timeout: None,
            ssl: None,
            ssl_ca: None,
            ssl_cert: None,
            ssl_key: None,
            ssl_verify_server_cert: None,
        }
    }
}

/// The transport a [`ConnectOptions`] resolves to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transport {
    /// Unix socket.
    Socket(PathBuf),
    /// TCP.
    Tcp {
        /// Host name or address.
        host: String,
        /// Port.
        port: u16,
    },
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Transport::Socket(p) => write!(f, "socket {}", p.display()),
            Transport::Tcp { host, port } => write!(f, "{host}:{port}"),
        }
    }
}

impl ConnectOptions {
    /// Socket connection as `user` without password.
    #[must_use]
    pub fn socket(path: &Path, user: &str) -> Self {
        ConnectOptions {
            socket: Some(path.to_owned()),
            user: Some(user.to_owned()),
            ..Default::default()
        }
    }

    /// TCP connection as `user` without password.
    #[must_use]
    pub fn tcp(host: &str, port: u16, user: &str) -> Self {
        ConnectOptions {
            host: Some(host.to_owned()),
            port: Some(port),
            user: Some(user.to_owned()),
            ..Default::default()
        }
    }

    /// Fill every field not set here (the command line) from option files,
    /// then the password from `MYSQL_PWD`.
    ///
    /// # Errors
    /// [`Error::BadOption`] for an invalid `port` in a file; errors of
    /// [`Defaults::load`].
    pub fn with_defaults(self, defaults: &Defaults) -> Result<Self, Error> {
        self.with_defaults_suffixed(defaults, None)
    }

    /// [`ConnectOptions::with_defaults`] reading also the groups with
    /// `--defaults-group-suffix` appended.
    ///
    /// # Errors
    /// As [`ConnectOptions::with_defaults`].
    pub fn with_defaults_suffixed(
        mut self,
        defaults: &Defaults,
        suffix: Option<&str>,
    ) -> Result<Self, Error> {
        let groups = groups_with_suffix(CLIENT_GROUPS, suffix);
        let groups: Vec<&str> = groups.iter().map(String::as_str).collect();
        let set = defaults.load(&groups)?;
        self.merge_option_set(&set)?;
        if self.password.is_none() {
            if let Ok(pw) = std::env::var("MYSQL_PWD") {
                self.password = Some(Password::new(pw));
            }
        }
        Ok(self)
    }

    /// Fill unset fields from an [`OptionSet`] (pure).
    ///
    /// # Errors
    /// [`Error::BadOption`] for a `port` that is not a number in 1..=65535,
    /// naming the file, line and group the value came from.
    pub fn merge_option_set(&mut self, set: &OptionSet) -> Result<(), Error> {
        self.merge_values(set).map_err(|e| match e {
            Error::BadOption {
                name,
                value,
                reason,
            } => {
                let at = set.entries.iter().rev().find(|x| x.key == name);
                Error::BadOption {
                    name: match at {
                        Some(at) => format!("{name} (in {})", at.origin()),
                        None => name,
                    },
                    value,
                    reason,
                }
            }
            e => e,
        })
    }

    fn merge_values(&mut self, set: &OptionSet) -> Result<(), Error> {
        if self.host.is_none() {
            self.host = set.value("host").map(str::to_owned);
        }
        if self.port.is_none() {
            if let Some(p) = set.value("port") {
                self.port = Some(parse_port(p)?);
            }
        }
        if self.socket.is_none() {
            self.socket = set.value("socket").map(PathBuf::from);
        }
        if self.user.is_none() {
            self.user = set.value("user").map(str::to_owned);
        }
        if self.password.is_none() {
            self.password = set.value("password").map(Password::new);
        }
        for (slot, key) in [
            (&mut self.ssl_ca, "ssl-ca"),
            (&mut self.ssl_cert, "ssl-cert"),
            (&mut self.ssl_key, "ssl-key"),
        ] {
            if slot.is_none() {
                *slot = set.value(key).filter(|v| !v.is_empty()).map(PathBuf::from);
            }
        }
        for (slot, key) in [
            (&mut self.ssl, "ssl"),
            (&mut self.ssl_verify_server_cert, "ssl-verify-server-cert"),
        ] {
            if slot.is_none() {
                *slot = match set.get(key) {
                    None => set.get(&format!("skip-{key}")).map(|_| false),
                    Some(None) => Some(true),
                    Some(Some(v)) => Some(parse_bool(key, v)?),
                };
            }
        }
        if self.lock_wait_timeout.is_none() {
            if let Some(v) = set.value("lock-wait-timeout") {
                self.lock_wait_timeout = Some(v.trim().parse().map_err(|_| Error::BadOption {
                    name: "lock-wait-timeout".into(),
                    value: v.to_owned(),
                    reason: "not a number of seconds".into(),
                })?);
            }
        }
        Ok(())
    }

    /// The transport: the socket when the host is unset or `localhost`
    /// (the given socket, else [`DEFAULT_SOCKET`]), TCP otherwise.
    #[must_use]
    pub fn transport(&self) -> Transport {
        match self.host.as_deref() {
            None | Some("localhost") => Transport::Socket(
                self.socket
                    .clone()
                    .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET)),
            ),
            Some(h) => Transport::Tcp {
                host: h.to_owned(),
                port: self.port.unwrap_or(3306),
            },
        }
    }

    /// The user to log in as: the one given, else the operating system's
    /// login name (as the MariaDB client does: `root` over `unix_socket`
    /// works without `--user`).
    #[must_use]
    pub fn effective_user(&self) -> Option<String> {
        self.user.clone().or_else(crate::sys::login_name)
    }

    /// `user@transport` for messages (never the password).
    #[must_use]
    pub fn describe(&self) -> String {
        format!(
            "{}@{}{} (password: {})",
            self.effective_user()
                .unwrap_or_else(|| "(no user name)".to_owned()),
            self.transport(),
            if self.tls_wanted() { " over TLS" } else { "" },
            if self.password.is_some() {
                "set"
            } else {
                "not set"
            }
        )
    }
}

/// Parse an option file's boolean (`1`/`0`, `on`/`off`, `true`/`false`).
///
/// # Errors
/// [`Error::BadOption`] for anything else.
pub fn parse_bool(name: &str, v: &str) -> Result<bool, Error> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "on" | "true" | "yes" => Ok(true),
        "0" | "off" | "false" | "no" => Ok(false),
        _ => Err(Error::BadOption {
            name: name.to_owned(),
            value: v.to_owned(),
            reason: "not a boolean (1/0, on/off, true/false)".into(),
        }),
    }
}

impl ConnectOptions {
    /// Is TLS asked for: `--ssl`, or any `--ssl-*` file or the
    /// verification, unless `--skip-ssl`.
    #[must_use]
    pub fn tls_wanted(&self) -> bool {
        match self.ssl {
            Some(on) => on,
            None => {
                self.ssl_ca.is_some()
                    || self.ssl_cert.is_some()
                    || self.ssl_key.is_some()
                    || self.ssl_verify_server_cert == Some(true)
            }
        }
    }
}

/// Parse a TCP port.
///
/// # Errors
/// [`Error::BadOption`] unless 1..=65535.
pub fn parse_port(s: &str) -> Result<u16, Error> {
    match s.trim().parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(Error::BadOption {
            name: "port".into(),
            value: s.to_owned(),
            reason: "not a port number".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(t: &str) -> Vec<OptionLine> {
        parse_option_text(t, Path::new("t.cnf")).expect("parses")
    }

    fn opt(k: &str, v: Option<&str>) -> OptionLine {
        OptionLine::Option {
            key: k.into(),
            value: v.map(str::to_owned),
        }
    }

    #[test]
    fn syntax() {
        let lines = parse(
            "# comment\n; other comment\n\n[Client]\nuser = bk\npassword=\"se#cr et\" # trailing\n\
             socket='/run/x.sock'\nloose_ssl_verify_server_cert\nport=3307#c\n  host\t=  db1  \n\
             [mysqld]\ninnodb_log_file_size = 16M\nesc = a\\tb\\\\c\\sd\n!include /etc/x.cnf\n!includedir /etc/d\n",
        );
        assert_eq!(
            lines,
            vec![
                OptionLine::Group("client".into()),
                opt("user", Some("bk")),
                opt("password", Some("se#cr et")),
                opt("socket", Some("/run/x.sock")),
                opt("ssl-verify-server-cert", None),
                opt("port", Some("3307")),
                opt("host", Some("db1")),
                OptionLine::Group("mysqld".into()),
                opt("innodb-log-file-size", Some("16M")),
                opt("esc", Some("a\tb\\c d")),
                OptionLine::Include("/etc/x.cnf".into()),
                OptionLine::IncludeDir("/etc/d".into()),
            ]
        );
    }

    #[test]
    fn syntax_errors() {
        assert!(matches!(
            parse_option_text("[client\n", Path::new("a")),
            Err(Error::OptionFile { line: 1, .. })
        ));
        assert!(matches!(
            parse_option_text("[client]\n=3\n", Path::new("a")),
            Err(Error::OptionFile { line: 2, .. })
        ));
        assert!(matches!(
            parse_option_text("!frobnicate x\n", Path::new("a")),
            Err(Error::OptionFile { line: 1, .. })
        ));
    }

    #[test]
    fn groups_and_precedence() {
        let mut set = OptionSet::default();
        set.apply(
            &parse("[client]\nuser=a\nport=1\n[mysqld]\nuser=mysql\n[hotbak]\nuser=b\n[client]\nsocket=/s\n"),
            CLIENT_GROUPS,
        );
        assert_eq!(set.value("user"), Some("b"));
        assert_eq!(set.value("socket"), Some("/s"));
        // Command line wins over files.
        let mut o = ConnectOptions {
            user: Some("cli".into()),
            ..Default::default()
        };
        o.merge_option_set(&set).expect("merge");
        assert_eq!(o.user.as_deref(), Some("cli"));
        assert_eq!(o.port, Some(1));
        assert_eq!(o.socket.as_deref(), Some(Path::new("/s")));
    }

    #[test]
    fn bad_port_is_usage() {
        let mut set = OptionSet::default();
        set.apply(&parse("[client]\nport=http\n"), CLIENT_GROUPS);
        let err = ConnectOptions::default()
            .merge_option_set(&set)
            .expect_err("bad port");
        assert_eq!(
            crate::error::Classify::class(&err),
            crate::error::ErrorClass::Usage
        );
    }

    #[test]
    fn bad_value_in_a_file_names_the_file_and_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("my.cnf");
        std::fs::write(&f, "[client]\nuser=u\n\nport=http\n").expect("write");
        let mut set = OptionSet::default();
        set.read_file(&f, CLIENT_GROUPS).expect("read");
        let err = ConnectOptions::default()
            .merge_option_set(&set)
            .expect_err("bad port")
            .to_string();
        assert!(
            err.contains(&format!("{} line 4 [client]", f.display())) && err.contains("\"http\""),
            "{err}"
        );
    }

    #[test]
    fn files_and_includes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        std::fs::create_dir(d.join("conf.d")).expect("mkdir");
        std::fs::write(d.join("conf.d/a.cnf"), "[client]\nuser=from_a\n").expect("write");
        std::fs::write(d.join("conf.d/b.cnf"), "[mariabackup]\nuser=from_b\n").expect("write");
        std::fs::write(d.join("conf.d/ignored.txt"), "[client]\nuser=nope\n").expect("write");
        std::fs::write(d.join("inc.cnf"), "[client]\nsocket=/inc.sock\n").expect("write");
        std::fs::write(
            d.join("my.cnf"),
            "[client]\nuser=first\npassword=pw\n!includedir conf.d\n!include inc.cnf\n[client]\nport=3310\n",
        )
        .expect("write");
        let set = Defaults::File(d.join("my.cnf"))
            .load(CLIENT_GROUPS)
            .expect("load");
        assert_eq!(set.value("user"), Some("from_b"));
        assert_eq!(set.value("socket"), Some("/inc.sock"));
        assert_eq!(set.value("port"), Some("3310"));
        assert!(
            !format!("{set:?}").contains("pw\""),
            "password printed: {set:?}"
        );
        // A missing --defaults-file is an error.
        assert!(Defaults::File(d.join("nope.cnf"))
            .load(CLIENT_GROUPS)
            .is_err());
        // Include loops stop.
        std::fs::write(d.join("loop.cnf"), "!include loop.cnf\n").expect("write");
        assert!(Defaults::File(d.join("loop.cnf"))
            .load(CLIENT_GROUPS)
            .is_err());
    }

    #[test]
    fn transport_and_describe() {
        let o = ConnectOptions::socket(Path::new("/tmp/s"), "root");
        assert_eq!(o.transport(), Transport::Socket("/tmp/s".into()));
        let mut t = ConnectOptions::tcp("127.0.0.1", 3307, "bk");
        t.password = Some(Password::new("hunter2"));
        assert_eq!(
            t.transport(),
            Transport::Tcp {
                host: "127.0.0.1".into(),
                port: 3307
            }
        );
        assert!(!t.describe().contains("hunter2"));
        assert!(!format!("{t:?}").contains("hunter2"));
        let l = ConnectOptions {
            host: Some("localhost".into()),
            ..Default::default()
        };
        assert_eq!(l.transport(), Transport::Socket(DEFAULT_SOCKET.into()));
    }
}
