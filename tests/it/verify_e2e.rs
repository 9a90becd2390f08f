//! `hotbak verify --target-dir` (issue 14): a real backup, damaged one way
//! at a time, must fail with the finding named; intact backups (ours,
//! mariabackup's, prepared) pass.

use std::ffi::OsStr;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use hotbak::mysql::Session;
use hotbak::sandbox::{Sandbox, SandboxOptions};
use hotbak::testkit;

use crate::support::{bin, copy_dir, rt, tool};

fn verify(dir: &Path) -> (Option<i32>, String) {
    verify_with(dir, &[])
}

fn verify_with(dir: &Path, args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(bin("hotbak"))
        .arg("verify")
        .arg("--target-dir")
        .arg(dir)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("hotbak verify runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn assert_whole(dir: &Path, what: &str) -> String {
    let (code, err) = verify(dir);
    assert_eq!(code, Some(0), "{what} must verify:\n{err}");
    assert!(err.contains("completed OK"), "{err}");
    err
}

fn flip(path: &Path, at: u64) {
    let mut b = std::fs::read(path).expect("read");
    let i = usize::try_from(at).expect("offset");
    b[i] ^= 0x5a;
    std::fs::write(path, b).expect("write");
}

fn truncate(path: &Path, by: u64) {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .expect("open");
    let len = f.metadata().expect("metadata").len();
    f.set_len(len - by).expect("truncate");
}

/// The progress lines of `--progress lines` in `stderr`: each starts with
/// the UTC wall-clock time to the second (within a few minutes of now),
/// then `hotbak: [  12.3s] verify: FILES files, BYTES`. Returns the
/// captures (files done, files total or "", the rest) of each.
fn progress_lines(stderr: &str) -> Vec<(u64, Option<u64>, String)> {
    let re = regex::Regex::new(
        r"^(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}) hotbak: \[ *\d+\.\ds\] verify: (\d+)(?:/(\d+))? files, (.*)$",
    )
    .expect("regex");
    let now = chrono::Utc::now().naive_utc();
    stderr
        .lines()
        .filter_map(|l| re.captures(l))
        .map(|c| {
            let ts = chrono::NaiveDateTime::parse_from_str(&c[1], "%Y-%m-%d %H:%M:%S")
                .expect("a timestamp");
            assert!(
                (now - ts).num_seconds().abs() < 300,
                "the timestamp is the wall-clock time in UTC: {ts} vs {now}"
            );
            (
                c[2].parse().expect("files done"),
                c.get(3).map(|m| m.as_str().parse().expect("files total")),
                c[4].to_owned(),
            )
        })
        .collect()
}

/// `--progress lines` prints timestamped progress lines, the last one
/// complete; `--progress none` prints none; both still print the report.
fn assert_progress_modes(dir: &Path) {
    let (code, err) = verify_with(dir, &["--progress", "lines"]);
    assert_eq!(code, Some(0), "{err}");
    let lines = progress_lines(&err);
    let (done, total, rest) = lines
        .last()
        .unwrap_or_else(|| panic!("no progress line in:\n{err}"));
    assert!(*done > 0 && Some(*done) == *total, "all files done: {err}");
    assert!(
        rest.contains("(100%)") && rest.contains("ETA 0:00:00"),
        "{err}"
    );
    assert!(err.contains("completed OK"), "{err}");
    let (code, err) = verify_with(dir, &["--progress", "none"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        progress_lines(&err).is_empty(),
        "no progress with none:\n{err}"
    );
    assert!(
        !err.contains(" hotbak: ["),
        "nothing timestamped with none:\n{err}"
    );
    assert!(err.contains("completed OK"), "{err}");
}

/// Expect exit 3 and every needle in the findings.
fn assert_finds(dir: &Path, case: &str, needles: &[&str]) {
    let (code, err) = verify(dir);
    assert_eq!(code, Some(3), "{case}: expected exit 3:\n{err}");
    assert!(!err.contains("completed OK"), "{case}:\n{err}");
    for n in needles {
        assert!(err.contains(n), "{case}: no {n:?} in:\n{err}");
    }
    eprintln!("{case}: ok");
}

/// A throwaway server with `v.big` (InnoDB, several pages, written out)
/// and `v.m` (MyISAM), for backups to damage.
fn source_with_tables(root: &Path) -> Sandbox {
    let sb = Sandbox::create(&root.join("src"), SandboxOptions::default()).expect("sandbox");
    rt().block_on(async {
        testkit::setup_schema(&sb.connect_options(), &testkit::SchemaOptions::default())
            .await
            .expect("schema");
        let mut s = Session::connect(&sb.connect_options())
            .await
            .expect("connect");
        for q in [
            "CREATE DATABASE v",
            "CREATE TABLE v.big (id INT PRIMARY KEY, pad VARCHAR(500)) ENGINE=InnoDB",
            "INSERT INTO v.big SELECT seq, REPEAT('p', 400) FROM mysql.seq_1_to_2000",
            "CREATE TABLE v.m (id INT PRIMARY KEY, v VARCHAR(50)) ENGINE=MyISAM",
            "INSERT INTO v.m SELECT seq, 'x' FROM mysql.seq_1_to_100",
            // Written out, so page 0's FSP_SIZE matches the file's length
            // (an unflushed page 0 may lag behind the file's growth).
            "FLUSH TABLES v.big FOR EXPORT",
            "UNLOCK TABLES",
        ] {
            s.execute(q).await.unwrap_or_else(|e| panic!("{q}: {e}"));
        }
        s.close().await.expect("close");
    });
    sb
}

/// `hotbak backup ARGS` of the server at `sb`: its stdout (the stream, if any).
fn hotbak_backup(sb: &Sandbox, args: &[&OsStr]) -> Vec<u8> {
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
        .arg(sb.socket())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("hotbak backup runs");
    assert!(
        out.status.success(),
        "hotbak backup {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
#[allow(clippy::too_many_lines)]
fn verify_finds_each_kind_of_damage() {
    let (Some(_), Some(_), Some(mariabackup)) = (
        tool("mariadbd"),
        tool("mariadb-install-db"),
        tool("mariabackup"),
    ) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let mut sb = source_with_tables(root);
    let ours = root.join("ours");
    let theirs = root.join("theirs");
    let (st, out) = testkit::run_tool(
        &bin("hotbak"),
        &[
            OsStr::new("backup"),
            OsStr::new("--no-defaults"),
            OsStr::new("-u"),
            OsStr::new("root"),
            OsStr::new("--socket"),
            sb.socket().as_os_str(),
            OsStr::new("--target-dir"),
            ours.as_os_str(),
            OsStr::new("--progress"),
            OsStr::new("none"),
        ],
    )
    .expect("hotbak backup");
    assert!(st.success(), "{out}");
    let (st, out) = testkit::run_tool(
        &mariabackup,
        &[
            OsStr::new("--no-defaults"),
            OsStr::new("--backup"),
            OsStr::new("--user=root"),
            OsStr::new(&format!("--socket={}", sb.socket().display())),
            OsStr::new(&format!("--target-dir={}", theirs.display())),
        ],
    )
    .expect("mariabackup");
    assert!(st.success(), "{out}");
    sb.stop().expect("stops");

    // Intact: ours, the peer's, and ours prepared.
    let e = assert_whole(&ours, "our backup");
    assert!(e.contains("manifest checked"), "{e}");
    assert_progress_modes(&ours);
    let e = assert_whole(&theirs, "mariabackup's backup");
    assert!(e.contains("no hotbak manifest"), "{e}");
    let prepared = root.join("prepared");
    copy_dir(&ours, &prepared);
    let (st, out) = testkit::run_tool(
        &bin("hotbak"),
        &[
            OsStr::new("prepare"),
            OsStr::new("--target-dir"),
            prepared.as_os_str(),
        ],
    )
    .expect("prepare");
    assert!(st.success(), "{out}");
    let e = assert_whole(&prepared, "our prepared backup");
    assert!(e.contains("prepared backup"), "{e}");

    let work = root.join("work");
    let ibd_rel = PathBuf::from("v/big.ibd");
    let ibd_name = ibd_rel.display().to_string();
    assert!(
        ours.join(&ibd_rel).metadata().expect("v/big.ibd").len() >= 5 * 16384,
        "v/big.ibd has several pages"
    );

    // A flipped byte inside a page of an .ibd: ours and the peer's.
    for (base, who) in [(&ours, "ours"), (&theirs, "mariabackup's")] {
        copy_dir(base, &work);
        flip(&work.join(&ibd_rel), 3 * 16384 + 1000);
        assert_finds(
            &work,
            &format!("flipped byte in {who} {ibd_name}"),
            &["[page]", &ibd_name, "page 3 (byte 49152)", "checksum"],
        );
    }
    // One page short.
    copy_dir(&ours, &work);
    truncate(&work.join(&ibd_rel), 16384);
    assert_finds(
        &work,
        "ibd one page short",
        &["FSP_SIZE", "truncated", &ibd_name],
    );
    // Deleted.
    copy_dir(&ours, &work);
    std::fs::remove_file(work.join(&ibd_rel)).expect("rm");
    assert_finds(&work, "ibd deleted", &["[missing]", &ibd_name]);
    // An extra file.
    copy_dir(&ours, &work);
    std::fs::write(work.join("v/stray.frm"), b"x").expect("write");
    assert_finds(&work, "extra file", &["[extra]", "v/stray.frm"]);
    // Two same-size tablespaces swapped.
    copy_dir(&ours, &work);
    let (a, b) = (
        work.join("mysql/innodb_table_stats.ibd"),
        work.join("mysql/innodb_index_stats.ibd"),
    );
    assert_eq!(
        a.metadata().expect("a").len(),
        b.metadata().expect("b").len()
    );
    let tmp = work.join("swap");
    std::fs::rename(&a, &tmp).expect("swap");
    std::fs::rename(&b, &a).expect("swap");
    std::fs::rename(&tmp, &b).expect("swap");
    assert_finds(
        &work,
        "tablespaces swapped",
        &[
            "[content] mysql/innodb_index_stats.ibd",
            "[content] mysql/innodb_table_stats.ibd",
        ],
    );
    // A flipped byte in the redo area of ib_logfile0, and the log cut short.
    copy_dir(&ours, &work);
    let log = work.join("ib_logfile0");
    let loglen = log.metadata().expect("log").len();
    assert!(loglen > 12288 + 64, "the backup copied some redo: {loglen}");
    flip(&log, 12288 + (loglen - 12288) / 2);
    assert_finds(
        &work,
        "flipped byte in the redo",
        &["[redo] ib_logfile0", "last_lsn"],
    );
    copy_dir(&ours, &work);
    truncate(&work.join("ib_logfile0"), 40);
    assert_finds(&work, "redo cut short", &["[redo] ib_logfile0", "last_lsn"]);
    // to_lsn edited.
    copy_dir(&ours, &work);
    let ck = work.join("xtrabackup_checkpoints");
    let text = std::fs::read_to_string(&ck).expect("checkpoints");
    let edited: String = text
        .lines()
        .map(|l| {
            l.strip_prefix("to_lsn = ").map_or_else(
                || l.to_owned(),
                |v| format!("to_lsn = {}", v.parse::<u64>().expect("lsn") - 1000),
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n";
    std::fs::write(&ck, edited).expect("write");
    assert_finds(
        &work,
        "to_lsn edited",
        &["[metadata] xtrabackup_checkpoints", "innodb_to_lsn"],
    );
    // A flipped byte in a .frm and in a .MYD.
    for f in ["v/big.frm", "v/m.MYD"] {
        copy_dir(&ours, &work);
        flip(&work.join(f), 40);
        assert_finds(
            &work,
            &format!("flipped byte in {f}"),
            &["[content]", f, "BLAKE3"],
        );
    }
    // The manifest removed.
    copy_dir(&ours, &work);
    std::fs::remove_file(work.join("hotbak_manifest")).expect("rm");
    assert_finds(&work, "manifest removed", &["[missing] hotbak_manifest"]);
    // Not a backup at all: a usage error, not "damaged".
    let (code, err) = verify(&root.join("src"));
    assert_eq!(code, Some(2), "{err}");
}

/// `hotbak verify --stream ARGS < input`: the exit code and stderr.
fn verify_stream(input: &[u8], args: &[&OsStr]) -> (Option<i32>, String) {
    let mut child = Command::new(bin("hotbak"))
        .args(["verify", "--stream"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("hotbak verify --stream starts");
    let mut stdin = child.stdin.take().expect("stdin");
    let out = std::thread::scope(|s| {
        s.spawn(move || {
            // It may stop reading at the damage: a broken pipe is expected.
            let _ = stdin.write_all(input);
        });
        child.wait_with_output().expect("hotbak verify exits")
    });
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Expect exit `code` and every needle in stderr.
fn assert_stream(input: &[u8], args: &[&OsStr], case: &str, code: i32, needles: &[&str]) {
    let (got, err) = verify_stream(input, args);
    assert_eq!(got, Some(code), "{case}: expected exit {code}:\n{err}");
    for n in needles {
        assert!(err.contains(n), "{case}: no {n:?} in:\n{err}");
    }
    eprintln!("{case}: ok\n{err}");
}

/// `mbstream -c` of every file under `dir`: a valid container (fresh CRCs)
/// of whatever the files hold.
fn mbstream_of(dir: &Path) -> Vec<u8> {
    let mbstream = tool("mbstream").expect("mbstream");
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                stack.push(p);
            } else {
                files.push(p.strip_prefix(dir).expect("under dir").to_path_buf());
            }
        }
    }
    files.sort();
    let out = Command::new(mbstream)
        .arg("-c")
        .args(&files)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("mbstream -c");
    assert!(
        out.status.success(),
        "mbstream -c: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// `hotbak verify --stream` (issue 14): intact streams (plain, zstd,
/// encrypted) pass; damage that survives the container checks (a valid
/// `mbstream -c` container of a damaged backup) is found page by page, with
/// every finding reported; a stream cut short, a flipped byte in the
/// stream and a wrong key are refused, each with its exit code and text.
#[test]
#[allow(clippy::too_many_lines)]
fn verify_stream_finds_container_and_content_damage() {
    let (Some(_), Some(_), Some(_)) = (
        tool("mariadbd"),
        tool("mariadb-install-db"),
        tool("mbstream"),
    ) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let mut sb = source_with_tables(root);
    let keyfile = root.join("key");
    std::fs::write(&keyfile, [7u8; 32]).expect("key");
    let wrong = root.join("wrong-key");
    std::fs::write(&wrong, [8u8; 32]).expect("key");
    let plain = hotbak_backup(&sb, &[OsStr::new("--stream")]);
    let zstd = hotbak_backup(
        &sb,
        &[OsStr::new("--stream"), OsStr::new("--compress=zstd")],
    );
    let enc = hotbak_backup(
        &sb,
        &[
            OsStr::new("--stream"),
            OsStr::new("--compress=lz4"),
            OsStr::new("--encrypt"),
            OsStr::new("--encrypt-key-file"),
            keyfile.as_os_str(),
        ],
    );
    let ours = root.join("ours");
    hotbak_backup(&sb, &[OsStr::new("--target-dir"), ours.as_os_str()]);
    // mariabackup's own stream with its `.qp` compression, when it is installed.
    let theirs = tool("mariabackup").map(|mb| {
        let out = Command::new(mb)
            .arg("--no-defaults")
            .arg("--backup")
            .arg("--stream=xbstream")
            .arg("--compress")
            .arg("--user=root")
            .arg(format!("--socket={}", sb.socket().display()))
            .arg(format!(
                "--target-dir={}",
                root.join("mb-scratch").display()
            ))
            .stdin(Stdio::null())
            .output()
            .expect("mariabackup runs");
        assert!(
            out.status.success(),
            "mariabackup --stream --compress: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    });
    sb.stop().expect("stops");
    let key = [OsStr::new("--decrypt-key-file"), keyfile.as_os_str()];

    // Intact: plain, zstd, lz4 + encrypted; one worker and several.
    for (stream, what, args) in [
        (&plain, "plain", &[][..]),
        (
            &zstd,
            "zstd",
            &[OsStr::new("--parallel"), OsStr::new("1")][..],
        ),
        (&enc, "lz4 encrypted", &key[..]),
    ] {
        let (code, err) = verify_stream(stream, args);
        assert_eq!(code, Some(0), "{what} stream must verify:\n{err}");
        assert!(err.contains("completed OK"), "{what}: {err}");
        assert!(err.contains("manifest checked"), "{what}: {err}");
        assert!(!err.contains(" 0 InnoDB pages"), "{what}: {err}");
        assert!(!err.contains(" 0 redo bytes"), "{what}: {err}");
        eprintln!("intact {what}: ok\n{err}");
    }
    // The stream's progress lines: a pipe has no total, a file has one.
    let (code, err) = verify_stream(&plain, &[OsStr::new("--progress"), OsStr::new("lines")]);
    assert_eq!(code, Some(0), "{err}");
    let (done, total, rest) = progress_lines(&err)
        .pop()
        .unwrap_or_else(|| panic!("no progress line:\n{err}"));
    assert!(
        done > 0 && total.is_none() && rest.contains("ETA -"),
        "{err}"
    );
    let file = root.join("plain.xbs");
    std::fs::write(&file, &plain).expect("write");
    let out = Command::new(bin("hotbak"))
        .args(["verify", "--stream", "--progress", "lines"])
        .stdin(std::fs::File::open(&file).expect("open"))
        .output()
        .expect("hotbak verify runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let (_, _, rest) = progress_lines(&err)
        .pop()
        .unwrap_or_else(|| panic!("no progress line:\n{err}"));
    assert!(
        rest.contains("(100%)"),
        "a file on stdin has a total: {err}"
    );
    let (code, err) = verify_stream(&plain, &[OsStr::new("--progress"), OsStr::new("none")]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        progress_lines(&err).is_empty() && !err.contains(" hotbak: ["),
        "{err}"
    );
    if let Some(theirs) = &theirs {
        let (code, err) = verify_stream(theirs, &[]);
        assert_eq!(
            code,
            Some(0),
            "mariabackup's qpress stream must verify:\n{err}"
        );
        assert!(err.contains("no hotbak manifest"), "{err}");
        assert!(!err.contains(" 0 InnoDB pages"), "{err}");
        eprintln!("intact mariabackup --compress stream: ok\n{err}");
    }
    // The directory mode agrees with the stream mode on the same backup.
    let dir_mode = assert_whole(&ours, "our backup");
    let (code, err) = verify_stream(&mbstream_of(&ours), &[]);
    assert_eq!(code, Some(0), "mbstream -c of an intact backup:\n{err}");
    // The same files, pages and redo bytes counted by both modes.
    let summary = |e: &str| {
        e.lines()
            .find(|l| l.starts_with("hotbak: verify: "))
            .map(str::to_owned)
            .unwrap_or_default()
    };
    assert_eq!(summary(&dir_mode), summary(&err), "{dir_mode}\n{err}");

    // Damage no container check can see (mbstream -c recomputes every CRC):
    // a flipped byte in a page of v/big.ibd, a flipped byte in the redo, a
    // flipped byte in a .frm; every one of them reported.
    let work = root.join("work");
    copy_dir(&ours, &work);
    flip(&work.join("v/big.ibd"), 3 * 16384 + 1000);
    let log = work.join("ib_logfile0");
    let loglen = log.metadata().expect("log").len();
    flip(&log, 12288 + (loglen - 12288) / 2);
    flip(&work.join("v/big.frm"), 40);
    assert_stream(
        &mbstream_of(&work),
        &[],
        "damaged backup in a valid container",
        3,
        &[
            "[page] v/big.ibd: page 3 (byte 49152)",
            "checksum",
            "[redo] ib_logfile0",
            "last_lsn",
            "[content] v/big.frm: BLAKE3",
            "[content] v/big.ibd: BLAKE3",
        ],
    );
    // The same damage only in the page: found by the page check alone in a
    // stream whose manifest xbextract -c computed from the damaged files.
    copy_dir(&ours, &work);
    flip(&work.join("v/big.ibd"), 3 * 16384 + 1000);
    std::fs::remove_file(work.join("hotbak_manifest")).expect("rm");
    std::fs::remove_file(work.join("hotbak_stream_info")).expect("rm");
    let mut files: Vec<String> = Vec::new();
    let mut stack = vec![work.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                stack.push(p);
            } else {
                files.push(p.strip_prefix(&work).expect("under").display().to_string());
            }
        }
    }
    files.sort();
    let out = Command::new(bin("xbextract"))
        .arg("-c")
        .arg("-C")
        .arg(&work)
        .args(&files)
        .stdin(Stdio::null())
        .output()
        .expect("xbextract -c");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (code, err) = verify_stream(&out.stdout, &[]);
    assert_eq!(code, Some(3), "page damage under a fresh manifest:\n{err}");
    assert!(
        err.contains("[page] v/big.ibd: page 3 (byte 49152)"),
        "{err}"
    );
    assert!(err.contains("1 findings (1 page)"), "{err}");

    // Cut short: in the middle of a chunk, and between whole files (no manifest).
    let half = &plain[..plain.len() / 2];
    assert_stream(
        half,
        &[],
        "stream cut in half",
        3,
        &["[stream] stdin: truncated stream", "input ended at offset"],
    );
    let chunk_at = {
        let mut dec = hotbak::format::xbstream::Decoder::new();
        let mut buf = bytes::BytesMut::from(&plain[..]);
        let mut at = None;
        while let Some(c) = dec.decode(&mut buf).expect("an intact stream") {
            if c.path == b"hotbak_manifest".as_slice() {
                at = Some(c.stream_offset);
                break;
            }
        }
        usize::try_from(at.expect("the manifest's first chunk")).expect("offset")
    };
    assert_stream(
        &plain[..chunk_at],
        &[],
        "stream cut before the manifest",
        3,
        &[&format!(
            "[stream] stdin: truncated stream: input ended at offset {chunk_at} without the hotbak manifest"
        )],
    );
    // A flipped byte in a page of v/big.ibd inside its chunk: the chunk's
    // CRC names the file and the offset.
    let (start, end) = {
        let mut dec = hotbak::format::xbstream::Decoder::new();
        let mut buf = bytes::BytesMut::from(&plain[..]);
        let mut big = None;
        loop {
            let c = dec
                .decode(&mut buf)
                .expect("an intact stream")
                .expect("a chunk after v/big.ibd's");
            if let Some(s) = big {
                break (s, usize::try_from(c.stream_offset).expect("offset"));
            }
            if c.path == b"v/big.ibd".as_slice() && c.payload.len() >= 4 * 16384 {
                big = Some(usize::try_from(c.stream_offset).expect("offset"));
            }
        }
    };
    let mut flipped = plain.clone();
    flipped[end - 16384 + 1000] ^= 0x5a;
    assert_stream(
        &flipped,
        &[],
        "flipped byte in a page of v/big.ibd in the stream",
        3,
        &[
            "[stream] stdin: corrupt stream at offset",
            "(path \"v/big.ibd\"): payload CRC-32 mismatch",
        ],
    );
    assert!(start < end);
    // Nothing at all.
    assert_stream(
        &[],
        &[],
        "empty input",
        3,
        &["[stream] stdin: empty stream"],
    );
    // Keys: none, and the wrong one.
    assert_stream(
        &enc,
        &[],
        "encrypted stream without a key",
        2,
        &["is encrypted: pass --decrypt-key-file"],
    );
    assert_stream(
        &enc,
        &[OsStr::new("--decrypt-key-file"), wrong.as_os_str()],
        "wrong key",
        2,
        &["wrong key (key id"],
    );
}
