//! A Kafka-triggered Lambda function written the way most Rust ones are, with
//! `aws_lambda_events::event::kafka::KafkaEvent`, to show (and test) that `esm-local` drives
//! functions it knows nothing about.
//!
//! It reads each partition in offset order. A record whose value is `fail` is reported in the
//! partial batch response (and the rest of its partition is left for the redelivery); any other
//! record is accepted. With `PROBE_LOG` set, every record it accepts is appended to that file as
//! a `partition-key offset value` line. With `PROBE_INVOCATIONS` set, each invocation appends
//! `start_ms end_ms partition-key,...` to that file; `PROBE_SLEEP_MS` makes each invocation
//! take at least that long (to see pollers overlap).
//!
//! Build and run: `cargo build -p esm-local --example probe`, then
//! `esm-local run --function target/debug/examples/probe --file lines.txt --topic demo`.

use std::io::Write as _;

use aws_lambda_events::event::kafka::KafkaEvent;
use base64::Engine as _;
use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde::Serialize;

/// The Kafka partial batch response (`aws_lambda_events` has no type for it yet).
#[derive(Serialize, Default)]
#[serde(rename_all = "camelCase")]
struct Response {
    batch_item_failures: Vec<Failure>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Failure {
    item_identifier: Identifier,
}

#[derive(Serialize)]
struct Identifier {
    partition: String,
    offset: i64,
}

async fn handle(event: LambdaEvent<KafkaEvent>) -> Result<Response, Error> {
    let started = now_ms();
    if let Some(ms) = std::env::var("PROBE_SLEEP_MS")
        .ok()
        .and_then(|ms| ms.parse().ok())
    {
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    }
    let mut accepted = Vec::new();
    let mut response = Response::default();
    for (key, records) in &event.payload.records {
        for record in records {
            let value = match &record.value {
                Some(encoded) => base64::engine::general_purpose::STANDARD.decode(encoded)?,
                None => Vec::new(),
            };
            if value == b"fail" {
                response.batch_item_failures.push(Failure {
                    item_identifier: Identifier {
                        partition: key.clone(),
                        offset: record.offset,
                    },
                });
                break;
            }
            accepted.push(format!(
                "{key} {} {}\n",
                record.offset,
                String::from_utf8_lossy(&value)
            ));
        }
    }
    if let Ok(path) = std::env::var("PROBE_LOG") {
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?;
        log.write_all(accepted.concat().as_bytes())?;
    }
    if let Ok(path) = std::env::var("PROBE_INVOCATIONS") {
        let partitions: Vec<&str> = event.payload.records.keys().map(String::as_str).collect();
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?;
        // One write per line: several probe processes append to the same file.
        let line = format!("{started} {} {}\n", now_ms(), partitions.join(","));
        log.write_all(line.as_bytes())?;
    }
    Ok(response)
}

fn now_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default()
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::run(service_fn(handle)).await
}
