//! S3-compatible object storage: where backups go when they leave the host.
//!
//! - [`Config`]: endpoint, region, credentials and addressing, resolved from
//!   the AWS environment conventions and command-line overrides.
//! - [`Client`]: the few S3 calls hotbak needs (PUT, ranged GET, HEAD, list,
//!   multipart create/upload/list/complete/abort), each retried with backoff
//!   on transient failures (connection cut, timeout, 5xx, throttling).
//!   Requests are signed with SigV4 by `rusty-s3` (a sans-IO signer: it signs
//!   any extra header we add, such as `x-amz-checksum-sha256` and
//!   `If-None-Match`, and leaves upload ids and ETags to us, which resume
//!   needs) and sent by `reqwest` over rustls/ring.
//! - [`layout`]: the pure part: object names, the commit object, part sizes,
//!   the resume state file (`format-spec/object-store.md`).
//! - [`upload`]: a stream written as multipart objects, parts in parallel,
//!   then the commit object; [`download`]: parallel ranged GETs read back in
//!   order as an `AsyncRead`.

pub mod download;
pub mod layout;
pub mod reuse;
#[cfg(feature = "testkit")]
pub mod testing;
pub mod upload;

use std::time::Duration;

use bytes::Bytes;
use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};

use crate::error::{Classify, ErrorClass};

/// How long a signed request stays valid (covers a slow part upload).
const SIGN_TTL: Duration = Duration::from_secs(3600);
/// Largest response body read into memory for XML replies and the commit object.
pub const MAX_SMALL_BODY: usize = 8 << 20;

/// Errors of the object store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The store could not be reached (connection refused, DNS, TLS, timeout), after retries.
    #[error(
        "object store {endpoint} unreachable ({op} {key}) after {attempts} attempts: {reason}"
    )]
    Unreachable {
        /// The endpoint.
        endpoint: String,
        /// The operation.
        op: &'static str,
        /// The object key.
        key: String,
        /// Attempts made.
        attempts: u32,
        /// The last cause.
        reason: String,
    },
    /// The store refused the credentials or the signature.
    #[error("object store refused {op} {key}: {code} (HTTP {status}): {message}; check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or --s3-access-key-id / --s3-secret-access-key)")]
    Auth {
        /// The operation.
        op: &'static str,
        /// The key.
        key: String,
        /// HTTP status.
        status: u16,
        /// The store's error code (`SignatureDoesNotMatch`, `AccessDenied`, ...).
        code: String,
        /// The store's message.
        message: String,
    },
    /// The object, upload or bucket does not exist.
    #[error("object store: {op} {key}: not found ({code})")]
    NotFound {
        /// The operation.
        op: &'static str,
        /// The key.
        key: String,
        /// The store's error code.
        code: String,
    },
    /// A conditional write found the key already there.
    #[error("object store: {key} already exists; refusing to overwrite it")]
    Exists {
        /// The key.
        key: String,
    },
    /// The store rejected the data's checksum.
    #[error("object store rejected {key} part {part}: checksum mismatch ({code}: {message})")]
    Checksum {
        /// The key.
        key: String,
        /// Part number (0 for a single PUT).
        part: u32,
        /// The store's error code.
        code: String,
        /// The store's message.
        message: String,
    },
    /// Any other refusal, after retries where it was transient.
    #[error("object store: {op} {key}: HTTP {status} {code}: {message}")]
    Status {
        /// The operation.
        op: &'static str,
        /// The key.
        key: String,
        /// HTTP status.
        status: u16,
        /// The store's error code.
        code: String,
        /// The store's message.
        message: String,
    },
    /// The prefix holds no commit object: no complete backup is there.
    #[error("s3://{bucket}/{prefix}: no commit object ({commit}): no complete backup here{found}")]
    NotCommitted {
        /// The bucket.
        bucket: String,
        /// The prefix.
        prefix: String,
        /// The commit object's key.
        commit: String,
        /// What was found instead, for the message.
        found: String,
    },
    /// The store's data or metadata is not what the commit object promised.
    #[error("object store: {key}: {reason}")]
    Corrupt {
        /// The object.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// A download ended before the object's end.
    #[error("object store: {key}: body ended at byte {at} of {expected}")]
    Truncated {
        /// The object.
        key: String,
        /// Where it ended.
        at: u64,
        /// Where it should have.
        expected: u64,
    },
    /// Bad configuration or URL.
    #[error("{0}")]
    Usage(String),
    /// A local file (the stream to upload, the state file).
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The upload was stopped before its end (the stream failed).
    #[error("upload to {0} aborted: the stream did not finish")]
    Aborted(String),
    /// A task failed.
    #[error("object store task failed: {0}")]
    Task(String),
}

impl Classify for Error {
    fn class(&self) -> ErrorClass {
        match self {
            Error::Usage(_) => ErrorClass::Usage,
            Error::Corrupt { .. } => ErrorClass::Corrupt,
            Error::Truncated { .. } => ErrorClass::Truncated,
            Error::Io { .. } => ErrorClass::Io,
            Error::Aborted(_) | Error::Task(_) => ErrorClass::Failed,
            Error::Unreachable { .. }
            | Error::Auth { .. }
            | Error::NotFound { .. }
            | Error::Exists { .. }
            | Error::Checksum { .. }
            | Error::Status { .. }
            | Error::NotCommitted { .. } => ErrorClass::Store,
        }
    }
}

/// Result alias.
pub type Result<T> = std::result::Result<T, Error>;

/// `s3://BUCKET/PREFIX`, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    /// The bucket.
    pub bucket: String,
    /// The key prefix, without leading or trailing `/` (may be empty).
    pub prefix: String,
}

impl Location {
    /// Parse `s3://BUCKET[/PREFIX]`.
    ///
    /// # Errors
    /// [`Error::Usage`] naming the URL.
    pub fn parse(url: &str) -> Result<Self> {
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| Error::Usage(format!("{url}: expected s3://BUCKET/PREFIX")))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let ok_bucket = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        if !ok_bucket {
            return Err(Error::Usage(format!(
                "{url}: bad bucket name {bucket:?} (3 to 63 of a-z 0-9 . -)"
            )));
        }
        let prefix = prefix.trim_matches('/');
        if prefix.split('/').any(|c| c == "." || c == "..")
            || prefix.contains("//")
            || prefix.bytes().any(|b| b < 0x20)
        {
            return Err(Error::Usage(format!(
                "{url}: the prefix may not hold empty, `.` or `..` components or control characters"
            )));
        }
        Ok(Location {
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
        })
    }

    /// The key of `name` under the prefix.
    #[must_use]
    pub fn key(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_owned()
        } else {
            format!("{}/{name}", self.prefix)
        }
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.prefix)
    }
}

/// How bucket names go into URLs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Addressing {
    /// Path style with an explicit endpoint (S3-compatible stores), virtual host on AWS.
    #[default]
    Auto,
    /// `https://endpoint/BUCKET/KEY`.
    Path,
    /// `https://BUCKET.endpoint/KEY`.
    VirtualHost,
}

/// Store configuration. [`Config::resolve`] fills it from the AWS variables.
#[derive(Clone, Default)]
pub struct Config {
    /// `AWS_ENDPOINT_URL` (or `AWS_ENDPOINT_URL_S3`); AWS's regional endpoint when absent.
    pub endpoint: Option<String>,
    /// `AWS_REGION` (or `AWS_DEFAULT_REGION`); `us-east-1` when absent.
    pub region: Option<String>,
    /// `AWS_ACCESS_KEY_ID`.
    pub access_key: Option<String>,
    /// `AWS_SECRET_ACCESS_KEY`.
    pub secret_key: Option<String>,
    /// `AWS_SESSION_TOKEN`.
    pub session_token: Option<String>,
    /// Addressing style.
    pub addressing: Addressing,
    /// Attempts per request (transient failures only), at least 1.
    pub attempts: u32,
    /// First backoff delay; doubles per attempt up to [`Config::max_backoff`].
    pub backoff: Duration,
    /// Longest backoff delay.
    pub max_backoff: Duration,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key", &self.access_key)
            .field("secret_key", &self.secret_key.as_ref().map(|_| "…"))
            .field("addressing", &self.addressing)
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}

/// Default attempts per request.
pub const DEFAULT_ATTEMPTS: u32 = 6;

impl Config {
    /// Fill what the command line left unset from the AWS environment variables.
    #[must_use]
    pub fn resolve(mut self, env: impl Fn(&str) -> Option<String>) -> Self {
        let pick = |v: &mut Option<String>, names: &[&str]| {
            if v.as_deref().map_or(true, str::is_empty) {
                *v = names.iter().find_map(|n| env(n).filter(|s| !s.is_empty()));
            }
        };
        pick(
            &mut self.endpoint,
            &["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"],
        );
        pick(&mut self.region, &["AWS_REGION", "AWS_DEFAULT_REGION"]);
        pick(&mut self.access_key, &["AWS_ACCESS_KEY_ID"]);
        pick(&mut self.secret_key, &["AWS_SECRET_ACCESS_KEY"]);
        pick(&mut self.session_token, &["AWS_SESSION_TOKEN"]);
        if self.attempts == 0 {
            self.attempts = DEFAULT_ATTEMPTS;
        }
        if self.backoff.is_zero() {
            self.backoff = Duration::from_millis(200);
        }
        if self.max_backoff.is_zero() {
            self.max_backoff = Duration::from_secs(10);
        }
        self
    }

    /// [`Config::resolve`] with the process environment.
    #[must_use]
    pub fn from_env(self) -> Self {
        self.resolve(|n| std::env::var(n).ok())
    }

    fn region(&self) -> String {
        self.region.clone().unwrap_or_else(|| "us-east-1".into())
    }

    /// The endpoint URL and addressing style in force.
    fn endpoint(&self) -> Result<(url::Url, UrlStyle)> {
        let (raw, explicit) = match &self.endpoint {
            Some(e) => (e.clone(), true),
            None => (format!("https://s3.{}.amazonaws.com", self.region()), false),
        };
        let url = url::Url::parse(&raw)
            .map_err(|e| Error::Usage(format!("endpoint URL {raw:?}: {e}")))?;
        let style = match self.addressing {
            Addressing::Path => UrlStyle::Path,
            Addressing::VirtualHost => UrlStyle::VirtualHost,
            Addressing::Auto if explicit => UrlStyle::Path,
            Addressing::Auto => UrlStyle::VirtualHost,
        };
        Ok((url, style))
    }
}

/// An S3 error reply: its `Code` and `Message`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct S3Reply {
    /// `<Code>`.
    pub code: String,
    /// `<Message>`.
    pub message: String,
}

impl S3Reply {
    /// Pick `<Code>` and `<Message>` out of an XML error body (empty when absent).
    #[must_use]
    pub fn parse(body: &str) -> Self {
        let tag = |t: &str| -> String {
            let open = format!("<{t}>");
            let close = format!("</{t}>");
            body.find(&open)
                .and_then(|i| {
                    let rest = &body[i + open.len()..];
                    rest.find(&close).map(|j| rest[..j].trim().to_owned())
                })
                .unwrap_or_default()
        };
        S3Reply {
            code: tag("Code"),
            message: tag("Message"),
        }
    }
}

/// What went wrong with one attempt.
enum Attempt {
    /// Worth retrying (with the reason for the final message).
    Transient(String, Option<(u16, S3Reply)>),
    /// Final.
    Fatal(Error),
}

/// One request's shape, rebuilt per attempt (signing is per attempt).
pub(crate) struct Req {
    op: &'static str,
    key: String,
    part: u32,
    method: reqwest::Method,
    url: url::Url,
    headers: Vec<(String, String)>,
    body: Option<Bytes>,
}

/// A reply that succeeded.
pub(crate) struct Reply {
    pub(crate) headers: reqwest::header::HeaderMap,
    pub(crate) resp: reqwest::Response,
}

/// The store client. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    bucket: std::sync::Arc<Bucket>,
    creds: Option<std::sync::Arc<Credentials>>,
    endpoint: String,
    cfg: std::sync::Arc<Config>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket.name())
            .finish_non_exhaustive()
    }
}

/// Listing entry.
#[derive(Clone, Debug)]
pub struct Listed {
    /// Full key.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// Last modification, as the store gives it.
    pub modified: String,
}

/// One part of a multipart upload, as the store lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedPart {
    /// Part number (1-based).
    pub number: u32,
    /// ETag.
    pub etag: String,
    /// Size.
    pub size: u64,
}

impl Client {
    /// A client for `bucket`.
    ///
    /// # Errors
    /// [`Error::Usage`] for a bad endpoint or bucket name.
    pub fn new(cfg: Config, bucket: &str) -> Result<Self> {
        let cfg = if cfg.attempts == 0 {
            cfg.resolve(|_| None)
        } else {
            cfg
        };
        let (url, style) = cfg.endpoint()?;
        let endpoint = url.to_string();
        let b = Bucket::new(url, style, bucket.to_owned(), cfg.region())
            .map_err(|e| Error::Usage(format!("bucket {bucket:?} at {endpoint}: {e}")))?;
        let creds = match (&cfg.access_key, &cfg.secret_key) {
            (Some(k), Some(s)) => Some(std::sync::Arc::new(match &cfg.session_token {
                Some(t) => Credentials::new_with_token(k.clone(), s.clone(), t.clone()),
                None => Credentials::new(k.clone(), s.clone()),
            })),
            (None, None) => None,
            _ => {
                return Err(Error::Usage(
                    "give both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or neither, for a public bucket)".into(),
                ))
            }
        };
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(120))
            .pool_max_idle_per_host(32)
            .build()
            .map_err(|e| Error::Usage(format!("HTTP client: {e}")))?;
        Ok(Client {
            http,
            bucket: std::sync::Arc::new(b),
            creds,
            endpoint,
            cfg: std::sync::Arc::new(cfg),
        })
    }

    /// The bucket's name.
    #[must_use]
    pub fn bucket(&self) -> &str {
        self.bucket.name()
    }

    fn creds(&self) -> Option<&Credentials> {
        self.creds.as_deref()
    }

    /// Sign an action with its extra headers; returns the URL.
    fn sign<'a, A: S3Action<'a>>(mut action: A, headers: &'a [(String, String)]) -> url::Url {
        for (k, v) in headers {
            action.headers_mut().insert(k.as_str(), v.as_str());
        }
        action.sign(SIGN_TTL)
    }

    /// Send `req` with retries; returns the successful reply.
    async fn send(&self, req: &Req) -> Result<Reply> {
        let mut delay = self.cfg.backoff;
        let mut last = String::new();
        let mut last_status: Option<(u16, S3Reply)> = None;
        for attempt in 1..=self.cfg.attempts.max(1) {
            match self.try_once(req).await {
                Ok(r) => return Ok(r),
                Err(Attempt::Fatal(e)) => return Err(e),
                Err(Attempt::Transient(why, status)) => {
                    last = why;
                    last_status = status;
                }
            }
            if attempt < self.cfg.attempts {
                tokio::time::sleep(jitter(delay)).await;
                delay = (delay * 2).min(self.cfg.max_backoff);
            }
        }
        Err(match last_status {
            Some((status, r)) => Error::Status {
                op: req.op,
                key: req.key.clone(),
                status,
                code: r.code,
                message: format!("{} (after {} attempts)", r.message, self.cfg.attempts),
            },
            None => Error::Unreachable {
                endpoint: self.endpoint.clone(),
                op: req.op,
                key: req.key.clone(),
                attempts: self.cfg.attempts,
                reason: last,
            },
        })
    }

    async fn try_once(&self, req: &Req) -> std::result::Result<Reply, Attempt> {
        let mut b = self.http.request(req.method.clone(), req.url.clone());
        for (k, v) in &req.headers {
            b = b.header(k.as_str(), v.as_str());
        }
        if let Some(body) = &req.body {
            b = b.body(body.clone());
        } else if req.method == reqwest::Method::PUT || req.method == reqwest::Method::POST {
            b = b.body(Bytes::new());
        }
        let resp = match b.send().await {
            Ok(r) => r,
            Err(e) => return Err(Attempt::Transient(error_chain(&e), None)),
        };
        let status = resp.status().as_u16();
        if resp.status().is_success() || status == 206 {
            return Ok(Reply {
                headers: resp.headers().clone(),
                resp,
            });
        }
        let body = read_small(resp).await.unwrap_or_default();
        let reply = S3Reply::parse(&String::from_utf8_lossy(&body));
        Err(classify_status(req, status, reply))
    }

    /// PUT a small object. With `if_none_match`, refuse to replace an existing key.
    ///
    /// # Errors
    /// [`Error::Exists`] when the key exists and `if_none_match`; store errors.
    pub async fn put(&self, key: &str, body: Bytes, if_none_match: bool) -> Result<()> {
        let mut headers = vec![(
            "x-amz-checksum-sha256".to_owned(),
            layout::sha256_b64(&layout::sha256(&body)),
        )];
        if if_none_match {
            headers.push(("if-none-match".into(), "*".into()));
        }
        let url = Self::sign(self.bucket.put_object(self.creds(), key), &headers);
        self.send(&Req {
            op: "PutObject",
            key: key.into(),
            part: 0,
            method: reqwest::Method::PUT,
            url,
            headers,
            body: Some(body),
        })
        .await
        .map(|_| ())
    }

    /// GET a whole small object (at most [`MAX_SMALL_BODY`] bytes).
    ///
    /// # Errors
    /// [`Error::NotFound`], [`Error::Corrupt`] when larger than the limit; store errors.
    pub async fn get_small(&self, key: &str) -> Result<Bytes> {
        let url = Self::sign(self.bucket.get_object(self.creds(), key), &[]);
        let r = self.get("GetObject", key, url).await?;
        small_body(key, r).await
    }

    /// GET bytes `start..end` of an object as a response to stream (`send` retried it
    /// until headers arrived; the body is the caller's to read and resume).
    pub(crate) async fn get_range(&self, key: &str, start: u64, end: u64) -> Result<Reply> {
        let headers = vec![("range".to_owned(), format!("bytes={start}-{}", end - 1))];
        let url = Self::sign(self.bucket.get_object(self.creds(), key), &headers);
        self.send(&Req {
            op: "GetObject",
            key: key.into(),
            part: 0,
            method: reqwest::Method::GET,
            url,
            headers,
            body: None,
        })
        .await
    }

    /// Size of an object, or `None` when it does not exist.
    ///
    /// # Errors
    /// Store errors other than "not found".
    pub async fn head(&self, key: &str) -> Result<Option<u64>> {
        let url = Self::sign(self.bucket.head_object(self.creds(), key), &[]);
        let r = self
            .send(&Req {
                op: "HeadObject",
                key: key.into(),
                part: 0,
                method: reqwest::Method::HEAD,
                url,
                headers: vec![],
                body: None,
            })
            .await;
        match r {
            Ok(r) => Ok(r
                .headers
                .get(reqwest::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())),
            Err(Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every key under `prefix` (all pages).
    ///
    /// # Errors
    /// Store errors; [`Error::Corrupt`] for an unreadable listing.
    pub async fn list(&self, prefix: &str) -> Result<Vec<Listed>> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut a = self.bucket.list_objects_v2(self.creds());
            a.with_prefix(prefix.to_owned());
            if let Some(t) = &token {
                a.with_continuation_token(t.clone());
            }
            let body = self
                .get_xml("ListObjectsV2", prefix, a.sign(SIGN_TTL))
                .await?;
            let page = rusty_s3::actions::ListObjectsV2::parse_response(&body).map_err(|e| {
                Error::Corrupt {
                    key: prefix.into(),
                    reason: format!("listing: {e}"),
                }
            })?;
            out.extend(page.contents.into_iter().map(|c| Listed {
                key: c.key,
                size: c.size.unwrap_or(0),
                modified: c.last_modified.unwrap_or_default(),
            }));
            match page.next_continuation_token {
                Some(t) if !t.is_empty() => token = Some(t),
                _ => return Ok(out),
            }
        }
    }

    /// A signed GET (`send` retries it).
    async fn get(&self, op: &'static str, key: &str, url: url::Url) -> Result<Reply> {
        self.send(&Req {
            op,
            key: key.into(),
            part: 0,
            method: reqwest::Method::GET,
            url,
            headers: vec![],
            body: None,
        })
        .await
    }

    /// A signed GET whose reply is a small XML document (a listing page).
    async fn get_xml(&self, op: &'static str, key: &str, url: url::Url) -> Result<String> {
        let r = self.get(op, key, url).await?;
        self.xml(key, r).await
    }

    async fn xml(&self, key: &str, r: Reply) -> Result<String> {
        let body = small_body(key, r).await?;
        String::from_utf8(body.to_vec()).map_err(|_| Error::Corrupt {
            key: key.into(),
            reason: "reply is not UTF-8".into(),
        })
    }

    /// Start a multipart upload; returns its id.
    ///
    /// # Errors
    /// Store errors.
    pub async fn create_multipart(&self, key: &str) -> Result<String> {
        // No `x-amz-checksum-algorithm` here: with it, stores (SeaweedFS, AWS)
        // want every part's checksum repeated in CompleteMultipartUpload,
        // which rusty-s3's body does not carry. Each UploadPart still sends
        // its `x-amz-checksum-sha256`, which the store verifies.
        let headers: Vec<(String, String)> = Vec::new();
        let url = Self::sign(
            self.bucket.create_multipart_upload(self.creds(), key),
            &headers,
        );
        let r = self
            .send(&Req {
                op: "CreateMultipartUpload",
                key: key.into(),
                part: 0,
                method: reqwest::Method::POST,
                url,
                headers,
                body: None,
            })
            .await?;
        let body = self.xml(key, r).await?;
        let parsed =
            rusty_s3::actions::CreateMultipartUpload::parse_response(&body).map_err(|e| {
                Error::Corrupt {
                    key: key.into(),
                    reason: format!("CreateMultipartUpload reply: {e}"),
                }
            })?;
        Ok(parsed.upload_id().to_owned())
    }

    /// Upload one part with its SHA-256 (the store verifies it); returns the ETag.
    ///
    /// # Errors
    /// [`Error::Checksum`] when the store computes another digest; store errors.
    pub async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: u32,
        body: Bytes,
        sha256: &[u8; 32],
    ) -> Result<String> {
        let n = u16::try_from(number)
            .map_err(|_| Error::Usage(format!("{key}: part number {number} over 10000")))?;
        let headers = vec![(
            "x-amz-checksum-sha256".to_owned(),
            layout::sha256_b64(sha256),
        )];
        let url = Self::sign(
            self.bucket.upload_part(self.creds(), key, n, upload_id),
            &headers,
        );
        let r = self
            .send(&Req {
                op: "UploadPart",
                key: key.into(),
                part: number,
                method: reqwest::Method::PUT,
                url,
                headers,
                body: Some(body),
            })
            .await?;
        etag_of(key, &r.headers)
    }

    /// The parts the store holds for an upload (all pages).
    ///
    /// # Errors
    /// [`Error::NotFound`] when the upload is gone; store errors.
    pub async fn list_parts(&self, key: &str, upload_id: &str) -> Result<Vec<ListedPart>> {
        let mut out = Vec::new();
        let mut marker: Option<u16> = None;
        loop {
            let mut a = self.bucket.list_parts(self.creds(), key, upload_id);
            if let Some(m) = marker {
                a.set_part_number_marker(m);
            }
            let body = self.get_xml("ListParts", key, a.sign(SIGN_TTL)).await?;
            let page = rusty_s3::actions::ListParts::parse_response(&body).map_err(|e| {
                Error::Corrupt {
                    key: key.into(),
                    reason: format!("ListParts reply: {e}"),
                }
            })?;
            let last = page.parts.last().map(|p| p.number);
            out.extend(page.parts.into_iter().map(|p| ListedPart {
                number: u32::from(p.number),
                etag: p.etag,
                size: p.size,
            }));
            match (page.next_part_number_marker, last) {
                (Some(m), Some(l)) if m >= l && m > marker.unwrap_or(0) => marker = Some(m),
                _ => return Ok(out),
            }
        }
    }

    /// Complete a multipart upload from its parts' ETags in order; with
    /// `if_none_match`, refuse to replace an existing key.
    ///
    /// # Errors
    /// [`Error::Exists`]; store errors (also a 200 reply carrying an error).
    pub async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        etags: &[String],
        if_none_match: bool,
    ) -> Result<()> {
        let mut headers = Vec::new();
        if if_none_match {
            headers.push(("if-none-match".to_owned(), "*".to_owned()));
        }
        let action = self.bucket.complete_multipart_upload(
            self.creds(),
            key,
            upload_id,
            etags.iter().map(String::as_str),
        );
        let body = Bytes::from(action.clone().body());
        let url = Self::sign(action, &headers);
        let r = self
            .send(&Req {
                op: "CompleteMultipartUpload",
                key: key.into(),
                part: 0,
                method: reqwest::Method::POST,
                url,
                headers,
                body: Some(body),
            })
            .await?;
        let text = self.xml(key, r).await?;
        if text.contains("<Error>") {
            let reply = S3Reply::parse(&text);
            return Err(Error::Status {
                op: "CompleteMultipartUpload",
                key: key.into(),
                status: 200,
                code: reply.code,
                message: reply.message,
            });
        }
        Ok(())
    }

    /// Abort a multipart upload (its parts are deleted).
    ///
    /// # Errors
    /// Store errors ("not found" counts as done).
    pub async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<()> {
        let url = Self::sign(
            self.bucket
                .abort_multipart_upload(self.creds(), key, upload_id),
            &[],
        );
        self.delete_signed("AbortMultipartUpload", key, url).await
    }

    /// Delete an object.
    ///
    /// # Errors
    /// Store errors ("not found" counts as done).
    pub async fn delete(&self, key: &str) -> Result<()> {
        let url = Self::sign(self.bucket.delete_object(self.creds(), key), &[]);
        self.delete_signed("DeleteObject", key, url).await
    }

    /// A signed DELETE; "not found" counts as done.
    async fn delete_signed(&self, op: &'static str, key: &str, url: url::Url) -> Result<()> {
        match self
            .send(&Req {
                op,
                key: key.into(),
                part: 0,
                method: reqwest::Method::DELETE,
                url,
                headers: vec![],
                body: None,
            })
            .await
        {
            Ok(_) | Err(Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

fn etag_of(key: &str, h: &reqwest::header::HeaderMap) -> Result<String> {
    h.get(reqwest::header::ETAG)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .ok_or_else(|| Error::Corrupt {
            key: key.into(),
            reason: "the store's reply has no ETag".into(),
        })
}

/// Read a body of at most [`MAX_SMALL_BODY`] bytes.
/// The whole body of a small reply to `key` (at most [`MAX_SMALL_BODY`]).
async fn small_body(key: &str, r: Reply) -> Result<Bytes> {
    read_small(r.resp).await.map_err(|reason| Error::Corrupt {
        key: key.into(),
        reason,
    })
}

async fn read_small(mut resp: reqwest::Response) -> std::result::Result<Bytes, String> {
    let mut out = bytes::BytesMut::new();
    while let Some(c) = resp.chunk().await.map_err(|e| error_chain(&e))? {
        if out.len() + c.len() > MAX_SMALL_BODY {
            return Err(format!("reply larger than {MAX_SMALL_BODY} bytes"));
        }
        out.extend_from_slice(&c);
    }
    Ok(out.freeze())
}

/// An error and its causes on one line (reqwest hides the cause of a cut connection).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

/// Which statuses are worth another attempt, and which error the others are.
fn classify_status(req: &Req, status: u16, r: S3Reply) -> Attempt {
    let transient_code = matches!(
        r.code.as_str(),
        "RequestTimeout"
            | "SlowDown"
            | "InternalError"
            | "ServiceUnavailable"
            | "RequestTimeTooSkewed"
    );
    if status >= 500 || status == 429 || transient_code {
        let why = format!("HTTP {status} {}: {}", r.code, r.message);
        return Attempt::Transient(why, Some((status, r)));
    }
    let key = req.key.clone();
    Attempt::Fatal(match (status, r.code.as_str()) {
        (401 | 403, _)
        | (_, "SignatureDoesNotMatch" | "InvalidAccessKeyId" | "AccessDenied" | "ExpiredToken") => {
            Error::Auth {
                op: req.op,
                key,
                status,
                code: if r.code.is_empty() {
                    "AccessDenied".into()
                } else {
                    r.code
                },
                message: r.message,
            }
        }
        (404, _) => Error::NotFound {
            op: req.op,
            key,
            code: if r.code.is_empty() {
                "NoSuchKey".into()
            } else {
                r.code
            },
        },
        (412, _) => Error::Exists { key },
        (_, "BadDigest" | "InvalidDigest" | "XAmzContentChecksumMismatch") => Error::Checksum {
            key,
            part: req.part,
            code: r.code,
            message: r.message,
        },
        _ => Error::Status {
            op: req.op,
            key,
            status,
            code: r.code,
            message: r.message,
        },
    })
}

/// A delay between 50% and 100% of `d` (decorrelates parallel retries).
fn jitter(d: Duration) -> Duration {
    let f = 0.5 + rand::random::<f64>() * 0.5;
    d.mul_f64(f)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn locations_parse_and_refuse() {
        let l = Location::parse("s3://backups/db1/2026-12-05/").unwrap();
        assert_eq!(l.bucket, "backups");
        assert_eq!(l.prefix, "db1/2026-12-05");
        assert_eq!(l.key("x"), "db1/2026-12-05/x");
        let l = Location::parse("s3://backups").unwrap();
        assert_eq!(l.key("x"), "x");
        for bad in [
            "backups/x",
            "s3://B/x",
            "s3://ab/x",
            "s3://bucket/a/../b",
            "s3://bucket/a//b",
            "s3://bucket/a\n",
        ] {
            assert!(
                matches!(Location::parse(bad), Err(Error::Usage(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn config_takes_the_aws_variables_unless_given() {
        let env = |n: &str| match n {
            "AWS_ENDPOINT_URL" => Some("http://127.0.0.1:9000".into()),
            "AWS_REGION" => Some("eu-west-3".into()),
            "AWS_ACCESS_KEY_ID" => Some("k".into()),
            "AWS_SECRET_ACCESS_KEY" => Some("s".into()),
            _ => None,
        };
        let c = Config {
            access_key: Some("cli".into()),
            ..Config::default()
        }
        .resolve(env);
        assert_eq!(c.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(c.region.as_deref(), Some("eu-west-3"));
        assert_eq!(c.access_key.as_deref(), Some("cli"));
        assert_eq!(c.secret_key.as_deref(), Some("s"));
        assert_eq!(c.attempts, DEFAULT_ATTEMPTS);
        assert!(!format!("{c:?}").contains("\"s\""), "secret in Debug");
        let (u, style) = c.endpoint().unwrap();
        assert_eq!(u.as_str(), "http://127.0.0.1:9000/");
        assert!(matches!(style, UrlStyle::Path));
        let aws = Config::default().resolve(|_| None);
        let (u, style) = aws.endpoint().unwrap();
        assert_eq!(u.as_str(), "https://s3.us-east-1.amazonaws.com/");
        assert!(matches!(style, UrlStyle::VirtualHost));
    }

    #[test]
    fn addressing_styles_shape_the_urls() {
        let mk = |a| {
            Client::new(
                Config {
                    endpoint: Some("https://store.example:9000".into()),
                    addressing: a,
                    ..Config::default()
                },
                "bkt",
            )
            .unwrap()
        };
        let p = mk(Addressing::Path);
        assert_eq!(
            p.bucket.object_url("a/b").as_str(),
            "https://store.example:9000/bkt/a/b"
        );
        let v = mk(Addressing::VirtualHost);
        assert_eq!(
            v.bucket.object_url("a/b").as_str(),
            "https://bkt.store.example:9000/a/b"
        );
        let half = Client::new(
            Config {
                access_key: Some("k".into()),
                ..Config::default()
            },
            "bkt",
        );
        assert!(matches!(half, Err(Error::Usage(_))));
    }

    #[test]
    fn error_replies_are_read_and_classified() {
        let body = "<?xml version=\"1.0\"?><Error><Code>SignatureDoesNotMatch</Code><Message>The request signature we calculated does not match</Message></Error>";
        let r = S3Reply::parse(body);
        assert_eq!(r.code, "SignatureDoesNotMatch");
        assert!(r.message.starts_with("The request signature"));
        assert_eq!(S3Reply::parse("garbage"), S3Reply::default());
        let req = Req {
            op: "UploadPart",
            key: "k".into(),
            part: 3,
            method: reqwest::Method::PUT,
            url: url::Url::parse("http://x/").unwrap(),
            headers: vec![],
            body: None,
        };
        let fatal = |status, code: &str| match classify_status(
            &req,
            status,
            S3Reply {
                code: code.into(),
                message: String::new(),
            },
        ) {
            Attempt::Fatal(e) => Some(e),
            Attempt::Transient(..) => None,
        };
        assert!(matches!(
            fatal(403, "SignatureDoesNotMatch"),
            Some(Error::Auth { .. })
        ));
        assert!(matches!(
            fatal(404, "NoSuchUpload"),
            Some(Error::NotFound { .. })
        ));
        assert!(matches!(fatal(412, ""), Some(Error::Exists { .. })));
        assert!(matches!(
            fatal(400, "BadDigest"),
            Some(Error::Checksum { part: 3, .. })
        ));
        assert!(fatal(503, "SlowDown").is_none());
        assert!(fatal(500, "").is_none());
        assert!(fatal(400, "RequestTimeout").is_none());
        assert!(matches!(
            fatal(400, "InvalidPart"),
            Some(Error::Status { .. })
        ));
        assert_eq!(
            fatal(403, "AccessDenied").map(|e| e.class()),
            Some(ErrorClass::Store)
        );
    }
}
