//! `hotbak`'s command line before clap sees it: the option files' tool
//! groups read (I/O) and, for mariabackup's style, the translation of
//! [`super::compat`].

use std::path::PathBuf;

use super::compat::{self, DefaultsChoice, Style, HOTBAK_GROUP, MARIABACKUP_GROUPS};
use crate::mysql::options::{groups_with_suffix, OptionEntry};
use crate::mysql::Defaults;

/// Option-file groups a server reads its directories from (mariabackup's
/// `--copy-back` takes `datadir` and the InnoDB directories from them).
pub const SERVER_GROUPS: &[&str] = &[
    "mysqld",
    "server",
    "mysqld-10.11",
    "mariadb",
    "mariadb-10.11",
    "mariadbd",
    "mariadbd-10.11",
];

/// What to do with the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    /// Parse these arguments (program name first). `origins` pairs each
    /// option that came from an option file with where it was.
    Parse {
        /// The arguments.
        args: Vec<String>,
        /// `(--name, FILE line N [group])` of the options from files.
        origins: Vec<(String, String)>,
    },
    /// `--print-defaults`: print this and exit 0.
    Print(String),
}

/// The files `choice` selects.
fn defaults_of(choice: &DefaultsChoice) -> Option<Defaults> {
    if choice.no_defaults {
        return None;
    }
    Some(match (&choice.file, &choice.extra_file) {
        (Some(f), _) => Defaults::File(PathBuf::from(f)),
        (None, Some(e)) => Defaults::StandardWithExtra(PathBuf::from(e)),
        (None, None) => Defaults::Standard,
    })
}

/// Read the entries of `groups` (with the suffix variants) from the chosen files.
fn entries(choice: &DefaultsChoice, groups: &[&str]) -> anyhow::Result<Vec<OptionEntry>> {
    let Some(d) = defaults_of(choice) else {
        return Ok(Vec::new());
    };
    let groups = groups_with_suffix(groups, choice.group_suffix.as_deref());
    let groups: Vec<&str> = groups.iter().map(String::as_str).collect();
    Ok(d.load(&groups)?.entries)
}

/// The tool groups' entries: mariabackup's groups first, then `[hotbak]`
/// (which wins), each in file order.
fn tool_entries(choice: &DefaultsChoice) -> anyhow::Result<Vec<OptionEntry>> {
    let mut groups: Vec<&str> = MARIABACKUP_GROUPS.to_vec();
    groups.push(HOTBAK_GROUP);
    let mut all = entries(choice, &groups)?;
    all.sort_by_key(|e| e.group.starts_with(HOTBAK_GROUP));
    Ok(all)
}

/// The command line without the option-file choices (native style: they
/// are given back to the commands that take them).
fn without_defaults_choices(args: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        i += 1;
        let name = a
            .strip_prefix("--")
            .map(|l| crate::mysql::options::normalize_key(l.split('=').next().unwrap_or(l)));
        match name.as_deref() {
            Some("no-defaults" | "print-defaults") => {}
            Some("defaults-file" | "defaults-extra-file" | "defaults-group-suffix") => {
                if !a.contains('=') {
                    i += 1;
                }
            }
            _ => out.push(a.clone()),
        }
    }
    out
}

/// Resolve `hotbak`'s command line (`raw` with the program name).
///
/// # Errors
/// [`UsageError`] from the translation; an unreadable or malformed option file.
pub fn resolve(raw: Vec<String>) -> anyhow::Result<Resolved> {
    let prog = raw.first().cloned().unwrap_or_else(|| "hotbak".to_owned());
    let args = raw.get(1..).unwrap_or_default();
    let style = compat::style(args);
    let choice = compat::defaults_choice(args)?;
    let native_cmd = match style {
        Style::Native => match args.first() {
            Some(c) if compat::is_command(c) => Some(c.clone()),
            _ => {
                return Ok(Resolved::Parse {
                    args: raw,
                    origins: Vec::new(),
                })
            }
        },
        Style::Mariabackup => None,
    };
    let files = compat::file_settings(&tool_entries(&choice)?);
    let translated = if let Some(cmd) = &native_cmd {
        let mut t = compat::build(cmd, &[], &choice, &files, &[], false)?;
        t.args
            .extend(without_defaults_choices(args.get(1..).unwrap_or_default()));
        t
    } else {
        let settings = compat::split_args(args)?;
        let (cmd, implied) = compat::mode(&settings)?;
        let mut t = compat::build(cmd, implied, &choice, &files, &settings, true)?;
        if cmd == "restore" && choice.file.is_none() {
            t.args.extend(server_directories(&choice, &t.args)?);
        }
        t
    };
    let origins: Vec<(String, String)> = files
        .iter()
        .filter_map(|(s, _)| s.origin.clone().map(|o| (format!("--{}", s.name), o)))
        .collect();
    if choice.print {
        return Ok(Resolved::Print(print_defaults(&files)));
    }
    let mut out = vec![prog];
    match translated.info {
        Some(i) => out.push(i.to_owned()),
        None => out.extend(translated.args),
    }
    Ok(Resolved::Parse { args: out, origins })
}

/// mariabackup's `--copy-back` without `--defaults-file`: the datadir and
/// InnoDB directories from the standard files' server groups, for those
/// the command line does not give.
fn server_directories(choice: &DefaultsChoice, args: &[String]) -> anyhow::Result<Vec<String>> {
    let mut set = std::collections::BTreeMap::new();
    for e in entries(choice, SERVER_GROUPS)? {
        set.insert(e.key, e.value);
    }
    let mut out = Vec::new();
    for key in [
        "datadir",
        "innodb-data-home-dir",
        "innodb-undo-directory",
        "innodb-log-group-home-dir",
    ] {
        let given = args.iter().any(|a| a.starts_with(&format!("--{key}=")));
        if let (false, Some(Some(v))) = (given, set.get(key)) {
            if !v.is_empty() {
                out.push(format!("--{key}={v}"));
            }
        }
    }
    Ok(out)
}

/// `--print-defaults`: the options the files give, as mariabackup prints
/// them (a password as `*****`).
fn print_defaults(files: &[(compat::Setting, bool)]) -> String {
    let mut line = String::from("hotbak would have been started with the following arguments:\n");
    let shown: Vec<String> = files
        .iter()
        .map(|(s, _)| match (&s.value, s.name.as_str()) {
            (Some(_), "password") => "--password=*****".to_owned(),
            (Some(v), n) => format!("--{n}={v}"),
            (None, n) => format!("--{n}"),
        })
        .collect();
    line.push_str(&shown.join(" "));
    line
}

/// A clap error's option, if it came from an option file: "(FILE line N
/// [group])" to print after it.
#[must_use]
pub fn origin_of(err: &clap::Error, origins: &[(String, String)]) -> Option<String> {
    let arg = match err.get(clap::error::ContextKind::InvalidArg)? {
        clap::error::ContextValue::String(s) => s.clone(),
        _ => return None,
    };
    let name = arg.split([' ', '=']).next().unwrap_or(&arg);
    origins
        .iter()
        .rev()
        .find(|(n, _)| n == name)
        .map(|(_, o)| o.clone())
}
