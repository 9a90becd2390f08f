//! xbextract: a strict, fast drop-in for `mbstream -x` / `xbstream -x`.
//!
//! Exit codes: see `hotbak::app::exit::code` (0 ok, 1 failed, 2 usage,
//! 3 corrupt or truncated input, 4 server).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;
use hotbak::error::UsageError;
use hotbak::extract::{self, DecodeOptions, Plan};
use hotbak::format::path::RelPath;
use hotbak::sink::{FileMeta, Output, Pipeline};

/// Extract (or create) xbstream archives: strict, parallel, and honest about failure.
#[derive(Parser, Debug)]
#[command(name = "xbextract", version, about)]
struct Args {
    /// Extract a stream read from stdin (default) or from --listen.
    #[arg(short = 'x', long = "extract", conflicts_with = "create")]
    extract: bool,
    /// Create a stream of FILES on stdout (paths are stored as given; they must be relative).
    #[arg(short = 'c', long = "create")]
    create: bool,
    /// Change to DIR before extracting or creating (created when extracting if missing).
    #[arg(short = 'C', long = "directory", value_name = "DIR")]
    directory: Option<PathBuf>,
    /// Worker threads (default: the number of cores; `mbstream`'s default is 1).
    #[arg(short = 'p', long = "parallel", value_name = "N")]
    parallel: Option<usize>,
    /// Print each file as it completes.
    #[arg(short = 'v', long = "verbose")]
    verbose: bool,
    /// List the files of the stream (path and size) without writing anything.
    #[arg(long = "list", conflicts_with = "create")]
    list: bool,
    /// Accept one TCP connection on ADDR:PORT and extract what it sends.
    #[arg(long = "listen", value_name = "ADDR:PORT", conflicts_with = "create")]
    listen: Option<String>,
    /// Overwrite files that already exist.
    #[arg(long = "force")]
    force: bool,
    /// Do not fsync files and directories before reporting success.
    #[arg(long = "no-sync")]
    no_sync: bool,
    /// Decompress every compressed file, including mariabackup's `.qp`.
    #[arg(long = "decompress", conflicts_with = "no_decompress")]
    decompress: bool,
    /// Keep compressed files as they are in the stream.
    #[arg(long = "no-decompress")]
    no_decompress: bool,
    /// Key file for encrypted streams: 32 raw bytes or 64 hex characters.
    #[arg(
        long = "decrypt-key-file",
        visible_alias = "encrypt-key-file",
        value_name = "FILE"
    )]
    key_file: Option<PathBuf>,
    /// Name of an environment variable holding the key as 64 hex characters.
    #[arg(long = "decrypt-key-env", value_name = "VAR")]
    key_env: Option<String>,
    /// Decode files already extracted in DIR instead of reading a stream
    /// (with --decrypt and/or --decompress), like `xtrabackup --decompress`.
    #[arg(long = "target-dir", value_name = "DIR", conflicts_with_all = ["create", "listen", "list"])]
    target_dir: Option<PathBuf>,
    /// Decrypt (`.hbenc` files; XtraBackup's spelling `--decrypt=AES256
    /// --encrypt-key-file=F` is accepted). A stream is decrypted whenever a
    /// key is given; with --target-dir this selects the decryption.
    #[arg(long = "decrypt", value_name = "ALGO", num_args = 0..=1, default_missing_value = "AES256")]
    decrypt: Option<String>,
    /// With --target-dir: remove each original after its decoded file is in place.
    #[arg(long = "remove-original")]
    remove_original: bool,
    /// With -c: do not append the hotbak stream header and manifest.
    #[arg(long = "no-manifest")]
    no_manifest: bool,
    /// Extract the committed backup at s3://BUCKET/PREFIX (parallel ranged GETs);
    /// refused when the prefix has no commit object.
    #[arg(long = "from", value_name = "s3://BUCKET/PREFIX", conflicts_with_all = ["create", "listen", "target_dir"])]
    from: Option<String>,
    /// Object-store options (with --from; each defaults to its AWS_* variable).
    #[command(flatten)]
    s3: hotbak::app::s3::S3Args,
    /// The log on stderr: `text` (the default) or `json`, one event object
    /// per line (`format-spec/events.md`); also `HOTBAK_LOG_FORMAT`.
    #[arg(long = "log-format", value_name = "text|json")]
    #[allow(dead_code)]
    log_format: Option<String>,
    /// Files to archive (with -c).
    files: Vec<PathBuf>,
}

/// Bytes read per piece by `-c`: one P chunk each, as `mbstream -c` writes them.
const READ_PIECE: usize = hotbak::format::xbstream::DEFAULT_CHUNK_LEN;

fn main() -> ExitCode {
    hotbak::app::main_with("xbextract", run)
}

async fn run(args: Args) -> Result<()> {
    if args.create {
        return create(args).await;
    }
    if !args.files.is_empty() {
        return Err(UsageError(format!(
            "unexpected file arguments {:?} (use -c to create)",
            args.files
        ))
        .into());
    }
    if let Some(alg) = &args.decrypt {
        let norm = alg.to_ascii_uppercase().replace(['-', '_'], "");
        if norm != "AES256" && norm != "AES256GCM" {
            return Err(UsageError(format!(
                "--decrypt={alg}: hotbak streams are encrypted with AES256 (AES-256-GCM); XtraBackup's AES128/AES192 are not supported"
            ))
            .into());
        }
        if args.target_dir.is_none() && args.key_file.is_none() && args.key_env.is_none() {
            return Err(UsageError(
                "--decrypt needs the key: --encrypt-key-file F (or --decrypt-key-file F, --decrypt-key-env VAR)".into(),
            )
            .into());
        }
    }
    let decode = decode_options(&args)?;
    if let Some(dir) = &args.target_dir {
        if args.decrypt.is_none() && !args.decompress {
            return Err(
                UsageError("--target-dir needs --decrypt and/or --decompress".into()).into(),
            );
        }
        let plan = hotbak::extract::AtRestPlan {
            dir: dir.clone(),
            parallel: workers(args.parallel),
            decrypt: args.decrypt.is_some(),
            decompress: args.decompress,
            remove_original: args.remove_original,
            force: args.force,
            sync: !args.no_sync,
            decode,
        };
        let s = tokio::task::spawn_blocking(move || hotbak::extract::decode_dir(&plan)).await??;
        hotbak::events::info(format_args!(
            "decoded {} files ({} bytes) in {}; {} verified against the manifest",
            s.files,
            s.bytes,
            dir.display(),
            s.verified
        ));
        return Ok(());
    }
    let plan = Plan {
        dir: args.directory.clone().unwrap_or_else(|| PathBuf::from(".")),
        parallel: workers(args.parallel),
        force: args.force,
        sync: !args.no_sync,
        verbose: args.verbose,
        list: args.list,
        decode,
    };
    let summary = if let Some(url) = &args.from {
        let (commit, mut download) = hotbak::app::s3::open_download(url, &args.s3).await?;
        hotbak::events::info(format_args!(
            "{url}: committed {} by {}, {} bytes in {} objects",
            commit.created,
            commit.tool,
            commit.total_bytes(),
            commit.objects.len()
        ));
        let res = extract::extract(&plan, &mut download, url).await;
        // The download's own error is the root cause of a read error.
        let dl = download.finish().await;
        let summary = res?;
        dl?;
        summary
    } else if let Some(addr) = &args.listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("--listen {addr}: cannot bind"))?;
        hotbak::events::info(format_args!(
            "listening on {}",
            listener
                .local_addr()
                .map_or_else(|_| addr.clone(), |a| a.to_string())
        ));
        let (sock, peer) = listener
            .accept()
            .await
            .with_context(|| format!("--listen {addr}: accept failed"))?;
        drop(listener);
        hotbak::events::info(format_args!("receiving from {peer}"));
        extract::extract(&plan, sock, &format!("tcp://{peer}")).await?
    } else {
        extract::extract(&plan, extract::DropBehind::stdin(), "stdin").await?
    };
    for w in &summary.warnings {
        hotbak::events::warn(format_args!("{w}"));
    }
    if args.verbose || !args.list {
        hotbak::events::info(format_args!(
            "{} files, {} bytes written from {} stream bytes{}",
            summary.files,
            summary.bytes_out,
            summary.bytes_in,
            if summary.verified {
                "; every file verified against the manifest"
            } else {
                ""
            }
        ));
        hotbak::events::info(format_args!("completed OK!"));
    }
    Ok(())
}

fn decode_options(args: &Args) -> Result<DecodeOptions> {
    let mut d = DecodeOptions {
        decompress: if args.decompress {
            Some(true)
        } else if args.no_decompress {
            Some(false)
        } else {
            None
        },
        ..DecodeOptions::default()
    };
    hotbak_glue::install_decoders(&mut d, args.key_file.as_deref(), args.key_env.as_deref())?;
    Ok(d)
}

async fn create(args: Args) -> Result<()> {
    if args.files.is_empty() {
        return Err(UsageError("-c needs at least one file".into()).into());
    }
    if let Some(d) = &args.directory {
        std::env::set_current_dir(d)
            .with_context(|| format!("-C {}: cannot change directory", d.display()))?;
    }
    let mut rels = Vec::new();
    for f in &args.files {
        let rel = RelPath::from_path(f).map_err(|e| UsageError(format!("{}: {e}", f.display())))?;
        rels.push((f.clone(), rel));
    }
    let (input, pipeline) = Pipeline::builder()
        .channel_frames(2)
        .manifest(!args.no_manifest)
        .build(Output::stdout());
    let res = async {
        for (f, rel) in &rels {
            let file =
                std::fs::File::open(f).with_context(|| format!("{}: cannot open", f.display()))?;
            let file = std::sync::Arc::new(file);
            let mut w = input.open(FileMeta::new(rel.clone())).await?;
            // Read ahead one piece on the blocking pool while the previous one is sent.
            let read = |file: std::sync::Arc<std::fs::File>| {
                tokio::task::spawn_blocking(move || -> std::io::Result<Vec<u8>> {
                    use std::io::Read;
                    let mut v = Vec::with_capacity(READ_PIECE);
                    (&*file).take(READ_PIECE as u64).read_to_end(&mut v)?;
                    Ok(v)
                })
            };
            let mut next = read(file.clone());
            loop {
                let piece = next
                    .await
                    .context("reader task failed")?
                    .with_context(|| format!("{}: read failed", f.display()))?;
                if piece.is_empty() {
                    break;
                }
                next = read(file.clone());
                w.write(bytes::Bytes::from(piece)).await?;
            }
            w.close().await?;
            if args.verbose {
                hotbak::events::line(rel, format_args!("file {rel}"));
            }
        }
        anyhow::Ok(())
    }
    .await;
    drop(input);
    match res {
        Ok(()) => {
            pipeline.finish().await?;
            Ok(())
        }
        Err(e) => {
            // Prefer the graph's root cause (e.g. a closed stdout).
            if let Some(root) = pipeline.abort().await {
                return Err(root.into());
            }
            Err(e)
        }
    }
}

/// Glue to the transform modules (decryptors and decompressors).
mod hotbak_glue {
    use std::path::Path;

    use anyhow::Result;
    use hotbak::extract::DecodeOptions;

    pub fn install_decoders(
        d: &mut DecodeOptions,
        key_file: Option<&Path>,
        key_env: Option<&str>,
    ) -> Result<()> {
        hotbak::extract::install_decoders(d, key_file, key_env)
    }
}

/// `-p N`, or the number of cores.
fn workers(p: Option<usize>) -> usize {
    p.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, std::num::NonZero::get))
        .max(1)
}
