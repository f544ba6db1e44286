//! The one reader of ALB access logs for `leaks`, `plan`, `retire` and
//! `verify --from-alb-log`: files
//! (plain or gzip, told by their first bytes), directories walked in AWS's
//! layout (every `*.log` and `*.log.gz` below, in name order, which is time
//! order within AWS's layout), and `s3://bucket/prefix` (every log object
//! under the prefix, through the same AWS configuration and endpoint as every
//! other call; path-style addressing when an endpoint is set). A prefix is a
//! folder: `s3://b/prod` reads `prod/...`, never `prod-staging/...`. Line by
//! line: a file or object is never held whole in memory. Lines are parsed by
//! `alb::access_log`, the format's one home.
//!
//! Several load balancers often log to one bucket: only the files and lines
//! of the [`LoadBalancer`] migrate.toml names are read as its own. A file
//! whose name (AWS's `..._app.NAME.ID_...`) names another is skipped unread,
//! a line whose `elb` field names another is skipped; both are counted and
//! named in [`Summary`].

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use alb::access_log::Record;
use anyhow::Context as _;
use aws_config::SdkConfig;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;

use crate::error::Failure;

/// Where logs are read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A file or a directory.
    Path(PathBuf),
    /// `s3://bucket/prefix`.
    S3 { bucket: String, prefix: String },
}

impl Source {
    /// `s3://bucket[/prefix]`, else a local path.
    pub fn parse(text: &str) -> Result<Source, String> {
        let Some(rest) = text.strip_prefix("s3://") else {
            return Ok(Source::Path(PathBuf::from(text)));
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(format!(
                "{text:?} names no bucket; write s3://BUCKET/PREFIX, for example s3://my-alb-logs/prod"
            ));
        }
        Ok(Source::S3 {
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
        })
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Path(path) => write!(formatter, "{}", path.display()),
            Source::S3 { bucket, prefix } => write!(formatter, "s3://{bucket}/{prefix}"),
        }
    }
}

/// The load balancer whose logs are read: `app/NAME/ID` from the
/// listener's ARN, or its name alone (`listener.load_balancer` in
/// migrate.toml) when no ARN is at hand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadBalancer {
    name: String,
    id: Option<String>,
}

impl LoadBalancer {
    /// From a listener's or load balancer's ARN (an Application Load
    /// Balancer's; `None` for another).
    pub fn from_arn(arn: &str) -> Option<LoadBalancer> {
        LoadBalancer::from_resource_id(&crate::metric_gates::load_balancer_dimension(arn)?)
    }

    /// From migrate.toml's `[listener]`: its ARN, else its load balancer's name.
    pub fn from_settings(listener: &crate::settings::ListenerSettings) -> Option<LoadBalancer> {
        listener
            .arn
            .as_deref()
            .and_then(LoadBalancer::from_arn)
            .or_else(|| {
                listener.load_balancer.as_ref().map(|name| LoadBalancer {
                    name: name.clone(),
                    id: None,
                })
            })
    }

    /// `app/NAME/ID`, as a line's `elb` field holds it.
    fn from_resource_id(text: &str) -> Option<LoadBalancer> {
        let mut parts = text.split('/');
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some("app"), Some(name), Some(id), None) if !name.is_empty() && !id.is_empty() => {
                Some(LoadBalancer {
                    name: name.to_owned(),
                    id: Some(id.to_owned()),
                })
            }
            _ => None,
        }
    }

    /// Whether `elb` (a line's field, or [`load_balancer_of_file`]) is this
    /// load balancer.
    pub fn is(&self, elb: &str) -> bool {
        LoadBalancer::from_resource_id(elb).is_some_and(|other| {
            other.name == self.name && (self.id.is_none() || other.id == self.id)
        })
    }
}

impl std::fmt::Display for LoadBalancer {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.id {
            Some(id) => write!(formatter, "app/{}/{id}", self.name),
            None => write!(formatter, "app/{}", self.name),
        }
    }
}

/// The load balancer a log file's name says it holds, as `app/NAME/ID`
/// (AWS names each file
/// `ACCOUNT_elasticloadbalancing_REGION_app.NAME.ID_TIME_IP_RANDOM.log.gz`;
/// load balancer names hold no `.` or `_`). `None` for a name in another
/// shape: such a file is read, and judged line by line.
pub fn load_balancer_of_file(name: &str) -> Option<String> {
    let base = name.rsplit(['/', '\\']).next()?;
    let mut parts = base.split('_');
    let (_account, service, _region, balancer) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if service != "elasticloadbalancing" {
        return None;
    }
    let mut pieces = balancer.split('.');
    match (pieces.next(), pieces.next(), pieces.next(), pieces.next()) {
        (Some(kind), Some(name), Some(id), None) => Some(format!("{kind}/{name}/{id}")),
        _ => None,
    }
}

/// What was read.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Summary {
    pub files: usize,
    pub lines: usize,
    /// Lines that are not access log entries (counted, not fatal).
    pub unreadable_lines: usize,
    /// Files of other load balancers (by their names), skipped unread.
    pub other_files: usize,
    /// Entries of other load balancers (by their `elb` field), skipped.
    pub other_lines: usize,
    /// The other load balancers seen (`app/NAME/ID`).
    pub others: BTreeSet<String>,
}

impl Summary {
    /// "skipped 2 files and 3 lines of other load balancers: app/a/1, app/b/2"
    /// (the first three named), or `None` when nothing was skipped.
    pub fn skipped_text(&self) -> Option<String> {
        if self.other_files == 0 && self.other_lines == 0 {
            return None;
        }
        let mut what = Vec::new();
        if self.other_files > 0 {
            what.push(crate::output::count(self.other_files, "file", "files"));
        }
        if self.other_lines > 0 {
            what.push(crate::output::count(self.other_lines, "line", "lines"));
        }
        let mut named: Vec<&str> = self.others.iter().map(String::as_str).take(3).collect();
        if self.others.len() > 3 {
            named.push("…");
        }
        Some(format!(
            "skipped {} of other load balancers: {}",
            what.join(" and "),
            named.join(", ")
        ))
    }

    /// Counts a file of another load balancer, skipped unread.
    fn skip_file(&mut self, balancer: String) {
        self.other_files += 1;
        self.others.insert(balancer);
    }

    /// Whether a file named `name` is to be read: not another load
    /// balancer's by its name (counted when it is).
    fn takes_file(&mut self, name: &str, own: Option<&LoadBalancer>) -> bool {
        match (own, load_balancer_of_file(name)) {
            (Some(own), Some(balancer)) if !own.is(&balancer) => {
                self.skip_file(balancer);
                false
            }
            _ => true,
        }
    }

    fn add(&mut self, part: &Summary) {
        self.lines += part.lines;
        self.unreadable_lines += part.unreadable_lines;
        self.other_files += part.other_files;
        self.other_lines += part.other_lines;
        self.others.extend(part.others.iter().cloned());
    }
}

/// A failure to read the logs (exit 4 in `leaks`): the source and why.
fn unreadable(source: &impl std::fmt::Display, error: impl std::fmt::Display) -> anyhow::Error {
    Failure::LogsUnreadable(format!("cannot read the access logs at {source}: {error}")).into()
}

/// Reads every entry of `sources` in order that is `own`'s (every entry
/// when `None`), handing each to `visit`.
pub async fn read(
    sources: &[Source],
    sdk: &SdkConfig,
    own: Option<&LoadBalancer>,
    mut visit: impl FnMut(Record),
) -> anyhow::Result<Summary> {
    let mut summary = Summary::default();
    for source in sources {
        let before = summary.clone();
        match source {
            Source::Path(path) => read_path(path, own, &mut summary, &mut visit)?,
            Source::S3 { bucket, prefix } => {
                read_s3(sdk, (bucket, prefix), own, &mut summary, &mut visit).await?;
            }
        }
        if summary.files == before.files {
            return Err(no_files(source, own, &summary, &before));
        }
    }
    check_entries(sources, own, &summary)?;
    Ok(summary)
}

/// Logs that were read but hold no entry of `own` are no evidence of
/// anything (exit 4, the same words in every command): lines of other load
/// balancers only, or no line an access-log entry.
fn check_entries(
    sources: &[Source],
    own: Option<&LoadBalancer>,
    summary: &Summary,
) -> anyhow::Result<()> {
    let named = || {
        sources
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    if let Some(own) = own
        && summary.lines > summary.unreadable_lines
        && summary.lines == summary.unreadable_lines + summary.other_lines
    {
        return Err(Failure::LogsUnreadable(format!(
            "{}: {} in {}, none of {own} ({}); name this load balancer's logs (the prefix its access_logs.s3.prefix sets)",
            named(),
            crate::output::count(summary.lines, "line", "lines"),
            crate::output::count(summary.files, "file", "files"),
            summary.skipped_text().unwrap_or_default(),
        ))
        .into());
    }
    if summary.lines == summary.unreadable_lines {
        return Err(Failure::LogsUnreadable(format!(
            "{}: {} in {}, none an ALB access-log entry; name the ALB's access logs (the .log.gz files under AWSLogs/)",
            named(),
            crate::output::count(summary.lines, "line", "lines"),
            crate::output::count(summary.files, "file", "files"),
        ))
        .into());
    }
    Ok(())
}

/// No log file (of `own`) under a source: evidence of nothing, never "no
/// leaks". `before` is the summary before the source was read.
fn no_files(
    source: &Source,
    own: Option<&LoadBalancer>,
    summary: &Summary,
    before: &Summary,
) -> anyhow::Error {
    let fix = match source {
        Source::S3 { .. } => "check the bucket and prefix",
        Source::Path(_) => "check the path (files named *.log or *.log.gz)",
    };
    match own {
        Some(own) if summary.other_files > before.other_files => {
            let skipped = Summary {
                other_files: summary.other_files - before.other_files,
                other_lines: 0,
                ..summary.clone()
            };
            Failure::LogsUnreadable(format!(
                "no access-log file of {own} under {source} ({}): {fix}",
                skipped.skipped_text().unwrap_or_default()
            ))
            .into()
        }
        _ => Failure::LogsUnreadable(format!("no access-log file under {source}: {fix}")).into(),
    }
}

/// The log files of a local source: the file, or every log file under a directory.
fn local_files(path: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let metadata = std::fs::metadata(path).map_err(|error| unreadable(&path.display(), error))?;
    if metadata.is_dir() {
        log_files_under(path).map_err(|error| unreadable(&path.display(), error))
    } else {
        Ok(vec![path.to_owned()])
    }
}

fn read_path(
    path: &Path,
    own: Option<&LoadBalancer>,
    summary: &mut Summary,
    visit: &mut impl FnMut(Record),
) -> anyhow::Result<()> {
    for file in local_files(path)? {
        let name = file.to_string_lossy();
        if !summary.takes_file(&name, own) {
            continue;
        }
        let opened =
            std::fs::File::open(&file).map_err(|error| unreadable(&file.display(), error))?;
        read_stream(opened, &name, own, summary, visit)
            .map_err(|error| unreadable(&file.display(), error))?;
        summary.files += 1;
    }
    Ok(())
}

/// Every `*.log` and `*.log.gz` file under `dir`, sorted by path.
fn log_files_under(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.is_dir() {
                pending.push(path);
            } else if is_log_name(&path.to_string_lossy()) {
                found.push(path);
            }
        }
    }
    found.sort();
    Ok(found)
}

fn is_log_name(name: &str) -> bool {
    name.ends_with(".log.gz") || name.ends_with(".log")
}

/// Reads one file's lines: gzip (one or more members) when it starts with
/// gzip's magic bytes, else plain text; `name` ending in `.gz` must be gzip.
fn read_stream(
    input: impl Read,
    name: &str,
    own: Option<&LoadBalancer>,
    summary: &mut Summary,
    visit: &mut impl FnMut(Record),
) -> std::io::Result<()> {
    with_decompressed(input, name, |lines| read_lines(lines, own, summary, visit))
}

/// Hands `use_lines` the text of `input`: gunzipped (one or more members)
/// when it starts with gzip's magic bytes, else as it is. A `name` ending in
/// `.gz` that is not gzip is an error, not text.
fn with_decompressed<T>(
    input: impl Read,
    name: &str,
    use_lines: impl FnOnce(&mut dyn BufRead) -> std::io::Result<T>,
) -> std::io::Result<T> {
    let mut buffered = BufReader::with_capacity(64 * 1024, input);
    let gzip = buffered.fill_buf()?.starts_with(&[0x1f, 0x8b]);
    if !gzip && name.ends_with(".gz") && !buffered.fill_buf()?.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "named .gz but not gzip (its first bytes are not gzip's); compress it with gzip, or drop the .gz from its name",
        ));
    }
    if gzip {
        let decoder = flate2::bufread::MultiGzDecoder::new(buffered);
        use_lines(&mut BufReader::with_capacity(64 * 1024, decoder))
    } else {
        use_lines(&mut buffered)
    }
}

fn read_lines(
    mut input: impl BufRead,
    own: Option<&LoadBalancer>,
    summary: &mut Summary,
    visit: &mut impl FnMut(Record),
) -> std::io::Result<()> {
    let mut line = Vec::with_capacity(1024);
    loop {
        line.clear();
        if input.read_until(b'\n', &mut line)? == 0 {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&line);
        if text.trim().is_empty() {
            continue;
        }
        summary.lines += 1;
        match Record::parse(&text) {
            Ok(record) if own.is_some_and(|own| !own.is(record.get("elb"))) => {
                summary.other_lines += 1;
                if summary.others.len() < 100 {
                    summary.others.insert(record.get("elb").to_owned());
                }
            }
            Ok(record) => visit(record),
            Err(_) => summary.unreadable_lines += 1,
        }
    }
}

/// A blocking `Read` over the chunks of an object's body as they arrive.
struct ChunkReader {
    chunks: tokio::sync::mpsc::Receiver<std::io::Result<bytes_chunk::Chunk>>,
    current: bytes_chunk::Chunk,
}

mod bytes_chunk {
    /// One received piece of a body and how much of it was read.
    #[derive(Default)]
    pub struct Chunk {
        pub data: Vec<u8>,
        pub read: usize,
    }
}

impl Read for ChunkReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.current.read == self.current.data.len() {
            match self.chunks.blocking_recv() {
                Some(chunk) => self.current = chunk?,
                None => return Ok(0),
            }
        }
        let available = &self.current.data[self.current.read..];
        let count = available.len().min(out.len());
        out[..count].copy_from_slice(&available[..count]);
        self.current.read += count;
        Ok(count)
    }
}

/// The SDK's service-specific endpoint variable for S3: it wins over
/// `aws.endpoint_url` / `--endpoint-url` (the endpoint of every service,
/// e.g. the local ALB's, which serves no S3).
pub const S3_ENDPOINT_ENV: &str = "AWS_ENDPOINT_URL_S3";

/// The endpoint S3 calls go to, when not AWS's own: `AWS_ENDPOINT_URL_S3`,
/// else the shared endpoint override.
fn s3_endpoint(sdk: &SdkConfig) -> Option<String> {
    s3_endpoint_env().or_else(|| sdk.endpoint_url().map(str::to_owned))
}

/// `AWS_ENDPOINT_URL_S3`, when set (not blank).
fn s3_endpoint_env() -> Option<String> {
    std::env::var(S3_ENDPOINT_ENV)
        .ok()
        .filter(|url| !url.trim().is_empty())
}

/// Where S3 calls went and what set it, for an error's message: `None` for
/// AWS's own endpoint.
fn s3_endpoint_said(sdk: &SdkConfig) -> Option<String> {
    if let Some(endpoint) = s3_endpoint_env() {
        return Some(format!(
            "the S3 endpoint {endpoint} (set by {S3_ENDPOINT_ENV})"
        ));
    }
    sdk.endpoint_url().map(|endpoint| {
        format!(
            "the endpoint {endpoint} (set by aws.endpoint_url / --endpoint-url; {S3_ENDPOINT_ENV} sets S3's alone)"
        )
    })
}

/// The S3 client: the shared configuration, its endpoint from
/// [`s3_endpoint`], path-style addressing when an endpoint is set (a local
/// S3 such as moto has no bucket host names).
fn s3_client(sdk: &SdkConfig) -> aws_sdk_s3::Client {
    let mut config = aws_sdk_s3::config::Builder::from(sdk);
    if let Some(endpoint) = s3_endpoint(sdk) {
        config = config.endpoint_url(endpoint).force_path_style(true);
    }
    aws_sdk_s3::Client::from_conf(config.build())
}

async fn read_s3(
    sdk: &SdkConfig,
    (bucket, prefix): (&str, &str),
    own: Option<&LoadBalancer>,
    summary: &mut Summary,
    visit: &mut impl FnMut(Record),
) -> anyhow::Result<()> {
    let client = s3_client(sdk);
    for key in log_keys(sdk, &client, bucket, prefix).await? {
        if !summary.takes_file(&key, own) {
            continue;
        }
        let location = format!("s3://{bucket}/{key}");
        read_s3_object(sdk, &client, (bucket, &key), own, summary, visit)
            .await
            .map_err(|error| unreadable(&location, format!("{error:#}")))?;
        summary.files += 1;
    }
    Ok(())
}

/// What to list for a source's prefix: a folder (`prod` lists `prod/`, so
/// never `prod-staging/`), or one log object named whole (`true`: that key
/// only).
fn listed_prefix(prefix: &str) -> (String, bool) {
    if prefix.is_empty() || prefix.ends_with('/') {
        (prefix.to_owned(), false)
    } else if is_log_name(prefix) {
        (prefix.to_owned(), true)
    } else {
        (format!("{prefix}/"), false)
    }
}

/// The keys of the log objects under `prefix` (a folder), sorted (time
/// order in AWS's layout).
async fn log_keys(
    sdk: &SdkConfig,
    client: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
) -> anyhow::Result<Vec<String>> {
    let source = format!("s3://{bucket}/{prefix}");
    let (listed, whole_key) = listed_prefix(prefix);
    let mut keys = Vec::new();
    let mut pages = client
        .list_objects_v2()
        .bucket(bucket)
        .prefix(&listed)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|error| {
            unreadable(&source, explain_s3("ListObjectsV2", (sdk, bucket), &error))
        })?;
        keys.extend(
            page.contents()
                .iter()
                .filter_map(|object| object.key())
                .filter(|key| is_log_name(key) && (!whole_key || *key == listed))
                .map(str::to_owned),
        );
    }
    keys.sort();
    Ok(keys)
}

/// Streams one object: its body's chunks go to a blocking task that
/// decompresses and parses them, and the parsed records come back in
/// batches; both channels are bounded, so memory stays bounded too.
async fn read_s3_object(
    sdk: &SdkConfig,
    client: &aws_sdk_s3::Client,
    (bucket, key): (&str, &str),
    own: Option<&LoadBalancer>,
    summary: &mut Summary,
    visit: &mut impl FnMut(Record),
) -> anyhow::Result<()> {
    let object = client
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(|error| anyhow::anyhow!(explain_s3("GetObject", (sdk, bucket), &error)))?;
    let mut body = object.body;
    let name = key.to_owned();
    let own = own.cloned();
    let (chunk_sender, chunks) = tokio::sync::mpsc::channel(8);
    let (batch_sender, mut batches) = tokio::sync::mpsc::channel::<Vec<Record>>(4);
    let parser = tokio::task::spawn_blocking(move || {
        let reader = ChunkReader {
            chunks,
            current: bytes_chunk::Chunk::default(),
        };
        let mut part = Summary::default();
        let mut batch = Vec::with_capacity(512);
        let result = read_stream(reader, &name, own.as_ref(), &mut part, &mut |record| {
            batch.push(record);
            if batch.len() == 512 {
                let full = std::mem::replace(&mut batch, Vec::with_capacity(512));
                let _ = batch_sender.blocking_send(full);
            }
        });
        if !batch.is_empty() {
            let _ = batch_sender.blocking_send(batch);
        }
        result.map(|()| part)
    });
    let feeding = feed(&mut body, chunk_sender);
    let consuming = async {
        while let Some(batch) = batches.recv().await {
            batch.into_iter().for_each(&mut *visit);
        }
    };
    tokio::join!(feeding, consuming);
    let part = parser
        .await
        .context("the log parser stopped")?
        .context("reading the object")?;
    summary.add(&part);
    Ok(())
}

/// Sends an object's body, chunk by chunk, to a [`ChunkReader`]; stops
/// early when the reader is gone.
async fn feed(
    body: &mut aws_sdk_s3::primitives::ByteStream,
    chunk_sender: tokio::sync::mpsc::Sender<std::io::Result<bytes_chunk::Chunk>>,
) {
    loop {
        match body.try_next().await {
            Ok(Some(data)) => {
                let chunk = bytes_chunk::Chunk {
                    data: data.to_vec(),
                    read: 0,
                };
                if chunk_sender.send(Ok(chunk)).await.is_err() {
                    break;
                }
            }
            Ok(None) => break,
            Err(error) => {
                let _ = chunk_sender
                    .send(Err(std::io::Error::other(error.to_string())))
                    .await;
                break;
            }
        }
    }
}

/// Hands each log file or object of `sources`, in order and decompressed,
/// to `visit` as a reader of its lines, with `state` and its name (the
/// file's path or `s3://bucket/key`): for callers that read the lines
/// themselves (`verify` replays them through parity). Only `own`'s files and
/// entries reach `visit` (lines that are no entry do: the caller reports
/// them); the returned [`Summary`] counts the files read and what of other
/// load balancers was skipped. A source without a log file (of `own`) is an
/// error, as in [`read`]. Streaming as [`read`] does: while an S3 object
/// arrives, `visit` reads it on a blocking thread, so `state` is moved there
/// and back; it is returned at the end. An error of `visit` or of the
/// reading names the file or object. The lines are counted as [`read`]
/// counts them, and logs without an entry of `own` are the same error.
pub async fn read_each<S: Send + 'static>(
    sources: &[Source],
    sdk: &SdkConfig,
    own: Option<&LoadBalancer>,
    mut state: S,
    visit: fn(&mut S, &str, &mut dyn BufRead) -> std::io::Result<()>,
) -> anyhow::Result<(S, Summary)> {
    let mut summary = Summary::default();
    for source in sources {
        let before = summary.clone();
        match source {
            Source::Path(path) => {
                for file in local_files(path)? {
                    let name = file.display().to_string();
                    if !summary.takes_file(&name, own) {
                        continue;
                    }
                    let opened =
                        std::fs::File::open(&file).map_err(|error| unreadable(&name, error))?;
                    let mut part = Summary::default();
                    with_decompressed(opened, &name, |lines| {
                        let mut lines = OwnLines::new(lines, own, &mut part);
                        visit(&mut state, &name, &mut lines)
                    })
                    .map_err(|error| unreadable(&name, error))?;
                    summary.add(&part);
                    summary.files += 1;
                }
            }
            Source::S3 { bucket, prefix } => {
                let client = s3_client(sdk);
                for key in log_keys(sdk, &client, bucket, prefix).await? {
                    if !summary.takes_file(&key, own) {
                        continue;
                    }
                    let name = format!("s3://{bucket}/{key}");
                    let object = client
                        .get_object()
                        .bucket(bucket)
                        .key(&key)
                        .send()
                        .await
                        .map_err(|error| {
                            unreadable(&name, explain_s3("GetObject", (sdk, bucket), &error))
                        })?;
                    let mut body = object.body;
                    let (chunk_sender, chunks) = tokio::sync::mpsc::channel(8);
                    let reading_name = name.clone();
                    let reading_own = own.cloned();
                    let reader = tokio::task::spawn_blocking(move || {
                        let reader = ChunkReader {
                            chunks,
                            current: bytes_chunk::Chunk::default(),
                        };
                        let mut part = Summary::default();
                        let result = with_decompressed(reader, &reading_name, |lines| {
                            let mut lines = OwnLines::new(lines, reading_own.as_ref(), &mut part);
                            visit(&mut state, &reading_name, &mut lines)
                        });
                        (state, part, result)
                    });
                    let (_, read) = tokio::join!(feed(&mut body, chunk_sender), reader);
                    let (returned, part, result) = read.context("the log reader stopped")?;
                    state = returned;
                    result.map_err(|error| unreadable(&name, error))?;
                    summary.add(&part);
                    summary.files += 1;
                }
            }
        }
        if summary.files == before.files {
            return Err(no_files(source, own, &summary, &before));
        }
    }
    check_entries(sources, own, &summary)?;
    Ok((state, summary))
}

/// The lines of a log that reach a caller of [`read_each`]: every line but
/// the entries of other load balancers (by their `elb` field, the third,
/// unquoted), which are counted in the summary. A line that is no entry
/// passes: the caller reports it.
struct OwnLines<'a> {
    lines: &'a mut dyn BufRead,
    own: Option<&'a LoadBalancer>,
    summary: &'a mut Summary,
    line: Vec<u8>,
    at: usize,
}

impl<'a> OwnLines<'a> {
    fn new(
        lines: &'a mut dyn BufRead,
        own: Option<&'a LoadBalancer>,
        summary: &'a mut Summary,
    ) -> Self {
        OwnLines {
            lines,
            own,
            summary,
            line: Vec::with_capacity(1024),
            at: 0,
        }
    }

    /// Counts the line as [`read`] does (a line, an entry or not), and
    /// returns the balancer of another load balancer's entry, `None` for a
    /// line to pass.
    fn other_balancer(&mut self) -> Option<String> {
        let text = String::from_utf8_lossy(&self.line);
        if text.trim().is_empty() {
            return None;
        }
        self.summary.lines += 1;
        let Ok(record) = Record::parse(&text) else {
            self.summary.unreadable_lines += 1;
            return None;
        };
        let elb = record.get("elb");
        self.own
            .is_some_and(|own| !own.is(elb))
            .then(|| elb.to_owned())
    }
}

impl Read for OwnLines<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let available = self.fill_buf()?;
        let count = available.len().min(out.len());
        out[..count].copy_from_slice(&available[..count]);
        self.consume(count);
        Ok(count)
    }
}

impl BufRead for OwnLines<'_> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        while self.at == self.line.len() {
            self.line.clear();
            self.at = 0;
            if self.lines.read_until(b'\n', &mut self.line)? == 0 {
                break;
            }
            if let Some(balancer) = self.other_balancer() {
                self.summary.other_lines += 1;
                if self.summary.others.len() < 100 {
                    self.summary.others.insert(balancer);
                }
                self.line.clear();
            }
        }
        Ok(&self.line[self.at..])
    }

    fn consume(&mut self, amount: usize) {
        self.at = (self.at + amount).min(self.line.len());
    }
}

/// An S3 error as one line the operator can act on: the service and call,
/// the bucket, the code and message (AccessDenied: the permission it lacks),
/// or what the endpoint is when it did not answer as S3 does. Never the
/// SDK's Debug form.
fn explain_s3<E>(
    action: &str,
    (sdk, bucket): (&SdkConfig, &str),
    error: &aws_sdk_s3::error::SdkError<E, HttpResponse>,
) -> String
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + 'static,
{
    use aws_sdk_s3::error::{ProvideErrorMetadata as _, SdkError};
    let endpoint = s3_endpoint(sdk).unwrap_or_else(|| "AWS's S3 endpoint".to_owned());
    let fix = format!(
        "S3 calls go to {endpoint}: set {S3_ENDPOINT_ENV} to your S3 endpoint (e.g. moto_server's URL) when aws.endpoint_url/--endpoint-url is not one"
    );
    // A coded error came from an S3: which one, when it is not AWS's.
    let went_to = s3_endpoint_said(sdk)
        .map(|said| format!(" (the call went to {said})"))
        .unwrap_or_default();
    match (error.code(), error.message()) {
        (Some("AccessDenied"), _) => format!(
            "S3 {action} on bucket {bucket}: AccessDenied: the caller needs s3:ListBucket on the bucket and s3:GetObject on the logs{went_to}"
        ),
        (Some(code), message) => format!(
            "S3 {action} on bucket {bucket}: {code}: {}{went_to}",
            message.unwrap_or("(no message)")
        ),
        (None, _) => match error {
            SdkError::ServiceError(service) => format!(
                "S3 {action} on bucket {bucket}: the endpoint answered HTTP {} with something that is not an S3 response; {fix}",
                service.raw().status().as_u16()
            ),
            SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => format!(
                "S3 {action} on bucket {bucket}: cannot reach the endpoint ({}); {fix}",
                crate::elb::causes(error)
            ),
            _ => format!(
                "S3 {action} on bucket {bucket}: {}; {fix}",
                crate::elb::causes(error)
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_paths_or_s3_urls() {
        assert_eq!(
            Source::parse("s3://logs/prod/AWSLogs"),
            Ok(Source::S3 {
                bucket: "logs".into(),
                prefix: "prod/AWSLogs".into()
            })
        );
        assert_eq!(
            Source::parse("s3://logs"),
            Ok(Source::S3 {
                bucket: "logs".into(),
                prefix: String::new()
            })
        );
        assert!(Source::parse("s3:///x").is_err());
        assert_eq!(Source::parse("a/b"), Ok(Source::Path("a/b".into())));
    }

    #[test]
    fn an_s3_prefix_is_a_folder_or_one_log_object() {
        assert_eq!(listed_prefix("prod"), ("prod/".to_owned(), false));
        assert_eq!(listed_prefix("prod/"), ("prod/".to_owned(), false));
        assert_eq!(listed_prefix(""), (String::new(), false));
        assert_eq!(
            listed_prefix("prod/AWSLogs/1/x.log.gz"),
            ("prod/AWSLogs/1/x.log.gz".to_owned(), true)
        );
    }

    #[test]
    fn files_and_lines_of_other_load_balancers_are_told_apart() {
        let own = LoadBalancer::from_arn(
            "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/prod/50dc6c495c0c9188/f2f7dc8efc522ab2",
        )
        .unwrap();
        assert_eq!(own.to_string(), "app/prod/50dc6c495c0c9188");
        assert!(own.is("app/prod/50dc6c495c0c9188"));
        assert!(!own.is("app/prod-staging/50dc6c495c0c9188"));
        assert!(!own.is("app/prod/0000000000000000"));
        assert!(!own.is("-"));
        let by_name = LoadBalancer::from_settings(&crate::settings::ListenerSettings {
            arn: None,
            load_balancer: Some("prod".into()),
            port: Some(443),
        })
        .unwrap();
        assert!(by_name.is("app/prod/0000000000000000"));
        assert!(!by_name.is("app/prod-staging/0000000000000000"));
        assert_eq!(
            load_balancer_of_file(
                "logs/AWSLogs/1/elasticloadbalancing/us-east-1/2026/12/01/123456789012_elasticloadbalancing_us-east-1_app.prod-staging.50dc6c495c0c9188_20261201T1005Z_10.0.0.1_abc.log.gz"
            )
            .as_deref(),
            Some("app/prod-staging/50dc6c495c0c9188")
        );
        assert_eq!(load_balancer_of_file("logs/requests.log"), None);

        let line = |elb: &str| {
            let mut record = Record::new();
            record
                .set("elb", elb)
                .set("request", "GET http://a:80/x HTTP/1.1");
            record.render()
        };
        let text = format!(
            "{}\n{}\nnot an entry\n{}\n",
            line("app/prod/50dc6c495c0c9188"),
            line("app/staging/1"),
            line("app/prod/50dc6c495c0c9188")
        );
        let mut summary = Summary::default();
        let mut input = text.as_bytes();
        let mut kept = String::new();
        OwnLines::new(&mut input, Some(&own), &mut summary)
            .read_to_string(&mut kept)
            .unwrap();
        assert_eq!(kept.lines().count(), 3, "{kept}");
        assert!(!kept.contains("app/staging/1"));
        assert_eq!(summary.other_lines, 1);
        assert_eq!(
            summary.skipped_text().as_deref(),
            Some("skipped 1 line of other load balancers: app/staging/1")
        );
    }
}
