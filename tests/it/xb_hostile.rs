//! Issue 2: hostile and malformed streams. Each case gets a clear error that names
//! the path or the stream offset (or the documented safe handling), and nothing is
//! ever written outside `-C`: a sibling sentinel directory must stay empty and no
//! new entry may appear in the parent directory.
//!
//! Streams are built with the codec's `put_*` functions.

use std::collections::BTreeMap;
use std::path::PathBuf;

use hotbak::format::manifest::{StreamInfo, MANIFEST_NAME, STREAM_INFO_NAME, VERSION};
use hotbak::format::xbstream::{
    self, put_eof, put_payload, put_remove, put_rename, FLAG_IGNORABLE, MAGIC,
};

use crate::support;
use crate::xb_interop::{
    decode_all, entries, gen_bytes, read_tree, run_with_stdin, vectors, write_tree, xb_create,
    xb_extract, Run, STOCK_WARNING,
};

/// parent/{out (the -C target), sentinel (must stay empty)}.
struct Sandbox {
    _tmp: tempfile::TempDir,
    parent: PathBuf,
    out: PathBuf,
    sentinel: PathBuf,
}

impl Sandbox {
    fn new() -> Self {
        let tmp = tempfile::tempdir().expect("tempdir");
        let parent = tmp.path().join("parent");
        let out = parent.join("out");
        let sentinel = parent.join("sentinel");
        std::fs::create_dir_all(&out).expect("mkdir out");
        std::fs::create_dir_all(&sentinel).expect("mkdir sentinel");
        Sandbox {
            _tmp: tmp,
            parent,
            out,
            sentinel,
        }
    }

    fn run(&self, stream: &[u8], extra: &[&str]) -> Run {
        let r = xb_extract(&self.out, extra, stream);
        self.assert_contained(&[]);
        r
    }

    /// Nothing in the sentinel, nothing new beside `out` and `sentinel` (except `also`).
    fn assert_contained(&self, also: &[&str]) {
        assert!(
            entries(&self.sentinel).is_empty(),
            "written outside -C: sentinel holds {:?}",
            entries(&self.sentinel)
        );
        let mut want: Vec<String> = ["out", "sentinel"]
            .iter()
            .chain(also)
            .map(|s| (*s).to_owned())
            .collect();
        want.sort();
        assert_eq!(entries(&self.parent), want, "written outside -C");
    }

    fn files(&self) -> BTreeMap<String, Vec<u8>> {
        read_tree(&self.out)
    }

    fn p(&self, s: &str) -> String {
        self.parent.join(s).to_str().expect("utf-8").to_owned()
    }
}

fn assert_code(r: &Run, code: i32, needles: &[&str]) {
    assert_eq!(
        r.code, code,
        "exit code {} (want {code}); stderr: {}",
        r.code, r.stderr
    );
    for n in needles {
        assert!(r.stderr.contains(n), "stderr lacks {n:?}: {}", r.stderr);
    }
}

fn file(v: &mut Vec<u8>, path: &str, data: &[u8]) {
    if !data.is_empty() {
        put_payload(v, path.as_bytes(), 0, data);
    }
    put_eof(v, path.as_bytes());
}

/// The stream-info file that marks a hotbak stream.
fn hotbak_header(v: &mut Vec<u8>) {
    let info = StreamInfo {
        version: VERSION,
        tool: "hotbak test".into(),
        chain: vec![],
        key_id: None,
    };
    file(v, STREAM_INFO_NAME, &info.to_bytes());
}

fn no_partials(files: &BTreeMap<String, Vec<u8>>) {
    let parts: Vec<&String> = files
        .keys()
        .filter(|k| k.contains(hotbak::extract::STAGING_PREFIX))
        .collect();
    assert!(parts.is_empty(), "partial files left: {parts:?}");
}

#[test]
fn xb_hostile_corrupt_crc() {
    let sb = Sandbox::new();
    let mut v = Vec::new();
    file(&mut v, "good.txt", b"good");
    let bad_at = v.len();
    put_payload(&mut v, b"db/bad.ibd", 0, b"payload that will be damaged");
    let n = v.len();
    v[n - 3] ^= 0x40;
    put_eof(&mut v, b"db/bad.ibd");
    let crc_field = bad_at + 14 + "db/bad.ibd".len() + 16;
    let r = sb.run(&v, &[]);
    assert_code(
        &r,
        3,
        &["CRC", "db/bad.ibd", &format!("offset {crc_field}")],
    );
    let f = sb.files();
    no_partials(&f);
    assert!(!f.contains_key("db/bad.ibd"));
    // Stock stream: a file whose E chunk arrived before the error is complete and kept.
    assert_eq!(f.get("good.txt").map(Vec::as_slice), Some(&b"good"[..]));
}

#[test]
fn xb_hostile_bad_magic() {
    let sb = Sandbox::new();
    let mut v = b"XBSTCK02".to_vec();
    v.extend_from_slice(&[0, b'E', 1, 0, 0, 0, b'a']);
    assert_code(&sb.run(&v, &[]), 3, &["magic", "offset 0"]);
    // A bad magic after a good chunk names that chunk's offset.
    let sb = Sandbox::new();
    let mut v = Vec::new();
    put_payload(&mut v, b"a", 0, b"abc");
    let at = v.len();
    v.extend_from_slice(b"xBSTCK01\0E\x01\0\0\0a");
    let r = sb.run(&v, &[]);
    assert_code(&r, 3, &["magic", &format!("offset {at}")]);
    assert!(sb.files().is_empty(), "{:?}", sb.files().keys());
}

#[test]
fn xb_hostile_huge_payload_length() {
    let sb = Sandbox::new();
    let mut v = Vec::new();
    xbstream::put_payload_header(&mut v, b"db/huge.ibd", 0, b"");
    v[14 + 11..14 + 11 + 8].copy_from_slice(&(1u64 << 40).to_le_bytes());
    v.extend_from_slice(&[0u8; 64]);
    let t = std::time::Instant::now();
    let r = sb.run(&v, &[]);
    assert_code(
        &r,
        3,
        &[
            "db/huge.ibd",
            "exceeds the limit",
            &format!("offset {}", 14 + 11),
        ],
    );
    assert!(
        t.elapsed().as_secs() < 20,
        "took {:?}: did it try to allocate 1 TiB?",
        t.elapsed()
    );
    assert!(sb.files().is_empty());
    // Just over the documented 64 MiB limit is refused as well.
    let sb = Sandbox::new();
    v[14 + 11..14 + 11 + 8].copy_from_slice(&(xbstream::MAX_PAYLOAD_LEN + 1).to_le_bytes());
    assert_code(&sb.run(&v, &[]), 3, &["exceeds the limit"]);
}

#[test]
fn xb_hostile_path_length_limit() {
    // 512 bytes: refused before the path is read.
    let sb = Sandbox::new();
    let mut v = Vec::new();
    v.extend_from_slice(MAGIC);
    v.extend_from_slice(&[0, b'P']);
    v.extend_from_slice(&512u32.to_le_bytes());
    v.extend_from_slice(&[b'a'; 512]);
    assert_code(&sb.run(&v, &[]), 3, &["path length 512", "offset 10"]);
    assert!(sb.files().is_empty());
    // 511 bytes (in components the file system accepts): extracted.
    let sb = Sandbox::new();
    let long = format!(
        "{}/{}/{}",
        "d".repeat(200),
        "e".repeat(200),
        "f".repeat(109)
    );
    assert_eq!(long.len(), 511);
    let mut v = Vec::new();
    file(&mut v, &long, b"longest path");
    let r = sb.run(&v, &[]);
    assert_code(&r, 0, &[]);
    assert_eq!(
        sb.files().get(&long).map(Vec::as_slice),
        Some(&b"longest path"[..])
    );
}

/// A file name of 255 bytes (NAME_MAX) is legal on disk and in the format.
#[test]
fn xb_hostile_name_max_component() {
    let sb = Sandbox::new();
    let name = format!("db/{}", "n".repeat(255));
    let mut v = Vec::new();
    file(&mut v, &name, b"x");
    let r = sb.run(&v, &[]);
    assert_code(&r, 0, &[]);
    assert_eq!(sb.files().get(&name).map(Vec::as_slice), Some(&b"x"[..]));
}

#[test]
fn xb_hostile_absolute_and_dotdot_paths() {
    let probe = Sandbox::new();
    let abs = probe.p("abs.txt");
    let cases: Vec<(String, &str)> = vec![
        (abs.clone(), "absolute path"),
        ("../escape.txt".into(), "'..' component"),
        ("db/../../escape.txt".into(), "'..' component"),
        ("..".into(), "'..' component"),
        ("./a".into(), "empty or '.' component"),
        ("a//b".into(), "empty or '.' component"),
        ("a/".into(), "empty or '.' component"),
        ("a\\..\\b".into(), "backslash"),
        ("nul\0tail".into(), "NUL"),
    ];
    for (path, why) in cases {
        for hotbak in [false, true] {
            let sb = if path == abs {
                Probe::Same(&probe)
            } else {
                Probe::Own(Sandbox::new())
            };
            let sb = sb.get();
            let mut v = Vec::new();
            let mut at = 0;
            if hotbak {
                hotbak_header(&mut v);
                at = v.len();
            }
            file(&mut v, &path, b"escaped!");
            let r = sb.run(&v, &[]);
            assert_code(&r, 3, &[why, &format!("offset {at}")]);
            let shown = format!("{path:?}");
            assert!(
                r.stderr.contains(&shown),
                "stderr does not name {shown}: {}",
                r.stderr
            );
            assert!(sb.files().is_empty(), "{path:?}: {:?}", sb.files().keys());
        }
    }
    // Not UTF-8.
    let sb = Sandbox::new();
    let mut v = Vec::new();
    put_eof(&mut v, &[b'a', 0xff, 0xfe]);
    assert_code(&sb.run(&v, &[]), 3, &["invalid UTF-8", "offset 0"]);
}

enum Probe<'a> {
    Same(&'a Sandbox),
    Own(Sandbox),
}

impl Probe<'_> {
    fn get(&self) -> &Sandbox {
        match self {
            Probe::Same(s) => s,
            Probe::Own(s) => s,
        }
    }
}

#[test]
fn xb_hostile_offsets() {
    // (second chunk's offset, expected, what)
    for (first, second_off, expected) in [
        (&b"abc"[..], 5u64, 3u64),
        (&b"abcd"[..], 2, 4),
        (&b""[..], 1, 0),
    ] {
        let sb = Sandbox::new();
        let mut v = Vec::new();
        if !first.is_empty() {
            put_payload(&mut v, b"db/t.ibd", 0, first);
        }
        let at = v.len();
        put_payload(&mut v, b"db/t.ibd", second_off, b"zz");
        put_eof(&mut v, b"db/t.ibd");
        let r = sb.run(&v, &["-p", "2"]);
        assert_code(
            &r,
            3,
            &[
                "db/t.ibd",
                "out-of-order",
                &format!("stream offset {at}"),
                &format!("file offset {second_off}, expected {expected}"),
            ],
        );
        let f = sb.files();
        assert!(f.is_empty(), "{:?}", f.keys());
    }
}

#[test]
fn xb_hostile_duplicate_path_after_eof() {
    for hotbak in [false, true] {
        let sb = Sandbox::new();
        let mut v = Vec::new();
        if hotbak {
            hotbak_header(&mut v);
        }
        file(&mut v, "db/t.ibd", b"first");
        let at = v.len();
        file(&mut v, "db/t.ibd", b"second");
        let r = sb.run(&v, &[]);
        assert_code(
            &r,
            3,
            &["db/t.ibd", "appears again", &format!("offset {at}")],
        );
        let f = sb.files();
        no_partials(&f);
        if hotbak {
            assert!(f.is_empty(), "hotbak stream left {:?}", f.keys());
        } else {
            // The second copy never replaces the first.
            assert!(f.get("db/t.ibd").map_or(true, |d| d == b"first"), "{f:?}");
        }
    }
}

#[test]
fn xb_hostile_unknown_chunk_types() {
    // Ignorable: skipped with a warning; its payload is NOT written (mbstream 10.11 writes it).
    let sb = Sandbox::new();
    let mut v = Vec::new();
    put_payload(&mut v, b"u.txt", 0, b"before\n");
    let at = v.len();
    let mut x = Vec::new();
    put_payload(&mut x, b"u.txt", 7, b"junk");
    x[8] = FLAG_IGNORABLE;
    x[9] = b'X';
    v.extend_from_slice(&x);
    put_eof(&mut v, b"u.txt");
    let r = sb.run(&v, &[]);
    assert_code(
        &r,
        0,
        &["warning", "0x58", "u.txt", &format!("offset {at}")],
    );
    assert_eq!(
        sb.files().get("u.txt").map(Vec::as_slice),
        Some(&b"before\n"[..])
    );
    // The ignorable chunk's CRC is still checked.
    let sb = Sandbox::new();
    let mut bad = v.clone();
    let n = at + x.len();
    bad[n - 1] ^= 1;
    assert_code(&sb.run(&bad, &[]), 3, &["CRC", "u.txt"]);
    // Not ignorable: an error naming the type and offset.
    let sb = Sandbox::new();
    let mut v2 = v.clone();
    v2[at + 8] = 0;
    assert_code(
        &sb.run(&v2, &[]),
        3,
        &["unknown chunk type", &format!("offset {at}"), "u.txt"],
    );
    no_partials(&sb.files());
    assert!(!sb.files().contains_key("u.txt"));
}

#[test]
fn xb_hostile_sparse_or_seek_refused() {
    // MariaDB seek: prefix + u64 offset.
    let sb = Sandbox::new();
    let mut v = Vec::new();
    file(&mut v, "ok.txt", b"ok");
    let at = v.len();
    put_eof(&mut v, b"db/t.ibd");
    v[at + 9] = b'S';
    v.extend_from_slice(&4096u64.to_le_bytes());
    file(&mut v, "db/t.ibd", b"data");
    let r = sb.run(&v, &[]);
    assert_code(&r, 3, &["'S'", "db/t.ibd", &format!("offset {at}")]);
    assert!(!sb.files().contains_key("db/t.ibd"));
    // The synthetic Percona sparse vector.
    if let Some(v) = vectors() {
        let bytes = std::fs::read(v.join("synthetic/percona_sparse.xbstream"))
            .expect("percona_sparse vector");
        let sb = Sandbox::new();
        assert_code(&sb.run(&bytes, &[]), 3, &["'S'", "db1/t1.ibd", "offset 0"]);
        assert!(sb.files().is_empty());
    }
}

#[test]
fn xb_hostile_remove_and_rename_in_stock_stream() {
    let sb = Sandbox::new();
    let mut v = Vec::new();
    file(&mut v, "a.txt", b"A");
    put_rename(&mut v, b"a.txt", b"db/b.txt");
    file(&mut v, "c.txt", b"C");
    put_remove(&mut v, b"c.txt");
    put_remove(&mut v, b"never-existed.txt");
    // A removed path may appear again.
    file(&mut v, "c.txt", b"C2");
    let r = sb.run(&v, &["-p", "3"]);
    assert_code(&r, 0, &[STOCK_WARNING]);
    let f = sb.files();
    let want: BTreeMap<String, Vec<u8>> = [("db/b.txt", &b"A"[..]), ("c.txt", b"C2")]
        .iter()
        .map(|(k, d)| ((*k).to_owned(), d.to_vec()))
        .collect();
    assert_eq!(f, want);
}

/// Found by the `extract_paths` fuzz target: a `D` chunk for a path whose
/// directories do not exist used to create them. Removing nothing creates
/// nothing; renaming a missing file is an error that names it.
#[test]
fn xb_hostile_remove_or_rename_of_missing_paths_creates_nothing() {
    let sb = Sandbox::new();
    let mut v = Vec::new();
    put_remove(&mut v, b"nodir/deeper/x.ibd");
    file(&mut v, "a.txt", b"A");
    let r = sb.run(&v, &[]);
    assert_code(&r, 0, &[STOCK_WARNING]);
    assert_eq!(entries(&sb.out), vec!["a.txt".to_owned()]);

    let sb = Sandbox::new();
    let mut v = Vec::new();
    file(&mut v, "a.txt", b"A");
    put_rename(&mut v, b"gone/x.ibd", b"db/y.ibd");
    let r = sb.run(&v, &[]);
    assert_ne!(r.code, 0, "rename of a missing file succeeded");
    assert!(r.stderr.contains("gone/x.ibd"), "{}", r.stderr);
    assert!(
        !sb.out.join("gone").exists() && !sb.out.join("db").exists(),
        "directories created: {:?}",
        entries(&sb.out)
    );
}

#[test]
fn xb_hostile_remove_and_rename_escapes_refused() {
    let probe = Sandbox::new();
    let victim_abs = probe.p("victim");
    let cases: Vec<(&str, Vec<u8>)> = {
        let mut c = Vec::new();
        let mk = |f: &dyn Fn(&mut Vec<u8>)| {
            let mut v = Vec::new();
            file(&mut v, "a.txt", b"A");
            f(&mut v);
            v
        };
        c.push(("R to ../x", mk(&|v| put_rename(v, b"a.txt", b"../x"))));
        c.push((
            "R to absolute",
            mk(&|v| put_rename(v, b"a.txt", probe.p("x").as_bytes())),
        ));
        c.push((
            "R from ../victim",
            mk(&|v| put_rename(v, b"../victim", b"stolen")),
        ));
        c.push((
            "R from absolute",
            mk(&|v| put_rename(v, victim_abs.as_bytes(), b"stolen")),
        ));
        c.push(("D ../victim", mk(&|v| put_remove(v, b"../victim"))));
        c.push(("D absolute", mk(&|v| put_remove(v, victim_abs.as_bytes()))));
        c.push((
            "D /etc/x",
            mk(&|v| put_remove(v, b"/etc/hotbak-test-never-exists")),
        ));
        c
    };
    for (what, v) in cases {
        std::fs::write(&victim_abs, b"victim").expect("write victim");
        let r = xb_extract(&probe.out, &[], &v);
        assert_eq!(r.code, 3, "{what}: {}", r.stderr);
        assert!(r.stderr.contains("refused path"), "{what}: {}", r.stderr);
        assert_eq!(
            std::fs::read(&victim_abs).ok().as_deref(),
            Some(&b"victim"[..]),
            "{what}: victim touched"
        );
        probe.assert_contained(&["victim"]);
        assert!(!probe.out.join("stolen").exists(), "{what}");
        let _ = std::fs::remove_dir_all(&probe.out);
        std::fs::create_dir(&probe.out).expect("mkdir");
    }
}

#[test]
fn xb_hostile_remove_and_rename_refused_in_hotbak_stream() {
    for (what, f) in [
        (
            "remove (D)",
            &(|v: &mut Vec<u8>| put_remove(v, b"a.txt")) as &dyn Fn(&mut Vec<u8>),
        ),
        ("rename (R)", &|v: &mut Vec<u8>| {
            put_rename(v, b"a.txt", b"b.txt")
        }),
    ] {
        let sb = Sandbox::new();
        let mut v = Vec::new();
        hotbak_header(&mut v);
        file(&mut v, "a.txt", b"A");
        let at = v.len();
        f(&mut v);
        let r = sb.run(&v, &[]);
        assert_code(
            &r,
            3,
            &[
                what,
                "a.txt",
                &format!("offset {at}"),
                "hotbak streams never contain it",
            ],
        );
        assert!(sb.files().is_empty(), "{:?}", sb.files().keys());
    }
}

#[test]
fn xb_hostile_existing_target_file() {
    for hotbak in [false, true] {
        let sb = Sandbox::new();
        std::fs::create_dir(sb.out.join("db")).expect("mkdir");
        std::fs::write(sb.out.join("db/t.ibd"), b"old").expect("write");
        let v = if hotbak {
            hotbak_archive(
                &[("db/t.ibd".to_owned(), b"new content".to_vec())]
                    .into_iter()
                    .collect(),
            )
        } else {
            let mut v = Vec::new();
            file(&mut v, "db/t.ibd", b"new content");
            v
        };
        let r = sb.run(&v, &[]);
        assert_code(&r, 1, &["db/t.ibd", "already exists", "--force"]);
        let f = sb.files();
        no_partials(&f);
        assert_eq!(f.get("db/t.ibd").map(Vec::as_slice), Some(&b"old"[..]));
        assert!(!f.contains_key(MANIFEST_NAME));
        let r = sb.run(&v, &["--force"]);
        assert_code(&r, 0, &[]);
        assert_eq!(
            sb.files().get("db/t.ibd").map(Vec::as_slice),
            Some(&b"new content"[..])
        );
    }
}

#[test]
fn xb_hostile_symlinks_inside_target() {
    // A directory symlink pointing outside: writing through it is refused.
    let sb = Sandbox::new();
    std::os::unix::fs::symlink("../sentinel", sb.out.join("link")).expect("symlink");
    let mut v = Vec::new();
    file(&mut v, "link/x.txt", b"escaped");
    let r = sb.run(&v, &["--force"]);
    assert_code(&r, 1, &["symlink", "link/x.txt"]);
    // Same through an absolute symlink, and for R/D targets.
    let sb = Sandbox::new();
    std::os::unix::fs::symlink(&sb.sentinel, sb.out.join("alink")).expect("symlink");
    let mut v = Vec::new();
    file(&mut v, "alink/x.txt", b"escaped");
    assert_code(&sb.run(&v, &[]), 1, &["symlink"]);
    let mut v = Vec::new();
    file(&mut v, "a.txt", b"A");
    put_rename(&mut v, b"a.txt", b"alink/a.txt");
    assert_code(&sb.run(&v, &["--force"]), 1, &["symlink"]);
    std::fs::write(sb.parent.join("victim"), b"v").expect("write");
    std::os::unix::fs::symlink("..", sb.out.join("up")).expect("symlink");
    let mut v = Vec::new();
    put_remove(&mut v, b"up/victim");
    let r = xb_extract(&sb.out, &[], &v);
    assert_code(&r, 1, &["symlink"]);
    assert!(sb.parent.join("victim").exists(), "D followed a symlink");

    // A file symlink pointing outside: refused without --force; with --force the
    // symlink itself is replaced and its target is never created.
    for hotbak in [false, true] {
        let sb = Sandbox::new();
        std::os::unix::fs::symlink("../sentinel/target.txt", sb.out.join("f.txt"))
            .expect("symlink");
        let v = if hotbak {
            hotbak_archive(
                &[("f.txt".to_owned(), b"data".to_vec())]
                    .into_iter()
                    .collect(),
            )
        } else {
            let mut v = Vec::new();
            file(&mut v, "f.txt", b"data");
            v
        };
        assert_code(&sb.run(&v, &[]), 1, &["f.txt", "already exists"]);
        assert_code(&sb.run(&v, &["--force"]), 0, &[]);
        let m = std::fs::symlink_metadata(sb.out.join("f.txt")).expect("lstat");
        assert!(m.file_type().is_file(), "f.txt is still a symlink");
        assert_eq!(std::fs::read(sb.out.join("f.txt")).expect("read"), b"data");
    }

    // A symlink with an old-style partial name is just another file: never written through.
    let sb = Sandbox::new();
    std::os::unix::fs::symlink("../sentinel/p.txt", sb.out.join("g.txt.hbpart")).expect("symlink");
    let mut v = Vec::new();
    file(&mut v, "g.txt", b"data");
    assert_code(&sb.run(&v, &[]), 0, &[]);
    assert_eq!(std::fs::read(sb.out.join("g.txt")).expect("read"), b"data");
    let m = std::fs::symlink_metadata(sb.out.join("g.txt.hbpart")).expect("lstat");
    assert!(m.file_type().is_symlink(), "planted symlink was replaced");
}

#[test]
fn xb_hostile_trailing_garbage() {
    let mut good = Vec::new();
    file(&mut good, "a.txt", b"A");
    let n = good.len();
    for (tail, needle) in [
        (&b"garbage!garbage!"[..], "magic"),
        (b"\n", "magic"),
        (b"XBST", "truncated"),
        (&MAGIC[..], "truncated"),
    ] {
        let sb = Sandbox::new();
        let mut v = good.clone();
        v.extend_from_slice(tail);
        let r = sb.run(&v, &[]);
        assert_code(&r, 3, &[needle, &format!("offset {n}")]);
    }
    // After a complete hotbak stream: the stream is refused and nothing is committed.
    let mut v = hotbak_archive(&[("a.txt".to_owned(), b"A".to_vec())].into_iter().collect());
    v.extend_from_slice(b"trailing");
    let sb = Sandbox::new();
    assert_code(&sb.run(&v, &[]), 3, &["magic"]);
    assert!(sb.files().is_empty(), "{:?}", sb.files().keys());
}

/// An empty input is what a producer that died before writing anything leaves
/// behind. It must not report success (no writer produces an empty archive).
#[test]
fn xb_hostile_empty_stream() {
    let sb = Sandbox::new();
    let r = sb.run(b"", &[]);
    assert!(sb.files().is_empty());
    assert_code(&r, 3, &["empty"]);
}

fn hotbak_archive(tree: &BTreeMap<String, Vec<u8>>) -> Vec<u8> {
    let tmp = tempfile::tempdir().expect("tempdir");
    write_tree(tmp.path(), tree);
    let names: Vec<&str> = tree.keys().map(String::as_str).collect();
    xb_create(tmp.path(), &[], &names)
}

fn small_tree() -> BTreeMap<String, Vec<u8>> {
    [
        ("a.txt", gen_bytes(1, 100)),
        ("db/t.ibd", gen_bytes(2, 40000)),
        ("empty", Vec::new()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

#[test]
fn xb_hostile_hotbak_stream_without_manifest() {
    let v = hotbak_archive(&small_tree());
    let manifest_at = decode_all(&v)
        .iter()
        .find(|(c, _)| &c.path[..] == MANIFEST_NAME.as_bytes())
        .map(|(c, _)| c.stream_offset as usize)
        .expect("manifest chunk");
    for p in ["1", "4"] {
        let sb = Sandbox::new();
        let r = sb.run(&v[..manifest_at], &["-p", p]);
        assert_code(
            &r,
            3,
            &[
                "without the hotbak manifest",
                &format!("offset {manifest_at}"),
            ],
        );
        assert!(sb.files().is_empty(), "-p {p}: {:?}", sb.files().keys());
    }
}

/// A file whose content changed but whose CRC was recomputed: only the manifest catches it.
#[test]
fn xb_hostile_hotbak_content_changed_with_valid_crc() {
    let v = hotbak_archive(&small_tree());
    let mut out = Vec::new();
    for (c, _) in decode_all(&v) {
        match c.ty {
            xbstream::ChunkType::Payload => {
                let mut data = c.payload.to_vec();
                if &c.path[..] == b"db/t.ibd" {
                    data[100] ^= 1;
                }
                put_payload(&mut out, &c.path, c.file_offset, &data);
            }
            _ => put_eof(&mut out, &c.path),
        }
    }
    let sb = Sandbox::new();
    let r = sb.run(&out, &["-p", "2"]);
    assert_code(&r, 3, &["manifest check failed", "db/t.ibd"]);
    assert!(sb.files().is_empty(), "{:?}", sb.files().keys());
}

/// A file spliced in before the manifest, and a file the manifest lists but the stream lacks.
#[test]
fn xb_hostile_hotbak_extra_or_missing_file() {
    let v = hotbak_archive(&small_tree());
    let chunks = decode_all(&v);
    let manifest_at = chunks
        .iter()
        .find(|(c, _)| &c.path[..] == MANIFEST_NAME.as_bytes())
        .map(|(c, _)| c.stream_offset as usize)
        .expect("manifest");
    let mut extra = v[..manifest_at].to_vec();
    file(&mut extra, "injected.txt", b"evil");
    extra.extend_from_slice(&v[manifest_at..]);
    let sb = Sandbox::new();
    assert_code(
        &sb.run(&extra, &[]),
        3,
        &[
            "manifest check failed",
            "injected.txt",
            "not in the manifest",
        ],
    );
    assert!(sb.files().is_empty());

    let mut missing = Vec::new();
    for (c, end) in &chunks {
        if &c.path[..] != b"a.txt" {
            missing.extend_from_slice(&v[c.stream_offset as usize..*end as usize]);
        }
    }
    let sb = Sandbox::new();
    assert_code(
        &sb.run(&missing, &[]),
        3,
        &["manifest check failed", "a.txt", "missing"],
    );
    assert!(sb.files().is_empty());
}

#[test]
fn xb_hostile_stock_stream_warns() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let tree = small_tree();
    write_tree(tmp.path(), &tree);
    let names: Vec<&str> = tree.keys().map(String::as_str).collect();
    let v = xb_create(tmp.path(), &["--no-manifest"], &names);
    let sb = Sandbox::new();
    let r = sb.run(&v, &[]);
    assert_code(&r, 0, &[STOCK_WARNING]);
    assert_eq!(sb.files(), tree);
    // A complete hotbak stream does not warn and says it verified.
    let sb = Sandbox::new();
    let r = sb.run(&hotbak_archive(&tree), &[]);
    assert_code(&r, 0, &["verified"]);
    assert!(!r.stderr.contains("warning"), "{}", r.stderr);
}

/// A legitimate file whose name ends in the partial suffix must not collide with
/// another file's partial name (in either order, with or without --force).
#[test]
fn xb_hostile_partial_suffix_collision() {
    let tree: BTreeMap<String, Vec<u8>> = [
        ("x", &b"plain x"[..]),
        ("x.hbpart", b"a file really named x.hbpart"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_vec()))
    .collect();
    let tmp = tempfile::tempdir().expect("tempdir");
    write_tree(tmp.path(), &tree);
    let mut failures = Vec::new();
    for order in [["x", "x.hbpart"], ["x.hbpart", "x"]] {
        for manifest in [true, false] {
            let extra: &[&str] = if manifest { &[] } else { &["--no-manifest"] };
            let v = xb_create(tmp.path(), extra, &order);
            for force in [false, true] {
                let sb = Sandbox::new();
                let r = sb.run(&v, if force { &["--force"] } else { &[] });
                let mut got = sb.files();
                got.remove(MANIFEST_NAME);
                got.remove(STREAM_INFO_NAME);
                if r.code != 0 || got != tree {
                    failures.push(format!(
                        "order {order:?} manifest={manifest} force={force}: exit {} files {:?} stderr {}",
                        r.code,
                        got.iter().map(|(k, v)| (k.clone(), String::from_utf8_lossy(v).into_owned())).collect::<Vec<_>>(),
                        r.stderr.trim()
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// `--list` writes nothing and prints every file with its size.
#[test]
fn xb_hostile_list_writes_nothing() {
    let tree = small_tree();
    let v = hotbak_archive(&tree);
    let sb = Sandbox::new();
    let r = run_with_stdin(
        &support::bin("xbextract"),
        &["-x", "--list", "-C", sb.out.to_str().expect("utf-8")],
        None,
        &v,
    );
    assert_code(&r, 0, &[]);
    let listed = String::from_utf8_lossy(&r.stdout).into_owned();
    for (p, d) in &tree {
        assert!(
            listed.lines().any(|l| l == format!("{p}\t{}", d.len())),
            "{p} not listed: {listed}"
        );
    }
    assert!(sb.files().is_empty());
    sb.assert_contained(&[]);
}

/// A write that fails (here the file-size limit, EFBIG, which takes the same
/// path as a full disk's ENOSPC) is reported against the backup's file, not
/// the staging name alone; exit 1; nothing partial is left.
#[test]
fn xb_hostile_write_error_names_the_backup_file() {
    let sb = Sandbox::new();
    let mut v = Vec::new();
    file(&mut v, "db/big.ibd", &vec![7u8; 4 << 20]);
    let input = sb.parent.join("in.xbs");
    std::fs::write(&input, &v).expect("write stream");
    // dash counts `ulimit -f` in 512-byte blocks: 512 KiB per file.
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg("trap '' XFSZ; ulimit -f 1024; exec \"$0\" -x -C \"$1\" < \"$2\"")
        .arg(support::bin("xbextract"))
        .arg(&sb.out)
        .arg(&input)
        .output()
        .expect("sh runs");
    std::fs::remove_file(&input).expect("rm stream");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{}: {stderr}", out.status);
    assert!(
        stderr.contains("db/big.ibd (writing") && stderr.contains("File too large"),
        "{stderr}"
    );
    let files = read_tree(&sb.out);
    no_partials(&files);
    assert!(!files.contains_key("db/big.ibd"), "{:?}", files.keys());
    sb.assert_contained(&[]);
}
