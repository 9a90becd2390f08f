//! `hotbak verify --target-dir` (issue 14): a real backup, damaged one way
//! at a time, must fail with the finding named; intact backups (ours,
//! mariabackup's, prepared) pass.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use hotbak::mysql::Session;
use hotbak::sandbox::{Sandbox, SandboxOptions};
use hotbak::testkit;

use crate::support::{bin, copy_dir, rt, tool};

fn verify(dir: &Path) -> (Option<i32>, String) {
    let out = Command::new(bin("hotbak"))
        .arg("verify")
        .arg("--target-dir")
        .arg(dir)
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
    let mut sb = Sandbox::create(&root.join("src"), SandboxOptions::default()).expect("sandbox");
    let ours = root.join("ours");
    let theirs = root.join("theirs");
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
