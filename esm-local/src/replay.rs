//! Replaying what the mapping gave up on: on-failure documents in the S3 form (metadata plus
//! the whole event as `payload`), read from files, directories (as `aws s3 cp --recursive`
//! leaves them), JSON lines (as `esm-local run --on-failure-file` writes them) or, with the
//! `s3` feature, an `s3://bucket/prefix`. Each payload becomes a
//! [`PayloadSource`] that the runner delivers to the function
//! with the mapping's rules, so a partial batch response is redelivered from the reported
//! offset exactly as the mapping would have.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::function::Function;
use crate::on_failure::destination::Destination;
use crate::on_failure::documents::Document;
use crate::rules::Settings;
use crate::runner::{self, RunOptions, Source};
use crate::source::payload::{payload_records, PayloadSource};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// What replaying one document did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replayed {
    /// The document's origin.
    pub origin: String,
    /// Records in its payload.
    pub records: u64,
    /// Records the function accepted (not reported, within the retries).
    pub accepted: u64,
    /// Records still reported, or in a batch that still failed, after the retries.
    pub still_failing: u64,
    /// Invocations it took.
    pub invocations: u64,
    /// Why the document could not be replayed at all (no payload, not an event).
    pub unusable: Option<String>,
}

/// How a replay delivers each document.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    /// The function's timeout: each invocation's deadline.
    pub timeout: Duration,
    /// Retries of a document's batch before its records count as still failing.
    pub maximum_retry_attempts: u32,
    /// The wait before the first retry; it doubles up to 5 s.
    pub backoff: Duration,
}

/// Delivers each document's payload to `function` as one batch, with the mapping's rules;
/// what still fails goes to `destination` (in the same S3 form). Stops early when `stop` is set.
pub async fn replay(
    documents: &[Document],
    function: &mut Function,
    options: &ReplayOptions,
    destination: &Destination,
    stop: Arc<AtomicBool>,
) -> Result<Vec<Replayed>, Error> {
    let mut outcomes = Vec::new();
    for document in documents {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let unusable = |why: String| Replayed {
            origin: document.origin.clone(),
            records: 0,
            accepted: 0,
            still_failing: 0,
            invocations: 0,
            unusable: Some(why),
        };
        let Some(payload) = &document.payload else {
            outcomes.push(unusable(
                "no payload: an SQS or SNS on-failure record holds offsets only; replay those \
                 records from the topic while it still has them"
                    .to_owned(),
            ));
            continue;
        };
        let (event_source, records) = match payload_records(payload) {
            Ok(decoded) => decoded,
            Err(error) => {
                outcomes.push(unusable(error.to_string()));
                continue;
            }
        };
        let count = u64::try_from(records.len()).unwrap_or(u64::MAX);
        // One document, one batch, as the mapping delivered it.
        let settings = Settings {
            batch_size: 10_000,
            batching_window: Duration::ZERO,
            maximum_retry_attempts: Some(options.maximum_retry_attempts),
            ..Settings::default()
        };
        let mut run_options = RunOptions::new(settings, event_source);
        run_options.timeout = options.timeout;
        run_options.backoff = options.backoff;
        let mut source = Source::Payload(PayloadSource::new(records));
        let summary = runner::run(
            &run_options,
            &mut source,
            function,
            destination,
            stop.clone(),
        )
        .await?;
        outcomes.push(Replayed {
            origin: document.origin.clone(),
            records: count,
            accepted: count.saturating_sub(summary.on_failure_records),
            still_failing: summary.on_failure_records,
            invocations: summary.invocations,
            unusable: None,
        });
    }
    Ok(outcomes)
}
