//! Compression and encryption through the real binaries (issue 4).
//!
//! One throwaway server (`Sandbox`) serves the whole module: the first test
//! that needs it starts it, takes every backup the module needs (a plain
//! `--target-dir` reference, the six `--stream` combinations of
//! none/zstd/lz4 × plain/encrypted, and mariabackup's plain and `--compress`
//! backups), keeps the results in memory and stops the server again. The
//! server takes no writes, so two backups of it agree on every data file;
//! only the files listed in [`VOLATILE`] legitimately differ between runs.
//!
//! Everything after that is offline: extraction with `xbextract`, decoding
//! with the stock `mbstream`, `zstd` and `lz4`, and tampering with the
//! stream through the xbstream codec (offsets and CRCs fixed, so that only
//! the cryptography can notice).

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use bytes::BytesMut;
use hotbak::format::xbstream::{self, ChunkType, Decoder};
use hotbak::sandbox::{Sandbox, SandboxOptions};
use sha2::{Digest, Sha256};

use crate::support::{bin, shared_dir, tool};

/// Files that differ between two backups of the same idle server: the redo
/// copy and the LSNs may move (background flushing), `xtrabackup_info` has
/// times and a uuid, and hotbak's own stream info and manifest describe the
/// stage chain and the stored names.
const VOLATILE: &[&str] = &[
    "ib_logfile0",
    "xtrabackup_info",
    "xtrabackup_checkpoints",
    "hotbak_manifest",
    "hotbak_stream_info",
];

/// The encryption key of the module (32 raw bytes).
const KEY: [u8; 32] = *b"hotbak transforms test key 32by!";

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Comp {
    None,
    Zstd,
    Lz4,
}

impl Comp {
    const ALL: [Comp; 3] = [Comp::None, Comp::Zstd, Comp::Lz4];

    fn suffix(self) -> &'static str {
        match self {
            Comp::None => "",
            Comp::Zstd => ".zst",
            Comp::Lz4 => ".lz4",
        }
    }

    fn arg(self) -> Option<&'static str> {
        match self {
            Comp::None => None,
            Comp::Zstd => Some("--compress=zstd"),
            Comp::Lz4 => Some("--compress=lz4"),
        }
    }

    /// The stock CLI that decodes this suffix.
    fn cli(self) -> Option<&'static str> {
        match self {
            Comp::None => None,
            Comp::Zstd => Some("zstd"),
            Comp::Lz4 => Some("lz4"),
        }
    }
}

/// Content digests of a directory tree: relative path → SHA-256.
type Tree = BTreeMap<String, [u8; 32]>;

/// What the server produced; the server itself is gone by the time a test reads this.
struct Fixture {
    /// `hotbak backup --target-dir` of the idle server.
    reference: Tree,
    /// `hotbak backup --stream` bytes per (compression, encrypted).
    streams: BTreeMap<(Comp, bool), Vec<u8>>,
    /// `mariabackup --backup --target-dir` and `--stream=xbstream --compress`.
    mariabackup: Option<(Tree, Vec<u8>)>,
}

static FIXTURE: OnceLock<Option<Fixture>> = OnceLock::new();

fn fixture() -> Option<&'static Fixture> {
    FIXTURE.get_or_init(make_fixture).as_ref()
}

fn make_fixture() -> Option<Fixture> {
    tool("mariadbd")?;
    tool("mariadb-install-db")?;
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut sb =
        Sandbox::create(&tmp.path().join("srv"), SandboxOptions::default()).expect("sandbox");
    let sock = sb.socket().to_owned();

    let refdir = tmp.path().join("ref");
    let out = Command::new(bin("hotbak"))
        .args([
            "backup",
            "--no-defaults",
            "-u",
            "root",
            "--progress",
            "none",
        ])
        .arg("--socket")
        .arg(&sock)
        .arg("--target-dir")
        .arg(&refdir)
        .stdin(Stdio::null())
        .output()
        .expect("hotbak runs");
    assert!(
        out.status.success(),
        "hotbak backup --target-dir: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reference = tree(&refdir);

    let keyfile = tmp.path().join("key");
    std::fs::write(&keyfile, KEY).expect("key file");
    let mut streams = BTreeMap::new();
    for comp in Comp::ALL {
        for enc in [false, true] {
            let mut extra: Vec<OsString> = Vec::new();
            if let Some(a) = comp.arg() {
                extra.push(a.into());
            }
            if enc {
                extra.push("--encrypt".into());
                extra.push("--encrypt-key-file".into());
                extra.push(keyfile.clone().into());
            }
            streams.insert((comp, enc), hotbak_stream(&sock, &extra));
        }
    }

    let mariabackup = tool("mariabackup").map(|mb| {
        let plain = tmp.path().join("mb-plain");
        let out = Command::new(&mb)
            .arg("--no-defaults")
            .arg("--backup")
            .arg("--user=root")
            .arg(format!("--socket={}", sock.display()))
            .arg(format!("--target-dir={}", plain.display()))
            .stdin(Stdio::null())
            .output()
            .expect("mariabackup runs");
        assert!(
            out.status.success(),
            "mariabackup --target-dir: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let scratch = tmp.path().join("mb-scratch");
        std::fs::create_dir_all(&scratch).expect("scratch");
        let out = Command::new(&mb)
            .arg("--no-defaults")
            .arg("--backup")
            .arg("--stream=xbstream")
            .arg("--compress")
            .arg("--user=root")
            .arg(format!("--socket={}", sock.display()))
            .arg(format!("--target-dir={}", scratch.display()))
            .stdin(Stdio::null())
            .output()
            .expect("mariabackup runs");
        assert!(
            out.status.success(),
            "mariabackup --stream --compress: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        (tree(&plain), out.stdout)
    });
    sb.stop().expect("sandbox stops");
    Some(Fixture {
        reference,
        streams,
        mariabackup,
    })
}

/// `hotbak backup --stream` of the server at `sock`; returns the stream.
fn hotbak_stream(sock: &Path, extra: &[OsString]) -> Vec<u8> {
    let out = Command::new(bin("hotbak"))
        .args(["backup", "--no-defaults", "-u", "root", "--stream"])
        .args(["--progress", "none"])
        .arg("--socket")
        .arg(sock)
        .args(extra)
        .stdin(Stdio::null())
        .output()
        .expect("hotbak runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "hotbak backup {extra:?}: {err}");
    assert!(
        err.contains("completed OK"),
        "hotbak backup {extra:?}: {err}"
    );
    out.stdout
}

// ------------------------------------------------------------------ helpers

struct Run {
    code: i32,
    stderr: String,
}

/// `xbextract ARGS` with `input` on stdin (`-C dest` is added when given).
fn xbextract(dest: Option<&Path>, args: &[OsString], env: &[(&str, &str)], input: &[u8]) -> Run {
    let mut cmd = Command::new(bin("xbextract"));
    if let Some(d) = dest {
        cmd.arg("-C").arg(d);
    }
    cmd.args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("xbextract starts");
    let mut stdin = child.stdin.take().expect("stdin");
    let out = std::thread::scope(|s| {
        s.spawn(move || {
            // xbextract may stop reading early (it found the error): a broken pipe is expected.
            let _ = stdin.write_all(input);
        });
        child.wait_with_output().expect("xbextract exits")
    });
    Run {
        code: out.status.code().unwrap_or(-1),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn os(args: &[&str]) -> Vec<OsString> {
    args.iter().map(OsString::from).collect()
}

fn key_args(keyfile: &Path) -> Vec<OsString> {
    vec!["--decrypt-key-file".into(), keyfile.into()]
}

/// Every regular file under `dir`, relative, sorted.
fn regular_files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    walk(dir, dir, &mut |rel, _| out.push(rel));
    out.sort();
    out
}

fn walk(root: &Path, dir: &Path, f: &mut dyn FnMut(String, &Path)) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd {
        let e = e.expect("dir entry");
        let p = e.path();
        let t = e.file_type().expect("file type");
        if t.is_dir() {
            walk(root, &p, f);
        } else {
            let rel = p
                .strip_prefix(root)
                .expect("under root")
                .to_string_lossy()
                .into_owned();
            f(rel, &p);
        }
    }
}

fn tree(dir: &Path) -> Tree {
    let mut t = Tree::new();
    walk(dir, dir, &mut |rel, p| {
        let data = std::fs::read(p).expect("read file");
        t.insert(rel, Sha256::digest(&data).into());
    });
    t
}

/// `t` without the names in `skip`.
fn without(t: &Tree, skip: &[&str]) -> Tree {
    t.iter()
        .filter(|(k, _)| !skip.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), *v))
        .collect()
}

/// Assert two trees are equal, listing the differences.
fn assert_same_tree(what: &str, want: &Tree, got: &Tree) {
    let keys: BTreeSet<&String> = want.keys().chain(got.keys()).collect();
    let diff: Vec<String> = keys
        .into_iter()
        .filter(|k| want.get(*k) != got.get(*k))
        .map(|k| match (want.get(k), got.get(k)) {
            (Some(_), None) => format!("missing {k}"),
            (None, Some(_)) => format!("extra {k}"),
            _ => format!("differs {k}"),
        })
        .collect();
    assert!(
        diff.is_empty(),
        "{what}: {} differences: {diff:?}",
        diff.len()
    );
}

/// Check an extracted hotbak backup against its own manifest, independently of
/// xbextract's check: every listed file exists with the listed size and digest,
/// and nothing else is there. Returns the manifest's (path, stored) pairs.
fn check_manifest(dir: &Path, want_chain: &[&str]) -> Vec<(String, String)> {
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("hotbak_manifest")).expect("manifest"))
            .expect("manifest is JSON");
    let chain: Vec<&str> = m["chain"]
        .as_array()
        .expect("chain")
        .iter()
        .map(|v| v.as_str().expect("chain entry"))
        .collect();
    assert_eq!(chain, want_chain, "manifest chain");
    let mut listed = BTreeSet::new();
    let mut names = Vec::new();
    for e in m["files"].as_array().expect("files") {
        let path = e["path"].as_str().expect("path");
        let stored = e["stored"].as_str().expect("stored");
        let data = std::fs::read(dir.join(path)).unwrap_or_else(|err| panic!("{path}: {err}"));
        assert_eq!(Some(data.len() as u64), e["size"].as_u64(), "{path}: size");
        // The digest field: `sha256` or `blake3`, whichever the manifest carries.
        if let Some(h) = e.get("sha256").and_then(|v| v.as_str()) {
            assert_eq!(hex::encode(Sha256::digest(&data)), h, "{path}: sha256");
        } else if let Some(h) = e.get("blake3").and_then(|v| v.as_str()) {
            assert_eq!(blake3::hash(&data).to_hex().as_str(), h, "{path}: blake3");
        } else {
            panic!("{path}: manifest entry without a digest: {e}");
        }
        listed.insert(path.to_owned());
        names.push((path.to_owned(), stored.to_owned()));
    }
    for f in regular_files(dir) {
        if f != "hotbak_manifest" && f != "hotbak_stream_info" {
            assert!(listed.contains(&f), "{f} extracted but not in the manifest");
        }
    }
    names
}

/// The stage chain hotbak records for a combination.
fn chain_of(comp: Comp, enc: bool) -> Vec<&'static str> {
    let mut c = Vec::new();
    match comp {
        Comp::None => {}
        Comp::Zstd => c.push("zstd"),
        Comp::Lz4 => c.push("lz4"),
    }
    if enc {
        c.push("aes256gcm");
    }
    c
}

/// Decode every `suffix` file under `raw` with the stock CLI `cli -d -c` and
/// compare with the same file (without the suffix) under `decoded`. Returns the count.
fn stock_decode_matches(cli: &Path, suffix: &str, raw: &Path, decoded: &Path) -> usize {
    let mut n = 0;
    for f in regular_files(raw) {
        let Some(plain) = f.strip_suffix(suffix) else {
            continue;
        };
        let out = Command::new(cli)
            .args(["-d", "-c", "-q"])
            .arg(raw.join(&f))
            .stdin(Stdio::null())
            .output()
            .expect("stock decoder runs");
        assert!(
            out.status.success(),
            "{} -d {f}: {}",
            cli.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let want = std::fs::read(decoded.join(plain)).unwrap_or_else(|e| panic!("{plain}: {e}"));
        assert!(
            out.stdout == want,
            "{} -d {f} differs from xbextract's {plain} ({} vs {} bytes)",
            cli.display(),
            out.stdout.len(),
            want.len()
        );
        n += 1;
    }
    n
}

// ------------------------------------------------------------- stream surgery

/// One xbstream chunk, as the surgery functions edit it.
#[derive(Clone, Debug)]
struct Ch {
    eof: bool,
    path: Vec<u8>,
    payload: Vec<u8>,
}

fn chunks(stream: &[u8]) -> Vec<Ch> {
    let mut buf = BytesMut::from(stream);
    let mut dec = Decoder::new();
    let mut out = Vec::new();
    while let Some(c) = dec.decode(&mut buf).expect("valid stream") {
        let eof = match c.ty {
            ChunkType::Payload => false,
            ChunkType::Eof => true,
            other => panic!("unexpected chunk type {other:?} in a hotbak stream"),
        };
        out.push(Ch {
            eof,
            path: c.path.to_vec(),
            payload: c.payload.to_vec(),
        });
    }
    dec.decode_eof(&buf)
        .expect("stream ends at a chunk boundary");
    out
}

/// Encode, recomputing every file offset (and so every CRC) from the chunk order.
fn encode(chunks: &[Ch]) -> Vec<u8> {
    let mut next: BTreeMap<&[u8], u64> = BTreeMap::new();
    let mut out = Vec::new();
    for c in chunks {
        if c.eof {
            xbstream::put_eof(&mut out, &c.path);
        } else {
            let off = next.entry(&c.path).or_insert(0);
            xbstream::put_payload(&mut out, &c.path, *off, &c.payload);
            *off += c.payload.len() as u64;
        }
    }
    out
}

/// Indexes of the `P` chunks of `path`.
fn payload_idx(chunks: &[Ch], path: &str) -> Vec<usize> {
    chunks
        .iter()
        .enumerate()
        .filter(|(_, c)| !c.eof && c.path == path.as_bytes())
        .map(|(i, _)| i)
        .collect()
}

/// Swap the whole contents of two members: A's `P` chunks carry B's bytes
/// (in B's chunking) and vice versa.
fn swap_members(chunks: &[Ch], a: &str, b: &str) -> Vec<Ch> {
    let payloads = |p: &str| -> Vec<Vec<u8>> {
        payload_idx(chunks, p)
            .into_iter()
            .map(|i| chunks[i].payload.clone())
            .collect()
    };
    let (pa, pb) = (payloads(a), payloads(b));
    let mut out = Vec::new();
    let mut emitted: BTreeSet<Vec<u8>> = BTreeSet::new();
    for c in chunks {
        let other = if c.path == a.as_bytes() {
            Some(&pb)
        } else if c.path == b.as_bytes() {
            Some(&pa)
        } else {
            None
        };
        match other {
            Some(src) if !c.eof => {
                if emitted.insert(c.path.clone()) {
                    for p in src {
                        out.push(Ch {
                            eof: false,
                            path: c.path.clone(),
                            payload: p.clone(),
                        });
                    }
                }
            }
            _ => out.push(c.clone()),
        }
    }
    out
}

// -------------------------------------------------------------------- tests

/// Each of none/zstd/lz4 × plain/encrypted, extracted in one pass, equals the
/// plain `--target-dir` backup of the same idle server and its own manifest;
/// the stock `zstd -d` / `lz4 -d` decode the `.zst` / `.lz4` members that the
/// stock `mbstream -x` extracts to the same bytes; `xtrabackup_checkpoints` is
/// stored uncompressed.
#[test]
fn transforms_round_trip_every_combination() {
    let Some(fx) = fixture() else { return };
    let tmp = tempfile::tempdir().expect("tempdir");
    let keyfile = tmp.path().join("key");
    std::fs::write(&keyfile, KEY).expect("key");
    let want = without(&fx.reference, VOLATILE);
    assert!(
        want.keys().any(|k| k == "ibdata1") && want.keys().any(|k| k.ends_with(".ibd")),
        "reference backup looks empty: {:?}",
        want.keys().collect::<Vec<_>>()
    );
    let mbstream = tool("mbstream");
    for (&(comp, enc), stream) in &fx.streams {
        let what = format!("{comp:?}{}", if enc { "+aes" } else { "" });
        let dest = tmp.path().join(format!("x-{what}"));
        let mut args = os(&["-x"]);
        let mut env = Vec::new();
        let hex_key = hex::encode(KEY);
        if enc {
            if comp == Comp::Lz4 {
                // The environment-variable key source, with a hex key.
                args.extend(os(&["--decrypt-key-env", "HOTBAK_TEST_KEY"]));
                env.push(("HOTBAK_TEST_KEY", hex_key.as_str()));
            } else {
                args.extend(key_args(&keyfile));
            }
        }
        let r = xbextract(Some(&dest), &args, &env, stream);
        assert_eq!(r.code, 0, "{what}: {}", r.stderr);
        assert!(
            r.stderr
                .contains("every file verified against the manifest"),
            "{what}: {}",
            r.stderr
        );
        let names = check_manifest(&dest, &chain_of(comp, enc));
        assert_same_tree(&what, &want, &without(&tree(&dest), VOLATILE));

        // Stored names: the suffixes, and xtrabackup_checkpoints never compressed.
        let enc_sfx = if enc { ".hbenc" } else { "" };
        for (path, stored) in &names {
            let want_stored = if path == "xtrabackup_checkpoints" {
                format!("{path}{enc_sfx}")
            } else {
                format!("{path}{}{enc_sfx}", comp.suffix())
            };
            assert_eq!(stored, &want_stored, "{what}: stored name of {path}");
        }

        // Stock decoders on the stock extractor's output.
        if let (Some(cli), Some(mbs)) = (comp.cli(), mbstream.as_ref()) {
            if enc {
                continue;
            }
            let Some(cli) = tool(cli) else { continue };
            let raw = tmp.path().join(format!("mbstream-{what}"));
            std::fs::create_dir_all(&raw).expect("mkdir");
            let mut child = Command::new(mbs)
                .arg("-x")
                .arg("-C")
                .arg(&raw)
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("mbstream starts");
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(stream)
                .expect("feed mbstream");
            let out = child.wait_with_output().expect("mbstream exits");
            assert!(
                out.status.success(),
                "mbstream -x: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(
                raw.join("xtrabackup_checkpoints").is_file(),
                "{what}: xtrabackup_checkpoints is not stored uncompressed"
            );
            let n = stock_decode_matches(&cli, comp.suffix(), &raw, &dest);
            assert_eq!(
                n,
                names.len() - 1,
                "{what}: every file but xtrabackup_checkpoints is compressed"
            );
            eprintln!("{what}: {n} members decoded by stock {}", cli.display());
        }
    }
}

/// `xbextract --no-decompress` keeps the standard frames (decrypting first
/// when a key is given), and the stock CLIs decode them to what the one-pass
/// extraction wrote.
#[test]
fn transforms_no_decompress_keeps_stock_frames() {
    let Some(fx) = fixture() else { return };
    let tmp = tempfile::tempdir().expect("tempdir");
    let keyfile = tmp.path().join("key");
    std::fs::write(&keyfile, KEY).expect("key");
    let mut failures = Vec::new();
    for comp in [Comp::Zstd, Comp::Lz4] {
        let Some(cli) = tool(comp.cli().expect("compressed")) else {
            continue;
        };
        for enc in [false, true] {
            let what = format!("{comp:?}{}", if enc { "+aes" } else { "" });
            let stream = &fx.streams[&(comp, enc)];
            let keys = if enc { key_args(&keyfile) } else { Vec::new() };
            let dec = tmp.path().join(format!("dec-{what}"));
            let mut args = os(&["-x"]);
            args.extend(keys.clone());
            let r = xbextract(Some(&dec), &args, &[], stream);
            assert_eq!(r.code, 0, "{what}: {}", r.stderr);

            let raw = tmp.path().join(format!("raw-{what}"));
            let mut args = os(&["-x", "--no-decompress"]);
            args.extend(keys);
            let r = xbextract(Some(&raw), &args, &[], stream);
            if r.code != 0 {
                failures.push(format!(
                    "{what}: xbextract --no-decompress exit {}: {}",
                    r.code,
                    r.stderr.trim()
                ));
                continue;
            }
            let n = stock_decode_matches(&cli, comp.suffix(), &raw, &dec);
            assert!(n > 100, "{what}: only {n} compressed members");
            assert!(
                raw.join("xtrabackup_checkpoints").is_file(),
                "{what}: xtrabackup_checkpoints"
            );
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// mariabackup's own `--compress` (qpress) archive of the idle server, extracted
/// with `xbextract --decompress`, equals mariabackup's uncompressed backup.
#[test]
fn transforms_peer_qpress_archive_equals_peer_plain_backup() {
    let Some(fx) = fixture() else { return };
    let Some((plain, qp)) = &fx.mariabackup else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let dest = tmp.path().join("x");
    let r = xbextract(Some(&dest), &os(&["-x", "--decompress"]), &[], qp);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let got = tree(&dest);
    assert!(
        !got.keys().any(|k| k.ends_with(".qp")),
        "left compressed: {:?}",
        got.keys()
            .filter(|k| k.ends_with(".qp"))
            .collect::<Vec<_>>()
    );
    // Between the two runs: the redo copy and its LSNs (ib_logfile0,
    // xtrabackup_checkpoints) and xtrabackup_info (times, uuid, the command
    // line, `compressed = compressed`). Nothing else differs on an idle server.
    let skip = ["xtrabackup_info", "ib_logfile0", "xtrabackup_checkpoints"];
    assert!(
        plain.contains_key("ibdata1"),
        "mariabackup backup looks empty"
    );
    assert_same_tree(
        "mariabackup --compress vs plain",
        &without(plain, &skip),
        &without(&got, &skip),
    );
    assert!(got.contains_key("xtrabackup_info") && got.contains_key("ib_logfile0"));
}

/// The committed mariabackup `--compress` vector decodes to its published digests.
#[test]
fn transforms_peer_qpress_vector() {
    let Some(shared) = shared_dir() else {
        eprintln!("SKIP: ../shared not present");
        return;
    };
    let dir = shared.join("vectors/mariabackup");
    let stream = std::fs::read(dir.join("mb_full_compress_qp.xbstream")).expect("vector");
    let tmp = tempfile::tempdir().expect("tempdir");
    let dest = tmp.path().join("x");
    let r = xbextract(Some(&dest), &os(&["-x", "--decompress"]), &[], &stream);
    assert_eq!(r.code, 0, "{}", r.stderr);
    // `sha256 size path` per line.
    let parse = |name: &str| -> BTreeMap<String, (String, u64)> {
        std::fs::read_to_string(dir.join(name))
            .expect("digest list")
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let mut it = l.splitn(3, char::is_whitespace).filter(|s| !s.is_empty());
                let h = it.next().expect("hash").to_owned();
                let rest = l[h.len()..].trim_start();
                let (size, path) = rest.split_once(char::is_whitespace).expect("size path");
                (
                    path.trim_start().to_owned(),
                    (h, size.parse().expect("size")),
                )
            })
            .collect()
    };
    let mut want = parse("mb_full_compress_qp.decoded.sha256");
    // The one member mariabackup stores uncompressed.
    let extracted = parse("mb_full_compress_qp.extracted.sha256");
    let ck = extracted
        .get("xtrabackup_checkpoints")
        .expect("checkpoints listed")
        .clone();
    want.insert("xtrabackup_checkpoints".into(), ck);
    let mut got = BTreeMap::new();
    walk(&dest, &dest, &mut |rel, p| {
        let data = std::fs::read(p).expect("read");
        got.insert(rel, (hex::encode(Sha256::digest(&data)), data.len() as u64));
    });
    assert_eq!(want.len(), 213);
    let diff: Vec<&String> = want
        .keys()
        .chain(got.keys())
        .filter(|k| want.get(*k) != got.get(*k))
        .collect();
    assert!(
        diff.is_empty(),
        "differs from the published digests: {diff:?}"
    );
}

/// Asserts a tampered stream fails the right way: exit 3 (or `codes`), a
/// message naming one of `names`, and nothing left in `dest` (no file with its
/// final name, no `.hbpart`).
fn assert_refused(case: &str, dest: &Path, r: &Run, codes: &[i32], names: &[&str]) {
    eprintln!("{case}: exit {}: {}", r.code, r.stderr.trim());
    assert!(
        codes.contains(&r.code),
        "{case}: exit {} (want {codes:?}): {}",
        r.code,
        r.stderr
    );
    assert!(
        names.iter().any(|n| r.stderr.contains(n)),
        "{case}: stderr names none of {names:?}: {}",
        r.stderr
    );
    let left = regular_files(dest);
    assert!(left.is_empty(), "{case}: files left behind: {left:?}");
}

/// Tampering with an encrypted stream, with the xbstream layer kept valid so
/// that only the envelope (or the manifest) can notice.
#[test]
fn transforms_encrypted_tampering_detected() {
    let Some(fx) = fixture() else { return };
    let tmp = tempfile::tempdir().expect("tempdir");
    let keyfile = tmp.path().join("key");
    std::fs::write(&keyfile, KEY).expect("key");
    let keys = key_args(&keyfile);
    let mut n = 0;
    // Every case must be caught by the envelope itself ("(decrypt)" in the
    // message), not only later by the manifest; one worker and two alternate.
    let mut run = |case: &str, stream: &[u8], codes: &[i32], names: &[&str]| {
        n += 1;
        let dest = tmp.path().join(format!("t{n}"));
        let mut args = os(&["-x", "--no-sync", "-p", if n % 2 == 0 { "2" } else { "1" }]);
        args.extend(keys.clone());
        let r = xbextract(Some(&dest), &args, &[], stream);
        assert_refused(case, &dest, &r, codes, names);
        assert!(
            r.stderr.contains("(decrypt)"),
            "{case}: not refused by the envelope: {}",
            r.stderr
        );
    };

    for comp in [Comp::None, Comp::Zstd] {
        let stream = &fx.streams[&(comp, true)];
        let ch = chunks(stream);
        // The surgery itself changes nothing.
        assert!(encode(&ch) == *stream, "{comp:?}: codec round trip");
        let big = format!("ibdata1{}.hbenc", comp.suffix());
        let p = payload_idx(&ch, &big);
        assert!(p.len() >= 6, "{comp:?}: {big} has only {} chunks", p.len());

        // A flipped byte in a record (ciphertext), and in the envelope header (salt).
        for (i, at) in [(p[3], ch[p[3]].payload.len() / 2), (p[0], 30)] {
            let mut t = ch.clone();
            t[i].payload[at] ^= 0x01;
            run(
                &format!("{comp:?}: flipped byte {at} of chunk {i}"),
                &encode(&t),
                &[3],
                &["ibdata1"],
            );
        }
        // A dropped record.
        let mut t = ch.clone();
        t.remove(p[2]);
        run(
            &format!("{comp:?}: dropped"),
            &encode(&t),
            &[3],
            &["ibdata1"],
        );
        // Two records reordered.
        let mut t = ch.clone();
        t.swap(p[2], p[3]);
        run(
            &format!("{comp:?}: reordered"),
            &encode(&t),
            &[3],
            &["ibdata1"],
        );
        // A record duplicated.
        let mut t = ch.clone();
        t.insert(p[2], ch[p[2]].clone());
        run(
            &format!("{comp:?}: duplicated"),
            &encode(&t),
            &[3],
            &["ibdata1"],
        );
        // The file cut at each of its own chunk boundaries (its E chunk kept):
        // k = chunks kept (the header and k - 1 records).
        for k in 1..p.len() {
            let mut t = ch.clone();
            for &i in p[k..].iter().rev() {
                t.remove(i);
            }
            run(
                &format!("{comp:?}: {big} cut after its chunk {k}"),
                &encode(&t),
                &[3],
                &["ibdata1"],
            );
        }
        // Two members' contents swapped.
        let a = format!("mysql/innodb_table_stats.ibd{}.hbenc", comp.suffix());
        let b = format!("mysql/innodb_index_stats.ibd{}.hbenc", comp.suffix());
        assert!(!payload_idx(&ch, &a).is_empty() && !payload_idx(&ch, &b).is_empty());
        run(
            &format!("{comp:?}: swapped"),
            &encode(&swap_members(&ch, &a, &b)),
            &[3],
            &["innodb_table_stats", "innodb_index_stats"],
        );
        // A wrong key: 3 (authentication) or 2 (usage), naming the file and the key.
        let dest = tmp.path().join(format!("wrongkey-{comp:?}"));
        let other = tmp.path().join("other-key");
        std::fs::write(&other, hex::encode([7u8; 32])).expect("key");
        let mut a = os(&["-x", "--no-sync"]);
        a.extend(key_args(&other));
        let r = xbextract(Some(&dest), &a, &[], stream);
        assert_refused(
            &format!("{comp:?}: wrong key"),
            &dest,
            &r,
            &[2, 3],
            &[".hbenc"],
        );
        assert!(r.stderr.contains("wrong key"), "{}", r.stderr);
    }
}

/// An encrypted stream cut at every chunk boundary fails with exit 3 naming an
/// unfinished file (or the missing manifest), and leaves nothing behind.
#[test]
fn transforms_encrypted_cut_at_every_chunk_boundary() {
    let Some(fx) = fixture() else { return };
    let tmp = tempfile::tempdir().expect("tempdir");
    let keyfile = tmp.path().join("key");
    std::fs::write(&keyfile, KEY).expect("key");
    let mut args = os(&["-x", "--no-sync"]);
    args.extend(key_args(&keyfile));
    let stream = &fx.streams[&(Comp::Zstd, true)];
    let ch = chunks(stream);
    // (end offset of chunk i, names stderr may use: the unfinished files or the manifest)
    let mut cuts: Vec<(usize, Vec<String>)> = Vec::new();
    let mut open: BTreeSet<String> = BTreeSet::new();
    let mut end = 0;
    for c in &ch[..ch.len() - 1] {
        end += encode(std::slice::from_ref(c)).len();
        let p = String::from_utf8_lossy(&c.path).into_owned();
        if c.eof {
            open.remove(&p);
        } else {
            open.insert(p);
        }
        let names = if open.is_empty() {
            vec!["hotbak_manifest".to_owned()]
        } else {
            open.iter().cloned().collect()
        };
        cuts.push((end, names));
    }
    assert_eq!(end + encode(&ch[ch.len() - 1..]).len(), stream.len());
    let failures = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for part in 0..2 {
            let (cuts, args, failures, tmp) = (&cuts, &args, &failures, tmp.path());
            s.spawn(move || {
                for (i, (at, names)) in cuts.iter().enumerate().skip(part).step_by(2) {
                    let dest = tmp.join(format!("cut{i}"));
                    let r = xbextract(Some(&dest), args, &[], &stream[..*at]);
                    let names: Vec<&str> = names.iter().map(String::as_str).collect();
                    let res = std::panic::catch_unwind(|| {
                        assert_refused(&format!("cut at {at}"), &dest, &r, &[3], &names);
                    });
                    if let Err(e) = res {
                        let msg = e
                            .downcast_ref::<String>()
                            .cloned()
                            .unwrap_or_else(|| "panic".into());
                        failures.lock().expect("lock").push(msg);
                    }
                    let _ = std::fs::remove_dir_all(&dest);
                }
            });
        }
    });
    let failures = failures.into_inner().expect("lock");
    assert!(
        failures.is_empty(),
        "{} of {} cuts: {}",
        failures.len(),
        cuts.len(),
        failures
            .iter()
            .take(5)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    eprintln!("{} cuts refused", cuts.len());
}

/// A compressed-only stream whose `.zst` (or `.lz4`) member is corrupted (CRC
/// fixed, so only the decoder or the manifest can notice) fails with exit 3
/// naming the file, and leaves nothing behind.
#[test]
fn transforms_corrupt_compressed_member_detected() {
    let Some(fx) = fixture() else { return };
    let tmp = tempfile::tempdir().expect("tempdir");
    for comp in [Comp::Zstd, Comp::Lz4] {
        let ch = chunks(&fx.streams[&(comp, false)]);
        let name = format!("mysql/innodb_index_stats.ibd{}", comp.suffix());
        let p = payload_idx(&ch, &name);
        assert!(!p.is_empty(), "{name} not in the stream");
        let len = ch[p[0]].payload.len();
        // In the frame header, in the middle, in the trailing checksum.
        for at in [5, len / 2, len - 2] {
            let mut t = ch.clone();
            t[p[0]].payload[at] ^= 0x40;
            let dest = tmp.path().join(format!("{comp:?}-{at}"));
            let r = xbextract(Some(&dest), &os(&["-x", "--no-sync"]), &[], &encode(&t));
            assert_refused(
                &format!("{name}: byte {at} of {len}"),
                &dest,
                &r,
                &[3],
                &["innodb_index_stats.ibd"],
            );
        }
    }
}

/// A key is needed for an encrypted hotbak stream: without one, a usage error (2).
#[test]
fn transforms_encrypted_without_key_is_usage_error() {
    let Some(fx) = fixture() else { return };
    let tmp = tempfile::tempdir().expect("tempdir");
    let dest = tmp.path().join("x");
    let r = xbextract(
        Some(&dest),
        &os(&["-x", "--no-sync"]),
        &[],
        &fx.streams[&(Comp::Zstd, true)],
    );
    assert_refused("no key", &dest, &r, &[2], &[".hbenc"]);
    assert!(r.stderr.contains("--decrypt-key-file"), "{}", r.stderr);
}
