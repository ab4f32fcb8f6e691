//! On-failure documents in the S3 form (metadata plus the whole event as `payload`), read from
//! files, directories (as `aws s3 cp --recursive` leaves them), JSON lines (as `esm-local run
//! --on-failure-file` writes them) or, with the `s3` feature, an `s3://bucket/prefix`.

use std::path::{Path, PathBuf};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// One on-failure document: where it came from, and its payload (absent in the SQS and SNS
/// forms, which carry offsets only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    /// A file path (with `:line` for JSON lines) or an S3 URL.
    pub origin: String,
    /// The invocation event as the function received it.
    pub payload: Option<String>,
}

/// The documents in `text`: one JSON document, or one per line.
pub fn parse_documents(text: &str, origin: &str) -> Result<Vec<Document>, Error> {
    let payload_of = |value: &serde_json::Value| {
        value
            .get("payload")
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
    };
    if let Ok(value) = serde_json::from_str::<serde_json::Value>(text) {
        return Ok(vec![Document {
            origin: origin.to_owned(),
            payload: payload_of(&value),
        }]);
    }
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(index, line)| {
            let at = format!("{origin}:{}", index + 1);
            let value: serde_json::Value = serde_json::from_str(line)
                .map_err(|e| format!("{at}: not an on-failure document: {e}"))?;
            Ok(Document {
                payload: payload_of(&value),
                origin: at,
            })
        })
        .collect()
}

/// The documents in a file, or in every file under a directory (in path order).
pub fn documents_from_path(path: &Path) -> Result<Vec<Document>, Error> {
    let mut files = Vec::new();
    collect_files(path, &mut files)?;
    files.sort();
    let mut documents = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file)
            .map_err(|e| format!("reading {}: {e}", file.display()))?;
        documents.extend(parse_documents(&text, &file.display().to_string())?);
    }
    Ok(documents)
}

fn collect_files(path: &Path, files: &mut Vec<PathBuf>) -> Result<(), Error> {
    let metadata =
        std::fs::metadata(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    if metadata.is_dir() {
        for entry in
            std::fs::read_dir(path).map_err(|e| format!("listing {}: {e}", path.display()))?
        {
            collect_files(&entry?.path(), files)?;
        }
    } else {
        files.push(path.to_path_buf());
    }
    Ok(())
}

/// An S3 client with the AWS configuration from the environment (`AWS_ENDPOINT_URL` points it
/// at moto or LocalStack, which serve buckets under the path rather than as host names).
#[cfg(feature = "s3")]
pub async fn s3_client() -> aws_sdk_s3::Client {
    let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&config)
            .force_path_style(std::env::var_os("AWS_ENDPOINT_URL").is_some())
            .build(),
    )
}

/// The documents under `s3://bucket/prefix` (every object, in key order), as Lambda's S3
/// on-failure destination writes them.
#[cfg(feature = "s3")]
pub async fn documents_from_s3(
    client: &aws_sdk_s3::Client,
    url: &str,
) -> Result<Vec<Document>, Error> {
    let rest = url
        .strip_prefix("s3://")
        .ok_or_else(|| format!("{url}: expected s3://bucket/prefix"))?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let describe = |e: &dyn std::fmt::Display| format!("{url}: {e}");
    let mut keys = Vec::new();
    let mut pages = client
        .list_objects_v2()
        .bucket(bucket)
        .prefix(prefix)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| describe(&aws_sdk_s3::error::DisplayErrorContext(e)))?;
        keys.extend(
            page.contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_owned)),
        );
    }
    keys.sort();
    let mut documents = Vec::new();
    for key in keys {
        let object = client
            .get_object()
            .bucket(bucket)
            .key(&key)
            .send()
            .await
            .map_err(|e| describe(&aws_sdk_s3::error::DisplayErrorContext(e)))?;
        let bytes = object
            .body
            .collect()
            .await
            .map_err(|e| describe(&e))?
            .into_bytes();
        let text = String::from_utf8(bytes.to_vec())
            .map_err(|_| format!("s3://{bucket}/{key}: not UTF-8 text"))?;
        documents.extend(parse_documents(&text, &format!("s3://{bucket}/{key}"))?);
    }
    Ok(documents)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_come_one_per_file_or_one_per_line() {
        let one = r#"{"requestContext":{},"payload":"{}"}"#;
        assert_eq!(
            parse_documents(one, "a.json").unwrap(),
            vec![Document {
                origin: "a.json".into(),
                payload: Some("{}".into())
            }]
        );
        let lines = format!("{one}\n\n{{\"requestContext\":{{}}}}\n");
        let documents = parse_documents(&lines, "of.jsonl").unwrap();
        assert_eq!(
            documents,
            vec![
                Document {
                    origin: "of.jsonl:1".into(),
                    payload: Some("{}".into())
                },
                Document {
                    origin: "of.jsonl:3".into(),
                    payload: None
                },
            ]
        );
        let error = parse_documents("{\"a\":1}\nnot json\n", "x").unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("x:2: not an on-failure document"),
            "{error}"
        );
    }
}
