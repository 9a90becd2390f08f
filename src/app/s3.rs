//! The object-store commands and options: `--stream-to s3://` (in
//! `backup`), `hotbak upload`, `hotbak info`, `verify --from`, and
//! `xbextract --from`. The store options follow the AWS conventions: each
//! falls back to its `AWS_*` environment variable.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::{Args, ValueEnum};

use crate::error::UsageError;
use crate::objstore::{self, layout, Addressing, Client, Config, Location};

/// Object-store options (each defaults to its AWS environment variable).
#[derive(Args, Debug, Clone, Default)]
#[command(next_help_heading = "Object storage")]
pub struct S3Args {
    /// S3 endpoint URL [env: AWS_ENDPOINT_URL]; AWS's regional endpoint when unset.
    #[arg(long, value_name = "URL")]
    pub s3_endpoint_url: Option<String>,
    /// Region [env: AWS_REGION]; us-east-1 when unset.
    #[arg(long, value_name = "REGION")]
    pub s3_region: Option<String>,
    /// Access key id [env: AWS_ACCESS_KEY_ID].
    #[arg(long, value_name = "ID")]
    pub s3_access_key_id: Option<String>,
    /// Secret access key [env: AWS_SECRET_ACCESS_KEY] (prefer the variable: arguments are visible in ps).
    #[arg(long, value_name = "SECRET")]
    pub s3_secret_access_key: Option<String>,
    /// Session token [env: AWS_SESSION_TOKEN].
    #[arg(long, value_name = "TOKEN")]
    pub s3_session_token: Option<String>,
    /// Bucket addressing: path (`endpoint/BUCKET/KEY`), virtual (`BUCKET.endpoint/KEY`),
    /// or auto (path with --s3-endpoint-url, virtual on AWS).
    #[arg(long, value_enum, default_value_t = AddressingArg::Auto)]
    pub s3_addressing: AddressingArg,
    /// Parts (uploads) or ranges (downloads) in flight; memory is about (N + 2) × part size.
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub s3_parallel: usize,
    /// Part size in bytes (K/M/G suffixes); default: 16M, or larger so 10,000 parts cover
    /// --s3-expected-size.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub s3_part_size: Option<u64>,
    /// Expected stream size, to choose the part size (K/M/G suffixes).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub s3_expected_size: Option<u64>,
    /// Attempts per request on transient failures (connection cut, 5xx, throttling).
    #[arg(long, value_name = "N", default_value_t = objstore::DEFAULT_ATTEMPTS)]
    pub s3_attempts: u32,
    /// Parts per object before the stream rolls over to the next object (S3: at most 10000).
    #[arg(long, value_name = "N", default_value_t = layout::MAX_PARTS, hide = true)]
    pub s3_max_parts: u32,
    /// Live backups (--stream-to s3://): segment size (K/M/G suffixes). Each full segment is
    /// completed at once and indexed, so a retake after a failure or kill reuses its files.
    #[arg(long, value_name = "SIZE", value_parser = parse_size,
          default_value_t = objstore::upload::DEFAULT_SEGMENT)]
    pub s3_segment_size: u64,
    /// Live backups: upload every file again, even those an earlier attempt without a
    /// commit object already stored (by default a retake references them).
    #[arg(long)]
    pub s3_no_reuse: bool,
}

/// `--s3-addressing`.
#[derive(ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AddressingArg {
    /// Path style with an explicit endpoint, virtual host on AWS.
    #[default]
    Auto,
    /// Path style.
    Path,
    /// Virtual-host style.
    Virtual,
}

/// `1234`, `16M`, `2G` (powers of 1024).
///
/// # Errors
/// A message naming the value.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (num, mult) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let m: u64 = match c.to_ascii_uppercase() {
                'K' => 1 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                'T' => 1 << 40,
                _ => return Err(format!("{s}: unknown size suffix")),
            };
            (&t[..i], m)
        }
        _ => (t, 1),
    };
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| format!("{s}: not a size"))
}

impl S3Args {
    /// The store configuration (command line, then the AWS variables).
    #[must_use]
    pub fn config(&self) -> Config {
        Config {
            endpoint: self.s3_endpoint_url.clone(),
            region: self.s3_region.clone(),
            access_key: self.s3_access_key_id.clone(),
            secret_key: self.s3_secret_access_key.clone(),
            session_token: self.s3_session_token.clone(),
            addressing: match self.s3_addressing {
                AddressingArg::Auto => Addressing::Auto,
                AddressingArg::Path => Addressing::Path,
                AddressingArg::Virtual => Addressing::VirtualHost,
            },
            attempts: self.s3_attempts.max(1),
            ..Config::default()
        }
        .from_env()
    }

    /// Upload shape for a stream of `expected` bytes (if known).
    ///
    /// # Errors
    /// [`UsageError`] for zero parallelism or parts.
    pub fn upload_options(
        &self,
        expected: Option<u64>,
    ) -> Result<objstore::upload::UploadOptions, UsageError> {
        if self.s3_parallel == 0 {
            return Err(UsageError("--s3-parallel must be at least 1".into()));
        }
        if self.s3_max_parts == 0 || self.s3_max_parts > layout::MAX_PARTS {
            return Err(UsageError(format!(
                "--s3-max-parts must be 1..={}",
                layout::MAX_PARTS
            )));
        }
        let expected = self.s3_expected_size.or(expected);
        Ok(objstore::upload::UploadOptions {
            part_size: layout::part_size(expected, self.s3_part_size, self.s3_max_parts),
            max_parts: self.s3_max_parts,
            parallel: self.s3_parallel,
            segment_bytes: self.s3_segment_size,
            reuse: !self.s3_no_reuse,
        })
    }

    /// A client for `loc`'s bucket.
    ///
    /// # Errors
    /// Bad endpoint or credentials combination.
    pub fn client(&self, loc: &Location) -> Result<Client, objstore::Error> {
        Client::new(self.config(), &loc.bucket)
    }
}

/// `hotbak upload`.
#[derive(Args, Debug)]
pub struct UploadArgs {
    /// The file to upload (an xbstream on disk, e.g. from `hotbak backup --stream > FILE`).
    pub file: PathBuf,
    /// Where: s3://BUCKET/PREFIX (the prefix must not hold a committed backup).
    pub dest: String,
    /// Resume state file (default: FILE.hotbak-upload): a rerun after a crash
    /// or kill sends only the parts the store does not hold.
    #[arg(long, value_name = "FILE")]
    pub state_file: Option<PathBuf>,
    /// Store options.
    #[command(flatten)]
    pub s3: S3Args,
}

/// `hotbak info`.
#[derive(Args, Debug)]
pub struct InfoArgs {
    /// s3://BUCKET/PREFIX (every backup under it), or a local directory of backups.
    pub location: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputArg::Text)]
    pub output: OutputArg,
    /// Store options.
    #[command(flatten)]
    pub s3: S3Args,
}

/// `--output`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputArg {
    /// Lines for people.
    Text,
    /// One JSON document.
    Json,
}

/// `hotbak upload FILE s3://…`: a resumable upload of a stream on disk.
///
/// # Errors
/// Usage, I/O and store errors.
pub async fn upload(a: UploadArgs) -> anyhow::Result<()> {
    use tokio::io::AsyncReadExt;
    let loc = Location::parse(&a.dest)?;
    let client = a.s3.client(&loc)?;
    let io = |source| objstore::Error::Io {
        path: a.file.display().to_string(),
        source,
    };
    let meta = tokio::fs::metadata(&a.file).await.map_err(io)?;
    if !meta.is_file() {
        return Err(UsageError(format!("{}: not a regular file", a.file.display())).into());
    }
    let opts = a.s3.upload_options(Some(meta.len()))?;
    let mtime_ns = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
    let state_path = a.state_file.clone().unwrap_or_else(|| {
        let mut p = a.file.clone().into_os_string();
        p.push(".hotbak-upload");
        PathBuf::from(p)
    });
    let abs = std::fs::canonicalize(&a.file).unwrap_or_else(|_| a.file.clone());
    let start = layout::StateLine::Start {
        location: loc.to_string(),
        file: abs.display().to_string(),
        size: meta.len(),
        mtime_ns,
        part_size: opts.part_size,
        max_parts: opts.max_parts,
    };
    let (resume, notes) = objstore::upload::Resume::open(&client, state_path, start).await?;
    for n in notes {
        crate::events::info(format_args!("{n}"));
    }
    let mut up = objstore::upload::Uploader::start(client, loc.clone(), opts, Some(resume)).await?;
    let mut f = tokio::fs::File::open(&a.file).await.map_err(io)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut scan = Scan::default();
    loop {
        let n = f.read(&mut buf).await.map_err(io)?;
        if n == 0 {
            break;
        }
        scan.feed(&buf[..n]);
        up.write(&buf[..n]).await?;
    }
    if up.bytes() != meta.len() {
        return Err(objstore::Error::Io {
            path: a.file.display().to_string(),
            source: std::io::Error::other(format!(
                "read {} bytes, the file had {} when the upload started (it changed)",
                up.bytes(),
                meta.len()
            )),
        }
        .into());
    }
    let (checkpoints, files) = scan.result();
    let r = up.finish("file", checkpoints, files).await?;
    crate::events::info(format_args!(
        "uploaded {} bytes to {loc} in {} objects: {} parts sent, {} already in the store",
        r.bytes, r.objects, r.parts_sent, r.parts_skipped
    ));
    crate::events::info(format_args!("upload completed OK!"));
    Ok(())
}

/// Reads an xbstream as it is uploaded, for the commit object: the plain
/// `xtrabackup_checkpoints` and the file count. Stops quietly at the first
/// thing that is not xbstream (any file may be uploaded).
#[derive(Default)]
struct Scan {
    dec: crate::format::xbstream::Decoder,
    buf: bytes::BytesMut,
    stopped: bool,
    checkpoints: Vec<u8>,
    files: u64,
}

impl Scan {
    fn feed(&mut self, data: &[u8]) {
        use crate::format::xbstream::ChunkType;
        if self.stopped {
            return;
        }
        self.buf.extend_from_slice(data);
        loop {
            match self.dec.decode(&mut self.buf) {
                Ok(Some(c)) => match c.ty {
                    ChunkType::Payload
                        if &c.path[..] == b"xtrabackup_checkpoints"
                            && self.checkpoints.len() + c.payload.len() <= 64 << 10 =>
                    {
                        self.checkpoints.extend_from_slice(&c.payload);
                    }
                    ChunkType::Eof => self.files += 1,
                    _ => {}
                },
                Ok(None) => return,
                Err(_) => {
                    self.stopped = true;
                    self.buf = bytes::BytesMut::new();
                    return;
                }
            }
        }
    }

    fn result(self) -> (BTreeMap<String, String>, Option<u64>) {
        if self.stopped || !self.buf.is_empty() {
            return (BTreeMap::new(), None);
        }
        (
            layout::key_values(&String::from_utf8_lossy(&self.checkpoints)),
            Some(self.files),
        )
    }
}

/// One backup found by `info`.
#[derive(Debug, serde::Serialize)]
pub struct InfoEntry {
    /// `s3://bucket/prefix` or a directory.
    pub location: String,
    /// Complete (a commit object, or a local backup with its checkpoints).
    pub complete: bool,
    /// Creation time.
    pub created: Option<String>,
    /// Stream bytes (store) or directory bytes.
    pub bytes: u64,
    /// `full-backuped`, `incremental`, …
    pub backup_type: Option<String>,
    /// `from_lsn`.
    pub from_lsn: Option<String>,
    /// `to_lsn`.
    pub to_lsn: Option<String>,
    /// Data objects.
    pub objects: usize,
    /// Why it is not complete.
    pub note: Option<String>,
}

/// `hotbak info`.
///
/// # Errors
/// Usage and store errors.
pub async fn info(a: InfoArgs) -> anyhow::Result<()> {
    let entries = if a.location.starts_with("s3://") {
        info_store(&a).await?
    } else {
        info_dir(&PathBuf::from(&a.location))?
    };
    match a.output {
        OutputArg::Json => println!("{}", serde_json::to_string_pretty(&entries)?),
        OutputArg::Text => {
            if entries.is_empty() {
                println!("no backups under {}", a.location);
            }
            for e in &entries {
                println!(
                    "{}  {}  {}  {} bytes  type={}  from_lsn={}  to_lsn={}{}",
                    e.location,
                    if e.complete { "complete" } else { "INCOMPLETE" },
                    e.created.as_deref().unwrap_or("-"),
                    e.bytes,
                    e.backup_type.as_deref().unwrap_or("-"),
                    e.from_lsn.as_deref().unwrap_or("-"),
                    e.to_lsn.as_deref().unwrap_or("-"),
                    e.note
                        .as_ref()
                        .map(|n| format!("  ({n})"))
                        .unwrap_or_default()
                );
            }
        }
    }
    Ok(())
}

async fn info_store(a: &InfoArgs) -> anyhow::Result<Vec<InfoEntry>> {
    let loc = Location::parse(&a.location)?;
    let client = a.s3.client(&loc)?;
    let listed = client.list(&loc.prefix).await?;
    // Group keys by their backup "directory": a key's parent, or for an
    // attempt's segment or index (`PREFIX/attempt-ID/seg.*`) the attempt's parent.
    let mut groups: BTreeMap<String, (bool, u64, usize)> = BTreeMap::new();
    // Per backup directory: objects of attempts (live backups), by name.
    let mut attempts: BTreeMap<String, Vec<(String, u64)>> = BTreeMap::new();
    for l in &listed {
        let (dir, name) = l.key.rsplit_once('/').unwrap_or(("", l.key.as_str()));
        if let Some((parent, a)) = dir.rsplit_once('/').or(Some(("", dir))) {
            let rel = format!("{a}/{name}");
            if layout::segment_of(&rel).is_some() || layout::index_of(&rel).is_some() {
                let g = groups.entry(parent.to_owned()).or_default();
                if layout::segment_of(&rel).is_some() {
                    g.1 += l.size;
                    g.2 += 1;
                }
                attempts
                    .entry(parent.to_owned())
                    .or_default()
                    .push((rel, l.size));
                continue;
            }
        }
        let is_commit = name == layout::COMMIT;
        let is_data = layout::data_index(name).is_some();
        if !is_commit && !is_data {
            continue;
        }
        let g = groups.entry(dir.to_owned()).or_default();
        g.0 |= is_commit;
        if is_data {
            g.1 += l.size;
            g.2 += 1;
        }
    }
    // What an uncommitted prefix's attempts hold, or a committed one's leftovers.
    let leftovers = |dir: &str, keep: &dyn Fn(&str) -> bool| -> Option<String> {
        let objs = attempts.get(dir)?;
        let left: Vec<&(String, u64)> = objs.iter().filter(|(n, _)| !keep(n)).collect();
        if left.is_empty() {
            return None;
        }
        let ids: std::collections::BTreeSet<&str> = left
            .iter()
            .filter_map(|(n, _)| layout::segment_of(n).or(layout::index_of(n)).map(|x| x.0))
            .collect();
        let segs = left
            .iter()
            .filter(|(n, _)| layout::segment_of(n).is_some())
            .count();
        let bytes: u64 = left.iter().map(|(_, b)| b).sum();
        Some(format!(
            "{} attempt(s) of a live backup that did not finish ({segs} completed segment(s), {bytes} bytes, in {}): a retake to this prefix reuses their files, its commit deletes what it does not reference",
            ids.len(),
            ids.iter().map(|i| format!("attempt-{i}/")).collect::<Vec<_>>().join(", ")
        ))
    };
    let mut out = Vec::new();
    for (dir, (has_commit, bytes, objects)) in groups {
        let here = Location {
            bucket: loc.bucket.clone(),
            prefix: dir.clone(),
        };
        if has_commit {
            match objstore::download::commit(&client, &here).await {
                Ok(c) => {
                    let keep = |n: &str| {
                        c.objects.iter().any(|o| o.name == n)
                            || c.reused.iter().any(|r| r.object == n)
                    };
                    out.push(InfoEntry {
                        location: here.to_string(),
                        complete: true,
                        created: Some(c.created.clone()),
                        bytes: c.total_bytes(),
                        backup_type: c.checkpoints.get("backup_type").cloned(),
                        from_lsn: c.checkpoints.get("from_lsn").cloned(),
                        to_lsn: c.checkpoints.get("to_lsn").cloned(),
                        objects: c.objects.len(),
                        note: leftovers(&dir, &keep).map(|l| format!("leftovers: {l}")),
                    });
                }
                Err(e) => out.push(InfoEntry {
                    location: here.to_string(),
                    complete: false,
                    created: None,
                    bytes,
                    backup_type: None,
                    from_lsn: None,
                    to_lsn: None,
                    objects,
                    note: Some(e.to_string()),
                }),
            }
        } else {
            out.push(InfoEntry {
                location: here.to_string(),
                complete: false,
                created: None,
                bytes,
                backup_type: None,
                from_lsn: None,
                to_lsn: None,
                objects,
                note: Some(format!(
                    "no commit object: {}",
                    leftovers(&dir, &|_| false)
                        .unwrap_or_else(|| "an upload that did not finish".into())
                )),
            });
        }
    }
    Ok(out)
}

fn info_dir(root: &std::path::Path) -> anyhow::Result<Vec<InfoEntry>> {
    let mut out = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    if let Ok(rd) = std::fs::read_dir(root) {
        let mut subs: Vec<PathBuf> = rd
            .filter_map(std::result::Result::ok)
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect();
        subs.sort();
        dirs.extend(subs);
    } else {
        return Err(UsageError(format!("{}: not a directory or s3:// URL", root.display())).into());
    }
    for d in dirs {
        let Ok(text) = std::fs::read_to_string(d.join("xtrabackup_checkpoints")) else {
            continue;
        };
        let kv = layout::key_values(&text);
        let bytes = dir_bytes(&d);
        let created = std::fs::metadata(d.join("xtrabackup_checkpoints"))
            .and_then(|m| m.modified())
            .ok()
            .map(|t| {
                chrono::DateTime::<chrono::Utc>::from(t)
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            });
        out.push(InfoEntry {
            location: d.display().to_string(),
            complete: kv.contains_key("to_lsn"),
            created,
            bytes,
            backup_type: kv.get("backup_type").cloned(),
            from_lsn: kv.get("from_lsn").cloned(),
            to_lsn: kv.get("to_lsn").cloned(),
            objects: 0,
            note: None,
        });
    }
    Ok(out)
}

fn dir_bytes(d: &std::path::Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![d.to_path_buf()];
    while let Some(p) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&p) else {
            continue;
        };
        for e in rd.filter_map(std::result::Result::ok) {
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(e.path()),
                Ok(t) if t.is_file() => total += e.metadata().map_or(0, |m| m.len()),
                _ => {}
            }
        }
    }
    total
}

/// Open a committed backup for reading: the commit object, then the download.
///
/// # Errors
/// Usage and store errors; [`objstore::Error::NotCommitted`] without a commit object.
pub async fn open_download(
    url: &str,
    s3: &S3Args,
) -> anyhow::Result<(layout::Commit, objstore::download::Download)> {
    let loc = Location::parse(url)?;
    if s3.s3_parallel == 0 {
        return Err(UsageError("--s3-parallel must be at least 1".into()).into());
    }
    let client = s3.client(&loc)?;
    let commit = objstore::download::commit(&client, &loc).await?;
    let d = objstore::download::Download::start(client, loc, commit.clone(), s3.s3_parallel);
    Ok((commit, d))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("16M").unwrap(), 16 << 20);
        assert_eq!(parse_size("5m").unwrap(), 5 << 20);
        assert_eq!(parse_size("123").unwrap(), 123);
        assert!(parse_size("x").is_err());
        assert!(parse_size("1Q").is_err());
        assert!(parse_size("99999999999T").is_err());
    }
}
