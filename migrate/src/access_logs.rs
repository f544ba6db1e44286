//! The one reader of ALB access logs for `leaks`, `plan`, `retire` and
//! `verify --from-alb-log`: files
//! (plain or gzip, told by their first bytes), directories walked in AWS's
//! layout (every `*.log` and `*.log.gz` below, in name order, which is time
//! order within AWS's layout), and `s3://bucket/prefix` (every log object
//! under the prefix, through the same AWS configuration and endpoint as every
//! other call; path-style addressing when an endpoint is set). Line by line:
//! a file or object is never held whole in memory. Lines are parsed by
//! `alb::access_log`, the format's one home.

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

/// What was read.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Summary {
    pub files: usize,
    pub lines: usize,
    /// Lines that are not access log entries (counted, not fatal).
    pub unreadable_lines: usize,
}

/// A failure to read the logs (exit 4 in `leaks`): the source and why.
fn unreadable(source: &impl std::fmt::Display, error: impl std::fmt::Display) -> anyhow::Error {
    Failure::LogsUnreadable(format!("cannot read the access logs at {source}: {error}")).into()
}

/// Reads every entry of `sources` in order, handing each to `visit`.
pub async fn read(
    sources: &[Source],
    sdk: &SdkConfig,
    mut visit: impl FnMut(Record),
) -> anyhow::Result<Summary> {
    let mut summary = Summary::default();
    for source in sources {
        let files_before = summary.files;
        match source {
            Source::Path(path) => read_path(path, &mut summary, &mut visit)?,
            Source::S3 { bucket, prefix } => {
                read_s3(sdk, bucket, prefix, &mut summary, &mut visit).await?;
            }
        }
        if summary.files == files_before {
            return Err(no_files(source));
        }
    }
    if summary.lines == summary.unreadable_lines {
        return Err(Failure::LogsUnreadable(format!(
            "{}: {} in {}, none an ALB access-log entry; name the ALB's access logs (the .log.gz files under AWSLogs/)",
            sources
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            crate::output::count(summary.lines, "line", "lines"),
            crate::output::count(summary.files, "file", "files"),
        ))
        .into());
    }
    Ok(summary)
}

/// No log file under a source: evidence of nothing, never "no leaks".
fn no_files(source: &Source) -> anyhow::Error {
    let fix = match source {
        Source::S3 { .. } => "check the bucket and prefix",
        Source::Path(_) => "check the path (files named *.log or *.log.gz)",
    };
    Failure::LogsUnreadable(format!("no access-log file under {source}: {fix}")).into()
}

fn read_path(
    path: &Path,
    summary: &mut Summary,
    visit: &mut impl FnMut(Record),
) -> anyhow::Result<()> {
    let metadata = std::fs::metadata(path).map_err(|error| unreadable(&path.display(), error))?;
    let files = if metadata.is_dir() {
        log_files_under(path).map_err(|error| unreadable(&path.display(), error))?
    } else {
        vec![path.to_owned()]
    };
    for file in files {
        let opened =
            std::fs::File::open(&file).map_err(|error| unreadable(&file.display(), error))?;
        let name = file.to_string_lossy();
        read_stream(opened, &name, summary, visit)
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
    summary: &mut Summary,
    visit: &mut impl FnMut(Record),
) -> std::io::Result<()> {
    with_decompressed(input, name, |lines| read_lines(lines, summary, visit))
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
            "named .gz but not gzip (its first bytes are not gzip's); gunzip-compress it or rename it",
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
    std::env::var(S3_ENDPOINT_ENV)
        .ok()
        .filter(|url| !url.trim().is_empty())
        .or_else(|| sdk.endpoint_url().map(str::to_owned))
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
    bucket: &str,
    prefix: &str,
    summary: &mut Summary,
    visit: &mut impl FnMut(Record),
) -> anyhow::Result<()> {
    let client = s3_client(sdk);
    for key in log_keys(sdk, &client, bucket, prefix).await? {
        let location = format!("s3://{bucket}/{key}");
        read_s3_object(sdk, &client, bucket, &key, summary, visit)
            .await
            .map_err(|error| unreadable(&location, format!("{error:#}")))?;
        summary.files += 1;
    }
    Ok(())
}

/// The keys of the log objects under `prefix`, sorted (time order in AWS's
/// layout).
async fn log_keys(
    sdk: &SdkConfig,
    client: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
) -> anyhow::Result<Vec<String>> {
    let source = format!("s3://{bucket}/{prefix}");
    let mut keys = Vec::new();
    let mut pages = client
        .list_objects_v2()
        .bucket(bucket)
        .prefix(prefix)
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
                .filter(|key| is_log_name(key))
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
    bucket: &str,
    key: &str,
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
    let (chunk_sender, chunks) = tokio::sync::mpsc::channel(8);
    let (batch_sender, mut batches) = tokio::sync::mpsc::channel::<Vec<Record>>(4);
    let parser = tokio::task::spawn_blocking(move || {
        let reader = ChunkReader {
            chunks,
            current: bytes_chunk::Chunk::default(),
        };
        let mut part = Summary::default();
        let mut batch = Vec::with_capacity(512);
        let result = read_stream(reader, &name, &mut part, &mut |record| {
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
    summary.lines += part.lines;
    summary.unreadable_lines += part.unreadable_lines;
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
/// themselves (`verify` replays them through parity). Streaming as [`read`]
/// does: while an S3 object arrives, `visit` reads it on a blocking thread,
/// so `state` is moved there and back; it is returned at the end. An error
/// of `visit` or of the reading names the file or object.
pub async fn read_each<S: Send + 'static>(
    sources: &[Source],
    sdk: &SdkConfig,
    mut state: S,
    visit: fn(&mut S, &str, &mut dyn BufRead) -> std::io::Result<()>,
) -> anyhow::Result<S> {
    for source in sources {
        match source {
            Source::Path(path) => {
                let metadata =
                    std::fs::metadata(path).map_err(|error| unreadable(&path.display(), error))?;
                let files = if metadata.is_dir() {
                    log_files_under(path).map_err(|error| unreadable(&path.display(), error))?
                } else {
                    vec![path.to_owned()]
                };
                for file in files {
                    let name = file.display().to_string();
                    let opened =
                        std::fs::File::open(&file).map_err(|error| unreadable(&name, error))?;
                    with_decompressed(opened, &name, |lines| visit(&mut state, &name, lines))
                        .map_err(|error| unreadable(&name, error))?;
                }
            }
            Source::S3 { bucket, prefix } => {
                let client = s3_client(sdk);
                for key in log_keys(sdk, &client, bucket, prefix).await? {
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
                    let reader = tokio::task::spawn_blocking(move || {
                        let reader = ChunkReader {
                            chunks,
                            current: bytes_chunk::Chunk::default(),
                        };
                        let result = with_decompressed(reader, &reading_name, |lines| {
                            visit(&mut state, &reading_name, lines)
                        });
                        (state, result)
                    });
                    let (_, read) = tokio::join!(feed(&mut body, chunk_sender), reader);
                    let (returned, result) = read.context("the log reader stopped")?;
                    state = returned;
                    result.map_err(|error| unreadable(&name, error))?;
                }
            }
        }
    }
    Ok(state)
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
    match (error.code(), error.message()) {
        (Some("AccessDenied"), _) => format!(
            "S3 {action} on bucket {bucket}: AccessDenied: the caller needs s3:ListBucket on the bucket and s3:GetObject on the logs"
        ),
        (Some(code), message) => format!(
            "S3 {action} on bucket {bucket}: {code}: {}",
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
}
