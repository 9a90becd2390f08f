//! Issue 2: a stream cut anywhere fails, and nothing that looks complete is left behind.
//!
//! A hotbak stream (`xbextract -c`: stream info first, manifest last) is cut at every
//! chunk boundary and at several offsets inside every field of every chunk; each cut
//! must make `xbextract -x` exit with code 3 and leave no file at all (no partial, no
//! final name). A stock stream (`--no-manifest`) cut the same way must fail inside a
//! chunk or an open file, and may only keep files whose `E` chunk was received.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use hotbak::format::xbstream::{ChunkType, PAYLOAD_FIELDS_LEN, PREFIX_LEN};

use crate::xb_interop::{
    decode_all, gen_bytes, read_tree, write_tree, xb_create, xb_extract, Run, STOCK_WARNING,
};

/// One chunk of the test stream.
#[derive(Debug, Clone)]
struct ChunkInfo {
    start: usize,
    end: usize,
    ty: ChunkType,
    path: String,
    path_len: usize,
    payload_len: usize,
}

fn chunk_infos(stream: &[u8]) -> Vec<ChunkInfo> {
    let mut start = 0usize;
    decode_all(stream)
        .into_iter()
        .map(|(c, end)| {
            let end = usize::try_from(end).expect("small stream");
            assert_eq!(c.stream_offset as usize, start);
            let info = ChunkInfo {
                start,
                end,
                ty: c.ty,
                path: c.path_lossy(),
                path_len: c.path.len(),
                payload_len: c.payload.len(),
            };
            start = end;
            info
        })
        .collect()
}

/// Cut points: every chunk boundary, and offsets inside magic, flags, type,
/// path_len, path, payload_len, offset, crc and payload. Offset 0 (the empty
/// stream) is covered by `xb_hostile_empty_stream`.
fn cut_points(chunks: &[ChunkInfo], dense: bool) -> Vec<(usize, String)> {
    let mut cuts = Vec::new();
    for (i, c) in chunks.iter().enumerate() {
        let s = c.start;
        let ty = match c.ty {
            ChunkType::Payload => 'P',
            ChunkType::Eof => 'E',
            other => panic!("unexpected chunk type {other:?}"),
        };
        let label = |what: &str| format!("chunk #{i} {ty} {:?} @{s}: {what}", c.path);
        cuts.push((s, label("boundary before the chunk")));
        let mut inside: Vec<(usize, &str)> = vec![
            (s + 4, "inside magic"),
            (s + 9, "after flags (type missing)"),
            (s + 12, "inside path_len"),
        ];
        if dense {
            inside.extend([
                (s + 1, "magic, 1 byte"),
                (s + 7, "magic, 7 bytes"),
                (s + 8, "after magic (flags missing)"),
                (s + 10, "after type (path_len missing)"),
                (s + 13, "path_len, 3 of 4 bytes"),
                (s + PREFIX_LEN, "after path_len (path missing)"),
                (s + PREFIX_LEN + c.path_len / 2, "inside path"),
                (s + PREFIX_LEN + c.path_len - 1, "path, last byte missing"),
            ]);
        }
        if c.ty == ChunkType::Payload {
            let h = s + PREFIX_LEN + c.path_len;
            inside.push((h + 4, "inside payload_len"));
            inside.push((h + 12, "inside offset"));
            inside.push((h + 18, "inside crc"));
            if dense {
                inside.extend([
                    (h, "after path (payload_len missing)"),
                    (h + 7, "payload_len, 7 of 8 bytes"),
                    (h + 8, "after payload_len (offset missing)"),
                    (h + 15, "offset, 7 of 8 bytes"),
                    (h + 16, "after offset (crc missing)"),
                    (h + 19, "crc, 3 of 4 bytes"),
                ]);
            }
            let p = h + PAYLOAD_FIELDS_LEN;
            if c.payload_len > 0 {
                inside.push((p + c.payload_len / 2, "middle of the payload"));
                if dense {
                    inside.extend([
                        (p, "after crc (payload missing)"),
                        (p + 1, "payload, 1 byte"),
                        (p + c.payload_len - 1, "payload, last byte missing"),
                    ]);
                }
            }
        }
        for (off, what) in inside {
            assert!(off > s && off < c.end, "cut {off} outside chunk {i}");
            cuts.push((off, label(what)));
        }
    }
    let mut seen = BTreeSet::new();
    cuts.retain(|(o, _)| *o > 0 && seen.insert(*o));
    cuts
}

/// Run the cuts on a small pool of threads (each run is one process).
fn run_cuts(
    stream: &[u8],
    cuts: &[(usize, String)],
    check: impl Fn(usize, &str, &Run, &Path) + Sync,
) {
    let next = AtomicUsize::new(0);
    let failures: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let tmp = tempfile::tempdir().expect("tempdir");
    std::thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((cut, label)) = cuts.get(i) else {
                    break;
                };
                let out = tmp.path().join(format!("cut{i}"));
                let r = xb_extract(&out, &[], &stream[..*cut]);
                let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    check(*cut, label, &r, &out)
                }));
                if let Err(e) = res {
                    let msg = e
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| e.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                        .unwrap_or_default();
                    failures
                        .lock()
                        .expect("lock")
                        .push(format!("cut at {cut} ({label}): {msg}"));
                }
                let _ = std::fs::remove_dir_all(&out);
            });
        }
    });
    let f = failures.into_inner().expect("lock");
    assert!(
        f.is_empty(),
        "{} of {} cuts failed:\n{}",
        f.len(),
        cuts.len(),
        f.join("\n")
    );
}

fn source_tree() -> BTreeMap<String, Vec<u8>> {
    let mut t = BTreeMap::new();
    t.insert("a.txt".to_owned(), b"first file\n".to_vec());
    t.insert("empty".to_owned(), Vec::new());
    t.insert("name with spaces.txt".to_owned(), b"spaces\n".to_vec());
    t.insert("db/t1.ibd".to_owned(), gen_bytes(7, 3 * 16384 + 5));
    t.insert(
        "z big.bin".to_owned(),
        gen_bytes(8, 10 * 1024 * 1024 + 1000),
    );
    t
}

/// Names in stream order, big file last so most cuts stay cheap.
const ORDER: [&str; 5] = [
    "a.txt",
    "empty",
    "name with spaces.txt",
    "db/t1.ibd",
    "z big.bin",
];

#[test]
fn xb_truncation_hotbak_stream_every_cut_fails_and_leaves_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let tree = source_tree();
    write_tree(tmp.path(), &tree);
    let stream = xb_create(tmp.path(), &[], &ORDER);
    let chunks = chunk_infos(&stream);
    // stream info P+E, 5 files (the empty one is a lone E, the big one two P), manifest P+E.
    assert_eq!(chunks.len(), 2 + (2 + 1 + 2 + 2 + 3) + 2, "{chunks:#?}");
    assert!(
        chunks
            .iter()
            .filter(|c| c.path == "z big.bin" && c.ty == ChunkType::Payload)
            .count()
            == 2
    );
    let cuts = cut_points(&chunks, true);
    assert!(cuts.len() > 150 && cuts.len() < 400, "{} cuts", cuts.len());

    // The whole stream extracts (control).
    let whole = tmp.path().join("whole");
    let r = xb_extract(&whole, &[], &stream);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let mut got = read_tree(&whole);
    assert!(got.remove("hotbak_manifest").is_some() && got.remove("hotbak_stream_info").is_some());
    assert!(got == tree, "complete stream did not round-trip");

    run_cuts(&stream, &cuts, |_, _, r, out| {
        assert_eq!(
            r.code, 3,
            "exit code {} (want 3); stderr: {}",
            r.code, r.stderr
        );
        assert!(
            r.stderr.contains("truncated"),
            "stderr does not say truncated: {}",
            r.stderr
        );
        let left: Vec<String> = read_tree(out).into_keys().collect();
        assert!(left.is_empty(), "files left behind: {left:?}");
    });
}

#[test]
fn xb_truncation_stock_stream_keeps_only_finished_files() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let tree = source_tree();
    write_tree(tmp.path(), &tree);
    let stream = xb_create(tmp.path(), &["--no-manifest"], &ORDER);
    let chunks = chunk_infos(&stream);
    assert_eq!(chunks.len(), 10);
    let cuts = cut_points(&chunks, false);
    run_cuts(&stream, &cuts, |cut, _, r, out| {
        // Files whose E chunk ended at or before the cut, and files still open at the cut.
        let finished: BTreeSet<&str> = chunks
            .iter()
            .filter(|c| c.ty == ChunkType::Eof && c.end <= cut)
            .map(|c| c.path.as_str())
            .collect();
        let open = chunks
            .iter()
            .any(|c| c.start < cut && !finished.contains(c.path.as_str()));
        let at_boundary = chunks.iter().any(|c| c.end == cut);
        let got = read_tree(out);
        for (p, data) in &got {
            assert!(
                finished.contains(p.as_str()),
                "{p} present but its E chunk was not received"
            );
            assert!(*data == tree[p], "{p} content differs");
        }
        if at_boundary && !open {
            // Undetectable for a stock stream: success with the warning, every finished file present.
            assert_eq!(r.code, 0, "{}", r.stderr);
            assert!(r.stderr.contains(STOCK_WARNING), "{}", r.stderr);
            assert_eq!(got.len(), finished.len());
        } else {
            assert_eq!(
                r.code, 3,
                "exit code {} (want 3); stderr: {}",
                r.code, r.stderr
            );
            assert!(r.stderr.contains("truncated"), "{}", r.stderr);
        }
    });
}
