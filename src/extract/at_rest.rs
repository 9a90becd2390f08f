//! Decrypting and decompressing files already extracted (`xbextract
//! --target-dir DIR --decrypt/--decompress [--remove-original]`), like
//! `xtrabackup --decompress --remove-original`.
//!
//! Every `.hbenc` (with `--decrypt`) and `.zst`/`.lz4`/`.qp` (with
//! `--decompress`) file under DIR is decoded through the same inverse
//! chain the stream extractor uses, into the staging directory, then
//! renamed to its original name. When DIR holds a hotbak manifest, every
//! decoded file is checked against it. Originals are removed only with
//! `--remove-original`, and only after their decoded file is in place.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use super::decode::{self, DecodeOptions};
use super::worker::{push, OpenFile};
use super::{dirwriter, Error, Plan, Result};
use crate::format::manifest::{Manifest, MANIFEST_NAME};
use crate::format::path::RelPath;

/// A decoded file: stored path, output path, partial file, size, BLAKE3.
type Decoded = (RelPath, RelPath, PathBuf, u64, String);

/// What to do.
#[derive(Clone, Debug)]
pub struct AtRestPlan {
    /// The extracted backup.
    pub dir: PathBuf,
    /// Threads.
    pub parallel: usize,
    /// Decrypt `.hbenc`.
    pub decrypt: bool,
    /// Decompress `.zst`, `.lz4`, `.qp`.
    pub decompress: bool,
    /// Remove the original files after decoding.
    pub remove_original: bool,
    /// Replace existing decoded files.
    pub force: bool,
    /// fsync.
    pub sync: bool,
    /// Decoders (key, decompressors).
    pub decode: DecodeOptions,
}

/// What happened.
#[derive(Debug, Default)]
pub struct AtRestSummary {
    /// Files decoded.
    pub files: u64,
    /// Bytes written.
    pub bytes: u64,
    /// Files checked against the manifest.
    pub verified: u64,
}

fn walk(root: &Path, rel: &str, out: &mut Vec<RelPath>) -> Result<()> {
    let dir = if rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(rel)
    };
    let rd = std::fs::read_dir(&dir).map_err(|source| Error::Io {
        path: dir.display().to_string(),
        source,
    })?;
    for e in rd {
        let e = e.map_err(|source| Error::Io {
            path: dir.display().to_string(),
            source,
        })?;
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with(dirwriter::STAGING_PREFIX) {
            continue;
        }
        let r = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        let ft = e.file_type().map_err(|source| Error::Io {
            path: r.clone(),
            source,
        })?;
        if ft.is_dir() {
            walk(root, &r, out)?;
        } else if ft.is_file() {
            if let Ok(p) = RelPath::new(&r) {
                out.push(p);
            }
        }
    }
    Ok(())
}

/// Decode the files of an extracted directory in place.
///
/// # Errors
/// I/O, corrupt or truncated input, manifest mismatch; partial outputs are removed.
pub fn decode_dir(plan: &AtRestPlan) -> Result<AtRestSummary> {
    let mut all = Vec::new();
    walk(&plan.dir, "", &mut all)?;
    let mut opts = plan.decode.clone();
    if !plan.decrypt {
        opts.decrypt = None;
    }
    opts.decompress = Some(plan.decompress);
    if plan.decrypt && opts.decrypt.is_none() {
        return Err(Error::Usage(
            "--decrypt needs --decrypt-key-file or --decrypt-key-env".into(),
        ));
    }
    // The manifest, if present (decrypt it first if needed).
    let xplan = Plan {
        dir: plan.dir.clone(),
        parallel: plan.parallel,
        force: plan.force,
        sync: plan.sync,
        verbose: false,
        list: false,
        decode: opts.clone(),
    };
    let mut jobs: Vec<(RelPath, RelPath, decode::Chain)> = Vec::new();
    for stored in all {
        let is_enc = stored.as_str().ends_with(decode::ENCRYPTED_SUFFIX);
        if is_enc && !plan.decrypt {
            continue;
        }
        let (out, chain) = decode::chain(&stored, &decode::Layers::HotbakSuffixes, &opts)?;
        if chain.decrypt.is_none() && chain.decompress.is_none() {
            continue;
        }
        jobs.push((stored, out, chain));
    }
    let staging = dirwriter::create_staging(&xplan)?;
    let next = AtomicU64::new(0);
    let results: Mutex<Vec<Decoded>> = Mutex::new(Vec::new());
    let first_err: Mutex<Option<Error>> = Mutex::new(None);
    let queue = Mutex::new(jobs);
    std::thread::scope(|s| {
        for _ in 0..plan.parallel.max(1) {
            s.spawn(|| loop {
                if first_err.lock().map_or(true, |g| g.is_some()) {
                    return;
                }
                let job = queue.lock().ok().and_then(|mut q| q.pop());
                let Some((stored, out, chain)) = job else {
                    return;
                };
                let part = staging.join(next.fetch_add(1, Ordering::Relaxed).to_string());
                match decode_one(&xplan, &stored, &out, chain, &part) {
                    Ok((size, hash)) => {
                        if let Ok(mut r) = results.lock() {
                            r.push((stored, out, part, size, hash));
                        }
                    }
                    Err(e) => {
                        if let Ok(mut g) = first_err.lock() {
                            g.get_or_insert(e);
                        }
                    }
                }
            });
        }
    });
    let cleanup = || {
        let _ = std::fs::remove_dir_all(&staging);
    };
    if let Some(e) = first_err.into_inner().ok().flatten() {
        cleanup();
        return Err(e);
    }
    let results = results.into_inner().unwrap_or_default();
    // Verify against the manifest when there is one in plain text.
    let mut verified = 0;
    // The manifest may have been decrypted by this very run.
    let mpath = results
        .iter()
        .find(|r| r.1.as_str() == MANIFEST_NAME)
        .map_or_else(|| plan.dir.join(MANIFEST_NAME), |r| r.2.clone());
    let manifest = match std::fs::read(&mpath) {
        Ok(b) => Some(Manifest::from_bytes(&b)?),
        Err(_) => None,
    };
    if let Some(m) = &manifest {
        for (stored, out, _, size, hash) in &results {
            // Only fully decoded files can be compared (a --decrypt-only run leaves .zst files).
            if let Some(e) = m
                .files
                .iter()
                .find(|e| e.stored == stored.as_str() && e.path == out.as_str())
            {
                if e.path != out.as_str() || e.size != *size || e.blake3 != *hash {
                    cleanup();
                    return Err(Error::Manifest(format!(
                        "{stored}: decoded content differs from the manifest ({})",
                        e.path
                    )));
                }
                verified += 1;
            }
        }
    }
    let mut summary = AtRestSummary {
        verified,
        ..AtRestSummary::default()
    };
    for (stored, out, part, size, _) in &results {
        if let Err(e) = dirwriter::commit(&xplan, out, part) {
            cleanup();
            return Err(e);
        }
        summary.files += 1;
        summary.bytes += size;
        if plan.remove_original {
            let p = stored.under(&plan.dir);
            std::fs::remove_file(&p).map_err(|source| Error::Io {
                path: p.display().to_string(),
                source,
            })?;
        }
    }
    std::fs::remove_dir(&staging).map_err(|source| Error::Io {
        path: staging.display().to_string(),
        source,
    })?;
    Ok(summary)
}

fn decode_one(
    plan: &Plan,
    stored: &RelPath,
    out: &RelPath,
    chain: decode::Chain,
    part: &Path,
) -> Result<(u64, String)> {
    use std::io::Read;
    let src = stored.under(&plan.dir);
    let mut input = std::fs::File::open(&src).map_err(|source| Error::Io {
        path: src.display().to_string(),
        source,
    })?;
    let file = dirwriter::create_partial(plan, out, part)?;
    let mut f = OpenFile::at_rest(stored.clone(), out.clone(), file, part.to_path_buf(), chain);
    let mut buf = vec![0u8; 4 << 20];
    loop {
        let n = input.read(&mut buf).map_err(|source| Error::Io {
            path: src.display().to_string(),
            source,
        })?;
        if n == 0 {
            break;
        }
        push(&mut f, &buf[..n], false)?;
    }
    push(&mut f, &[], true)?;
    f.finish_at_rest(plan.sync)
}
