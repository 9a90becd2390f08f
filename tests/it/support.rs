//! Shared helpers for the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

/// Path of a built binary of this package.
pub fn bin(name: &str) -> PathBuf {
    match name {
        "hotbak" => PathBuf::from(env!("CARGO_BIN_EXE_hotbak")),
        "xbextract" => PathBuf::from(env!("CARGO_BIN_EXE_xbextract")),
        other => panic!("unknown binary {other}"),
    }
}

/// Find an external tool. Returns `None` (after printing why) when it is missing,
/// unless `HOTBAK_REQUIRE_TOOLS=1`, in which case a missing tool fails the test.
pub fn tool(name: &str) -> Option<PathBuf> {
    let dirs = std::env::var_os("PATH").unwrap_or_default();
    let mut cands: Vec<PathBuf> = std::env::split_paths(&dirs).map(|d| d.join(name)).collect();
    cands.push(PathBuf::from("/usr/sbin").join(name));
    cands.push(PathBuf::from("/usr/bin").join(name));
    if let Some(p) = cands.into_iter().find(|p| p.is_file()) {
        return Some(p);
    }
    if std::env::var("HOTBAK_REQUIRE_TOOLS").as_deref() == Ok("1") {
        panic!("required tool {name} is not installed (HOTBAK_REQUIRE_TOOLS=1)");
    }
    eprintln!("SKIP: {name} not found on PATH");
    None
}

/// Path to the shared reference material (vectors), if present beside the repo.
pub fn shared_dir() -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared");
    p.is_dir().then_some(p)
}

/// A two-thread tokio runtime for tests that drive async code.
pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}
