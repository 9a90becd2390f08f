//! Issue 2: xbstream interoperability in both directions.
//!
//! - archives written by `xbextract -c` extract with the stock `mbstream -x` byte for byte;
//! - archives written by `mbstream -c` extract with `xbextract -x` (`-p 1` and `-p 4`);
//! - the recorded vectors in `../shared/vectors` extract to their `.extracted.sha256` lists,
//!   and the two hostile ones (absolute and `..` paths) fail with exit code 3.
//!
//! The helpers at the top are shared by the other `xb_*` modules.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use bytes::BytesMut;
use hotbak::format::manifest::{Manifest, StreamInfo, MANIFEST_NAME, STREAM_INFO_NAME};
use hotbak::format::xbstream::{Chunk, ChunkType, Decoder, DEFAULT_CHUNK_LEN};
use sha2::{Digest, Sha256};

use crate::support;

/// The stderr warning of a stream without a hotbak manifest.
pub(crate) const STOCK_WARNING: &str =
    "stream has no hotbak manifest (stock archive): completeness cannot be proven";

/// Outcome of one process run.
#[derive(Debug)]
pub(crate) struct Run {
    pub code: i32,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

/// Run `prog args` with `stdin` piped in (written from a thread; a reader that
/// exits early just ends the write).
pub(crate) fn run_with_stdin(prog: &Path, args: &[&str], cwd: Option<&Path>, stdin: &[u8]) -> Run {
    let mut cmd = Command::new(prog);
    cmd.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(d) = cwd {
        cmd.current_dir(d);
    }
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", prog.display()));
    let mut sin = child.stdin.take().expect("piped stdin");
    let out = std::thread::scope(|s| {
        s.spawn(move || {
            // EPIPE when the extractor stops early is expected.
            let _ = sin.write_all(stdin);
        });
        child.wait_with_output().expect("wait for child")
    });
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: out.stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `xbextract -x -C dir --no-sync EXTRA...` on `stream`.
pub(crate) fn xb_extract(dir: &Path, extra: &[&str], stream: &[u8]) -> Run {
    let d = dir.to_str().expect("utf-8 temp path");
    let mut args = vec!["-x", "-C", d, "--no-sync"];
    args.extend_from_slice(extra);
    run_with_stdin(&support::bin("xbextract"), &args, None, stream)
}

/// `xbextract -c [EXTRA...] FILES...` run in `src`; returns the archive.
pub(crate) fn xb_create(src: &Path, extra: &[&str], files: &[&str]) -> Vec<u8> {
    let mut args: Vec<&str> = vec!["-c"];
    args.extend_from_slice(extra);
    args.extend_from_slice(files);
    let r = run_with_stdin(&support::bin("xbextract"), &args, Some(src), b"");
    assert_eq!(r.code, 0, "xbextract -c {files:?} failed: {}", r.stderr);
    r.stdout
}

/// Deterministic pseudo-random bytes (xorshift64*), fast enough for tens of MiB.
pub(crate) fn gen_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        v.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    v.truncate(len);
    v
}

/// Write `files` (relative path → content) under `root`, creating parents.
pub(crate) fn write_tree(root: &Path, files: &BTreeMap<String, Vec<u8>>) {
    for (p, data) in files {
        let full = root.join(p);
        std::fs::create_dir_all(full.parent().expect("has a parent")).expect("mkdir");
        std::fs::write(&full, data).expect("write source file");
    }
}

/// Every regular file under `root` (relative path with `/` → content). Panics on
/// anything that is neither a file nor a directory (a symlink would be a bug here).
pub(crate) fn read_tree(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd {
            let e = e.expect("dir entry");
            let p = e.path();
            let ft = std::fs::symlink_metadata(&p).expect("lstat").file_type();
            if ft.is_dir() {
                walk(root, &p, out);
            } else if ft.is_file() {
                let rel = p
                    .strip_prefix(root)
                    .expect("under root")
                    .to_str()
                    .expect("utf-8")
                    .to_owned();
                out.insert(rel, std::fs::read(&p).expect("read"));
            } else {
                panic!("unexpected non-regular entry {}", p.display());
            }
        }
    }
    walk(root, root, &mut out);
    out
}

/// Names of the regular files under `root`.
pub(crate) fn file_names(root: &Path) -> Vec<String> {
    read_tree(root).into_keys().collect()
}

/// Entries directly inside `dir`, sorted.
pub(crate) fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

pub(crate) fn sha256_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// Decode a whole stream with the codec; panics on any error.
pub(crate) fn decode_all(bytes: &[u8]) -> Vec<(Chunk, u64)> {
    let mut d = Decoder::new();
    let mut buf = BytesMut::from(bytes);
    let mut out = Vec::new();
    while let Some(c) = d.decode(&mut buf).expect("valid stream") {
        out.push((c, d.offset()));
    }
    d.decode_eof(&buf).expect("stream ends at a chunk boundary");
    out
}

/// A datadir-shaped source tree within mbstream's one-level directory limit.
fn interop_tree() -> BTreeMap<String, Vec<u8>> {
    let mut t = BTreeMap::new();
    t.insert("empty.txt".to_owned(), Vec::new());
    t.insert("hello.txt".to_owned(), b"hello, xbstream\n".to_vec());
    t.insert("big.bin".to_owned(), gen_bytes(1, 10 * 1024 * 1024 + 4097));
    t.insert(
        "name with spaces.txt".to_owned(),
        b"spaces in the name\n".to_vec(),
    );
    t.insert("db/t1.ibd".to_owned(), gen_bytes(2, 3 * 16384));
    t.insert("db/empty.frm".to_owned(), Vec::new());
    t.insert("my db/t 1.ibd".to_owned(), gen_bytes(3, 65536 + 7));
    t
}

/// `xbextract -c` then stock `mbstream -x`: byte for byte, with and without the manifest.
#[test]
fn xb_interop_xbextract_create_mbstream_extract() {
    let Some(mbstream) = support::tool("mbstream") else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("src");
    let tree = interop_tree();
    write_tree(&src, &tree);
    let names: Vec<&str> = tree.keys().map(String::as_str).collect();
    for manifest in [true, false] {
        let extra: &[&str] = if manifest { &[] } else { &["--no-manifest"] };
        let archive = xb_create(&src, extra, &names);

        // Structure: only P and E chunks, flags 0, payloads within the stock chunk size,
        // big.bin split into two P chunks, every file ends with E.
        let chunks = decode_all(&archive);
        for (c, _) in &chunks {
            assert!(
                matches!(c.ty, ChunkType::Payload | ChunkType::Eof),
                "hotbak wrote {:?}",
                c.ty
            );
            assert_eq!(c.flags, 0);
            assert!(c.payload.len() <= DEFAULT_CHUNK_LEN);
        }
        let big_p = chunks
            .iter()
            .filter(|(c, _)| c.ty == ChunkType::Payload && &c.path[..] == b"big.bin")
            .count();
        assert_eq!(big_p, 2, "a 10 MiB + 4097 file is two P chunks");
        let paths_in_order: Vec<String> = chunks
            .iter()
            .filter(|(c, _)| c.ty == ChunkType::Eof)
            .map(|(c, _)| c.path_lossy())
            .collect();
        if manifest {
            assert_eq!(
                paths_in_order.first().map(String::as_str),
                Some(STREAM_INFO_NAME)
            );
            assert_eq!(
                paths_in_order.last().map(String::as_str),
                Some(MANIFEST_NAME)
            );
            assert_eq!(paths_in_order.len(), tree.len() + 2);
        } else {
            assert_eq!(paths_in_order.len(), tree.len());
        }

        let out = tmp.path().join(format!("out-{manifest}"));
        std::fs::create_dir(&out).expect("mkdir");
        let r = run_with_stdin(
            &mbstream,
            &["-x", "-C", out.to_str().expect("utf-8")],
            None,
            &archive,
        );
        assert_eq!(r.code, 0, "mbstream -x: {}", r.stderr);
        assert!(
            r.stderr.trim().is_empty(),
            "mbstream complained: {}",
            r.stderr
        );
        let mut got = read_tree(&out);
        if manifest {
            let m = Manifest::from_bytes(
                &got.remove(MANIFEST_NAME)
                    .expect("manifest extracted by mbstream"),
            )
            .expect("valid manifest");
            let info = StreamInfo::from_bytes(&got.remove(STREAM_INFO_NAME).expect("stream info"))
                .expect("valid stream info");
            assert!(info.chain.is_empty() && m.chain.is_empty());
            let listed: BTreeMap<&str, (&str, u64, &str)> = m
                .files
                .iter()
                .map(|e| {
                    (
                        e.path.as_str(),
                        (e.stored.as_str(), e.size, e.blake3.as_str()),
                    )
                })
                .collect();
            assert_eq!(listed.len(), tree.len());
            for (p, data) in &tree {
                let (stored, size, sha) = listed[p.as_str()];
                assert_eq!(
                    (stored, size, sha),
                    (
                        p.as_str(),
                        data.len() as u64,
                        blake3::hash(data).to_hex().as_str()
                    ),
                    "{p}"
                );
            }
        }
        assert_eq!(
            got.keys().collect::<Vec<_>>(),
            tree.keys().collect::<Vec<_>>()
        );
        for (p, data) in &tree {
            assert!(got[p] == *data, "{p} differs after mbstream -x");
        }
    }
}

/// `xbextract -c` refuses paths that are not relative (usage error, nothing written).
#[test]
fn xb_interop_create_refuses_escaping_paths() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("src");
    std::fs::create_dir(&src).expect("mkdir");
    std::fs::write(tmp.path().join("up.txt"), b"x").expect("write");
    for bad in [
        "../up.txt",
        tmp.path().join("up.txt").to_str().expect("utf-8"),
    ] {
        let r = run_with_stdin(&support::bin("xbextract"), &["-c", bad], Some(&src), b"");
        assert_eq!(r.code, 2, "-c {bad}: {}", r.stderr);
        assert!(
            r.stdout.is_empty(),
            "-c {bad} wrote {} bytes",
            r.stdout.len()
        );
        assert!(
            r.stderr.contains(bad),
            "stderr does not name {bad}: {}",
            r.stderr
        );
    }
}

/// Stock `mbstream -c` then `xbextract -x` with one and four workers.
#[test]
fn xb_interop_mbstream_create_xbextract_extract() {
    let Some(mbstream) = support::tool("mbstream") else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("src");
    let mut tree = interop_tree();
    // xbextract has no depth limit; mbstream -c does not either.
    tree.insert("nested/a/b/c/deep.bin".to_owned(), gen_bytes(4, 4096));
    write_tree(&src, &tree);
    let names: Vec<&str> = tree.keys().map(String::as_str).collect();
    let mut args = vec!["-c"];
    args.extend_from_slice(&names);
    let r = run_with_stdin(&mbstream, &args, Some(&src), b"");
    assert_eq!(r.code, 0, "mbstream -c: {}", r.stderr);
    let archive = r.stdout;
    assert!(decode_all(&archive).len() >= tree.len());
    for p in ["1", "4"] {
        let out = tmp.path().join(format!("out-p{p}"));
        let r = xb_extract(&out, &["-p", p], &archive);
        assert_eq!(r.code, 0, "-p {p}: {}", r.stderr);
        assert!(
            r.stderr.contains(STOCK_WARNING),
            "-p {p}: no stock-stream warning: {}",
            r.stderr
        );
        let got = read_tree(&out);
        assert_eq!(
            got.keys().collect::<Vec<_>>(),
            tree.keys().collect::<Vec<_>>(),
            "-p {p}"
        );
        for (path, data) in &tree {
            assert!(got[path] == *data, "-p {p}: {path} differs");
        }
    }
}

/// Parse a vectors `.extracted.sha256` list: `sha256  size  path` (paths may hold spaces).
fn expected_list(p: &Path) -> BTreeMap<String, (u64, String)> {
    let text = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let mut it = l.splitn(3, "  ");
            let sha = it.next().expect("sha").to_owned();
            let size: u64 = it
                .next()
                .expect("size")
                .trim()
                .parse()
                .expect("numeric size");
            let path = it.next().expect("path").to_owned();
            (path, (size, sha))
        })
        .collect()
}

/// The shared reference material: `$HOTBAK_SHARED_DIR`, else `../shared` beside the repo.
pub(crate) fn shared_dir() -> Option<PathBuf> {
    match std::env::var_os("HOTBAK_SHARED_DIR") {
        Some(d) => Some(PathBuf::from(d)),
        None => support::shared_dir(),
    }
}

pub(crate) fn vectors() -> Option<PathBuf> {
    let d = shared_dir().map(|s| s.join("vectors"));
    match d {
        Some(d) if d.is_dir() => Some(d),
        _ => {
            if std::env::var("HOTBAK_REQUIRE_TOOLS").as_deref() == Ok("1") {
                panic!("../shared/vectors is missing (HOTBAK_REQUIRE_TOOLS=1)");
            }
            eprintln!("SKIP: ../shared/vectors not found");
            None
        }
    }
}

fn load_vector(path: &Path) -> Option<Vec<u8>> {
    if path.extension().is_some_and(|e| e == "zst") {
        let zstd = support::tool("zstd")?;
        let out = Command::new(zstd)
            .args(["-d", "-q", "-c"])
            .arg(path)
            .output()
            .expect("run zstd");
        assert!(out.status.success(), "zstd -d {}", path.display());
        Some(out.stdout)
    } else {
        Some(std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
    }
}

fn check_vector(stream: &Path, list: &Path) {
    let Some(bytes) = load_vector(stream) else {
        return;
    };
    let expected = expected_list(list);
    let tmp = tempfile::tempdir().expect("tempdir");
    for (i, extra) in [&["-p", "1"][..], &["-p", "4"][..]].iter().enumerate() {
        let out = tmp.path().join(format!("out{i}"));
        // One run with fsync (the default), one without.
        let r = if i == 0 {
            let d = out.to_str().expect("utf-8");
            let mut args = vec!["-x", "-C", d];
            args.extend_from_slice(extra);
            run_with_stdin(&support::bin("xbextract"), &args, None, &bytes)
        } else {
            xb_extract(&out, extra, &bytes)
        };
        assert_eq!(r.code, 0, "{} {extra:?}: {}", stream.display(), r.stderr);
        assert!(
            r.stderr.contains(STOCK_WARNING),
            "{}: {}",
            stream.display(),
            r.stderr
        );
        let got: BTreeMap<String, (u64, String)> = read_tree(&out)
            .into_iter()
            .map(|(p, d)| (p, (d.len() as u64, sha256_hex(&d))))
            .collect();
        let missing: Vec<&String> = expected.keys().filter(|k| !got.contains_key(*k)).collect();
        let extra_files: Vec<&String> = got.keys().filter(|k| !expected.contains_key(*k)).collect();
        assert!(
            missing.is_empty() && extra_files.is_empty(),
            "{}: missing {missing:?}, unexpected {extra_files:?}",
            stream.display()
        );
        for (p, want) in &expected {
            assert_eq!(&got[p], want, "{}: {p}", stream.display());
        }
    }
}

#[test]
fn xb_interop_vectors_mbstream() {
    let Some(v) = vectors() else { return };
    for name in ["v01_basic", "v02_small"] {
        check_vector(
            &v.join(format!("mbstream/{name}.xbstream")),
            &v.join(format!("mbstream/{name}.extracted.sha256")),
        );
    }
}

#[test]
fn xb_interop_vectors_mariabackup() {
    let Some(v) = vectors() else { return };
    for (stream, list) in [
        ("mb_full.xbstream.zst", "mb_full.extracted.sha256"),
        (
            "mb_full_parallel4.xbstream.zst",
            "mb_full_parallel4.extracted.sha256",
        ),
        (
            "mb_incremental.xbstream.zst",
            "mb_incremental.extracted.sha256",
        ),
        // Stock `.qp` members are kept as they are unless --decompress.
        (
            "mb_full_compress_qp.xbstream",
            "mb_full_compress_qp.extracted.sha256",
        ),
    ] {
        check_vector(
            &v.join("mariabackup").join(stream),
            &v.join("mariabackup").join(list),
        );
    }
}

/// v03 (absolute path) and v04 (`../up.txt`): refused with exit code 3, nothing written.
#[test]
fn xb_interop_vectors_hostile_paths_refused() {
    let Some(v) = vectors() else { return };
    for (name, path, why) in [
        (
            "v03_abs_path",
            "/tmp/xbstream-abs-probe/abs.txt",
            "absolute path",
        ),
        ("v04_dotdot_path", "../up.txt", "'..' component"),
    ] {
        let bytes =
            load_vector(&v.join(format!("mbstream/{name}.xbstream"))).expect("plain vector");
        let abs_target = Path::new("/tmp/xbstream-abs-probe/abs.txt");
        let abs_existed = abs_target.exists();
        for p in ["1", "4"] {
            let tmp = tempfile::tempdir().expect("tempdir");
            let out = tmp.path().join("out");
            let r = xb_extract(&out, &["-p", p], &bytes);
            assert_eq!(r.code, 3, "{name} -p {p}: {}", r.stderr);
            assert!(
                r.stderr.contains(path) && r.stderr.contains(why),
                "{name}: stderr does not explain: {}",
                r.stderr
            );
            assert!(
                r.stderr.contains("offset 0"),
                "{name}: stderr does not name the offset: {}",
                r.stderr
            );
            assert_eq!(
                entries(tmp.path()),
                vec!["out".to_owned()],
                "{name}: something appeared beside -C"
            );
            assert!(
                file_names(&out).is_empty(),
                "{name}: files written: {:?}",
                file_names(&out)
            );
            assert_eq!(
                abs_target.exists(),
                abs_existed,
                "{name}: wrote the absolute path"
            );
        }
    }
}
