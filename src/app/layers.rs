//! The layer rule, enforced: reads the `crate::…` imports of `src/` as text
//! and fails on an import that goes up the layer order, on a top-level
//! module the order does not place, and on an import cycle between
//! top-level modules (same-layer imports are allowed, cycles are not).
//! `DEVELOPERS.md` states the same order in prose. Test-only code.
#![cfg(test)]
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, top first. A module may import its own layer (without a
/// cycle) and the layers below it, never one above. `bin` stands for
/// `src/main.rs` and `src/bin/`, which import the library as `hotbak::`.
pub const LAYERS: &[(&str, &[&str])] = &[
    ("binaries", &["bin"]),
    ("application and test support", &["app", "testkit"]),
    (
        "engines",
        &[
            "backup",
            "prepare",
            "native_prepare",
            "incremental",
            "restore",
            "extract",
            "verify",
        ],
    ),
    (
        "infrastructure",
        &[
            "sink",
            "mysql",
            "sandbox",
            "sched",
            "interrupt",
            "objstore",
            "events",
            "progress",
        ],
    ),
    ("codecs", &["compress", "encrypt"]),
    ("transform traits", &["transform"]),
    ("formats", &["format", "innodb"]),
    ("ground", &["error", "sys"]),
];

/// Every `.rs` file under `dir`, sorted.
pub fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// `src/format/path.rs` → `format::path`, `src/compress/mod.rs` →
/// `compress`, `src/error.rs` → `error`.
pub fn module_path(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap_or(file).with_extension("");
    let parts: Vec<String> = rel
        .iter()
        .map(|c| c.to_string_lossy().into_owned())
        .filter(|c| c != "mod")
        .collect();
    parts.join("::")
}

/// The top-level module a file belongs to (`bin` for the binaries), or
/// `None` for `lib.rs`.
fn top_module(src: &Path, file: &Path) -> Option<String> {
    let first = file
        .strip_prefix(src)
        .ok()?
        .iter()
        .next()?
        .to_string_lossy();
    match first.as_ref() {
        "lib.rs" => None,
        "main.rs" | "bin" => Some("bin".into()),
        other => Some(other.trim_end_matches(".rs").to_owned()),
    }
}

/// The top-level modules a source text imports through `root::` paths
/// (`crate` for the library, `hotbak` for the binaries), including
/// `use root::{a::x, b}` groups. Comments are skipped.
fn imports(text: &str, root: &str) -> BTreeSet<String> {
    let code: String = text
        .lines()
        .map(|l| l.find("//").map_or(l, |i| &l[..i]))
        .collect::<Vec<_>>()
        .join("\n");
    let mut out = BTreeSet::new();
    let prefix = format!("{root}::");
    let mut rest = code.as_str();
    while let Some(i) = rest.find(&prefix) {
        let before = rest[..i].chars().next_back();
        rest = &rest[i + prefix.len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            let end = matching_brace(group);
            for item in split_top_level(&group[..end]) {
                out.extend(ident(item.trim()));
            }
        } else {
            out.extend(ident(rest));
        }
    }
    out.retain(|m| m != "self" && m != "super");
    out
}

/// Index of the `}` closing a group whose `{` was just consumed.
fn matching_brace(s: &str) -> usize {
    let mut depth = 0usize;
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => return i,
            '}' => depth -= 1,
            _ => {}
        }
    }
    s.len()
}

/// Split a `use` group on its top-level commas.
fn split_top_level(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

/// The leading identifier of `s`, if any.
fn ident(s: &str) -> Option<String> {
    let end = s
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    (end > 0).then(|| s[..end].to_owned())
}

/// Top-level module → the top-level modules it imports, and the files
/// that do it (for the failure message).
type Graph = BTreeMap<String, BTreeMap<String, BTreeSet<String>>>;

fn graph(src: &Path) -> Graph {
    let mut g = Graph::new();
    for file in rust_files(src) {
        let Some(top) = top_module(src, &file) else {
            continue;
        };
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        let root = if top == "bin" { "hotbak" } else { "crate" };
        let node = g.entry(top.clone()).or_default();
        for m in imports(&text, root) {
            if m != top {
                node.entry(m).or_default().insert(
                    file.strip_prefix(src)
                        .unwrap_or(&file)
                        .display()
                        .to_string(),
                );
            }
        }
    }
    g
}

fn rank(module: &str) -> Option<usize> {
    LAYERS
        .iter()
        .position(|(_, members)| members.contains(&module))
}

/// Imports that go up the order, and modules the order does not place.
fn violations(g: &Graph) -> Vec<String> {
    let mut out = Vec::new();
    for (from, tos) in g {
        let Some(rf) = rank(from) else {
            out.push(format!(
                "module {from} is in no layer of app::layers::LAYERS"
            ));
            continue;
        };
        for (to, files) in tos {
            match rank(to) {
                None => out.push(format!("module {to} is in no layer (imported by {from})")),
                Some(rt) if rt < rf => out.push(format!(
                    "{from} ({}) imports {to} ({}), a layer above it, in {files:?}",
                    LAYERS[rf].0, LAYERS[rt].0
                )),
                Some(_) => {}
            }
        }
    }
    out
}

/// One import cycle between top-level modules, if there is any.
fn cycle(g: &Graph) -> Option<Vec<String>> {
    fn visit(
        g: &Graph,
        n: &str,
        state: &mut BTreeMap<String, u8>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match state.get(n) {
            Some(1) => {
                let start = path.iter().position(|p| p == n).unwrap_or(0);
                let mut c = path[start..].to_vec();
                c.push(n.to_owned());
                return Some(c);
            }
            Some(_) => return None,
            None => {}
        }
        state.insert(n.to_owned(), 1);
        path.push(n.to_owned());
        if let Some(tos) = g.get(n) {
            for to in tos.keys() {
                if let Some(c) = visit(g, to, state, path) {
                    return Some(c);
                }
            }
        }
        path.pop();
        state.insert(n.to_owned(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for n in g.keys() {
        if let Some(c) = visit(g, n, &mut state, &mut Vec::new()) {
            return Some(c);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
    }

    #[test]
    fn imports_obey_the_layer_order() {
        let g = graph(&src());
        assert!(g.len() >= 15, "scan found too little: {:?}", g.keys());
        let v = violations(&g);
        assert!(v.is_empty(), "layer violations:\n{}", v.join("\n"));
    }

    #[test]
    fn no_import_cycle_between_top_level_modules() {
        let g = graph(&src());
        assert_eq!(cycle(&g), None);
    }

    #[test]
    fn the_scanner_reads_paths_groups_and_skips_comments() {
        let text = "use crate::{format::path::RelPath, error::{Classify, ErrorClass}, self};\n\
                    // use crate::backup;\n\
                    let x = crate::sink::Error::Closed; mycrate::nope::x;\n\
                    /// [`crate::app`] in a doc comment\n\
                    use hotbak::extract;";
        let got: Vec<String> = imports(text, "crate").into_iter().collect();
        assert_eq!(got, ["error", "format", "sink"]);
        let got: Vec<String> = imports(text, "hotbak").into_iter().collect();
        assert_eq!(got, ["extract"]);
    }

    #[test]
    fn an_upward_import_and_a_cycle_are_caught() {
        let mut g = Graph::new();
        let edge = |g: &mut Graph, a: &str, b: &str| {
            g.entry(a.into())
                .or_default()
                .entry(b.into())
                .or_default()
                .insert("f.rs".into());
        };
        edge(&mut g, "format", "error");
        edge(&mut g, "backup", "sink");
        assert!(violations(&g).is_empty());
        assert_eq!(cycle(&g), None);
        edge(&mut g, "error", "backup");
        let v = violations(&g);
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].starts_with("error (ground) imports backup (engines)"));
        let mut g = Graph::new();
        edge(&mut g, "sink", "format");
        edge(&mut g, "sink", "mysql");
        edge(&mut g, "mysql", "sink");
        let c = cycle(&g).unwrap_or_default();
        assert!(
            c.windows(2)
                .any(|w| w == ["mysql", "sink"] || w == ["sink", "mysql"]),
            "{c:?}"
        );
        assert!(violations(&g).is_empty());
        edge(&mut g, "newmodule", "error");
        assert!(violations(&g)
            .iter()
            .any(|m| m.starts_with("module newmodule is in no layer")));
    }
}
