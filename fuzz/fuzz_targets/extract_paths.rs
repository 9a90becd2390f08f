//! Arbitrary raw paths (absolute, `..`, `.`, empty components, raw bytes) in P/E, D and
//! R chunks, extracted with `hotbak::extract::extract` into `parent/t`, where `t` holds
//! symlinks pointing out of it (relative, to the parent, absolute).
//!
//! Asserts, whatever the outcome: nothing appears in `parent` except `t` (so nothing was
//! written outside the target and no symlink was followed), the planted symlinks'
//! targets were never created, and after a failure no partial (`.hbpart`) file is left
//! (when the stream itself never named one).
#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use arbitrary::Arbitrary;
use hotbak::extract::{self, DecodeOptions, Plan};
use hotbak::format::manifest::{StreamInfo, STREAM_INFO_NAME, VERSION};
use hotbak::format::xbstream;
use libfuzzer_sys::fuzz_target;

const NAMES: [&str; 9] = [
    "a",
    "b",
    "lnk",
    "dirlnk",
    "abslnk",
    "x.hbpart",
    "hotbak_manifest",
    STREAM_INFO_NAME,
    "outside",
];

#[derive(Arbitrary, Debug)]
enum Comp {
    Name(u8),
    Dot,
    DotDot,
    Empty,
    Raw(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
struct RawPath {
    /// Prefix the parent's absolute path, so an escape would land where we look.
    absolute: bool,
    comps: Vec<Comp>,
}

impl RawPath {
    fn bytes(&self, parent: &Path) -> Vec<u8> {
        let mut v = Vec::new();
        if self.absolute {
            v.extend_from_slice(parent.as_os_str().as_encoded_bytes());
            v.push(b'/');
        }
        for (i, c) in self.comps.iter().take(6).enumerate() {
            if i > 0 {
                v.push(b'/');
            }
            match c {
                Comp::Name(n) => {
                    v.extend_from_slice(NAMES[usize::from(*n) % NAMES.len()].as_bytes())
                }
                Comp::Dot => v.push(b'.'),
                Comp::DotDot => v.extend_from_slice(b".."),
                Comp::Empty => {}
                Comp::Raw(r) => v.extend_from_slice(&r[..r.len().min(16)]),
            }
        }
        v.truncate(xbstream::MAX_PATH_LEN);
        v
    }
}

#[derive(Arbitrary, Debug)]
enum Entry {
    File {
        path: RawPath,
        data: Vec<u8>,
        close: bool,
    },
    Remove {
        path: RawPath,
    },
    Rename {
        from: RawPath,
        to: RawPath,
    },
}

#[derive(Arbitrary, Debug)]
struct Input {
    hotbak_header: bool,
    entries: Vec<Entry>,
    parallel: u8,
    force: bool,
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    })
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        let Ok(m) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if m.is_dir() {
            walk(&p, out);
        }
        out.push(p);
    }
}

fuzz_target!(|input: Input| {
    let tmp = tempfile::tempdir().expect("tempdir");
    let parent = tmp.path().to_path_buf();
    let t = parent.join("t");
    std::fs::create_dir(&t).expect("mkdir");
    std::os::unix::fs::symlink("../outside", t.join("lnk")).expect("symlink");
    std::os::unix::fs::symlink("..", t.join("dirlnk")).expect("symlink");
    std::os::unix::fs::symlink(&parent, t.join("abslnk")).expect("symlink");

    let mut stream = Vec::new();
    if input.hotbak_header {
        let info = StreamInfo {
            version: VERSION,
            tool: "fuzz".into(),
            chain: vec![],
            key_id: None,
        };
        xbstream::put_payload(
            &mut stream,
            STREAM_INFO_NAME.as_bytes(),
            0,
            &info.to_bytes(),
        );
        xbstream::put_eof(&mut stream, STREAM_INFO_NAME.as_bytes());
    }
    let mut names_partial = false;
    for e in input.entries.iter().take(16) {
        match e {
            Entry::File { path, data, close } => {
                let p = path.bytes(&parent);
                names_partial |= p.windows(7).any(|w| w == b".hbpart");
                xbstream::put_payload(&mut stream, &p, 0, &data[..data.len().min(512)]);
                if *close {
                    xbstream::put_eof(&mut stream, &p);
                }
            }
            Entry::Remove { path } => xbstream::put_remove(&mut stream, &path.bytes(&parent)),
            Entry::Rename { from, to } => {
                let (f, t2) = (from.bytes(&parent), to.bytes(&parent));
                names_partial |= t2.windows(7).any(|w| w == b".hbpart");
                xbstream::put_rename(&mut stream, &f, &t2);
            }
        }
    }

    let plan = Plan {
        dir: t.clone(),
        parallel: usize::from(input.parallel % 4) + 1,
        force: input.force,
        sync: false,
        verbose: false,
        list: false,
        decode: DecodeOptions::default(),
    };
    let res = runtime().block_on(extract::extract(&plan, &stream[..], "fuzz"));

    let mut top: Vec<String> = std::fs::read_dir(&parent)
        .expect("parent")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    top.sort();
    assert_eq!(
        top,
        vec!["t".to_owned()],
        "something was written outside the target (result {res:?})"
    );
    if res.is_err() && !names_partial {
        let mut all = Vec::new();
        walk(&t, &mut all);
        let partials: Vec<&PathBuf> = all
            .iter()
            .filter(|p| p.to_string_lossy().ends_with(".hbpart"))
            .collect();
        assert!(
            partials.is_empty(),
            "partial files left after a failure: {partials:?} ({res:?})"
        );
    }
});
