//! What the event source mapping does with an invocation's outcome: commit, redeliver from a
//! reported offset, retry the batch (whole or bisected), or give up on it and send it to the
//! on-failure destination. Pure: the runner does the I/O these decisions call for.
//!
//! The rules, from the Lambda developer guide (pages kafka-retry-configurations,
//! kafka-on-failure, invocation-eventsourcemapping):
//! - an empty response (`null`, `{}`, no or an empty `batchItemFailures`) commits the batch;
//! - `batchItemFailures` commits every other partition and redelivers each reported partition
//!   from its lowest reported offset;
//! - an error, a timeout, a crash, a response that is not a batch response, or an identifier
//!   that is not in the batch retries the whole batch;
//! - `MaximumRetryAttempts` bounds the retries of a batch (a redelivery after a partial
//!   response is a retry of what it redelivers); past it, the batch goes to the on-failure
//!   destination and its partitions move on;
//! - `BisectBatchOnFunctionError` splits a batch that failed with an error in two and tries
//!   each half; a split does not count as a retry;
//! - records older than `MaximumRecordAgeInSeconds` are not delivered but sent to the
//!   on-failure destination.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};

use crate::batch::{Batch, EventSource, TopicPartition, MAX_PAYLOAD_BYTES};

/// The event source mapping's settings that shape delivery (names as in the SAM template).
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// `BatchSize`.
    pub batch_size: usize,
    /// `MaximumBatchingWindowInSeconds`.
    pub batching_window: Duration,
    /// The invocation payload cap (6 MB).
    pub max_payload_bytes: usize,
    /// `None`: -1, retry until the records expire from the topic.
    pub maximum_retry_attempts: Option<u32>,
    /// `None`: -1, no limit.
    pub maximum_record_age: Option<Duration>,
    /// `BisectBatchOnFunctionError`.
    pub bisect_batch_on_function_error: bool,
    /// `FunctionResponseTypes: [ReportBatchItemFailures]`. Without it Lambda ignores the
    /// response: reported failures count as success.
    pub report_batch_item_failures: bool,
}

impl Default for Settings {
    /// Lambda's defaults for Kafka, except `ReportBatchItemFailures`, which the function needs.
    fn default() -> Self {
        Self {
            batch_size: 100,
            batching_window: Duration::from_millis(500),
            max_payload_bytes: MAX_PAYLOAD_BYTES,
            maximum_retry_attempts: None,
            maximum_record_age: None,
            bisect_batch_on_function_error: false,
            report_batch_item_failures: true,
        }
    }
}

impl Settings {
    /// Checks the ranges Lambda accepts, so that nothing runs here that AWS would refuse.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=10_000).contains(&self.batch_size) {
            return Err(format!("BatchSize {} is not in 1..10000", self.batch_size));
        }
        if self.batching_window > Duration::from_secs(300) {
            return Err("MaximumBatchingWindowInSeconds is over 300".into());
        }
        if self.maximum_retry_attempts.is_some_and(|n| n > 10_000) {
            return Err("MaximumRetryAttempts is over 10000".into());
        }
        if let Some(age) = self.maximum_record_age {
            if !(60..=604_800).contains(&age.as_secs()) {
                return Err(format!(
                    "MaximumRecordAgeInSeconds {} is not -1 or in 60..604800",
                    age.as_secs()
                ));
            }
        }
        Ok(())
    }
}

/// How an invocation ended, as the runner saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invocation {
    /// The function posted this response.
    Response(Vec<u8>),
    /// The function posted this error.
    Error(Vec<u8>),
    /// No answer by the deadline.
    Timeout,
    /// The function process exited during the invocation.
    Crashed(String),
}

/// What an invocation's outcome means for its batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The whole batch is done.
    Success,
    /// Redeliver these partitions from these offsets; the others succeeded.
    Partial(BTreeMap<TopicPartition, i64>),
    /// The whole batch failed.
    Failed(Failure),
}

/// Why a whole batch failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The function returned an error.
    FunctionError(String),
    /// The function did not answer by its deadline.
    Timeout,
    /// The function's process died.
    Crashed(String),
    /// The response is not a batch response.
    InvalidResponse(String),
    /// A reported identifier is not a record of the batch.
    UnknownIdentifier(String),
}

impl Failure {
    /// Whether the function itself failed (what `BisectBatchOnFunctionError` reacts to, and
    /// `functionError: Unhandled` in the on-failure record).
    pub fn is_function_error(&self) -> bool {
        matches!(
            self,
            Self::FunctionError(_) | Self::Timeout | Self::Crashed(_)
        )
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::FunctionError(body) => write!(f, "function error: {body}"),
            Self::Timeout => write!(f, "the function timed out"),
            Self::Crashed(why) => write!(f, "the function crashed: {why}"),
            Self::InvalidResponse(why) => write!(f, "not a batch response: {why}"),
            Self::UnknownIdentifier(id) => write!(f, "reported identifier not in the batch: {id}"),
        }
    }
}

/// Reads an invocation's outcome as Lambda does.
pub fn judge(batch: &Batch, invocation: &Invocation, settings: &Settings) -> Verdict {
    let body = match invocation {
        Invocation::Response(body) => body,
        Invocation::Error(body) => {
            return Verdict::Failed(Failure::FunctionError(
                String::from_utf8_lossy(body).into_owned(),
            ))
        }
        Invocation::Timeout => return Verdict::Failed(Failure::Timeout),
        Invocation::Crashed(why) => return Verdict::Failed(Failure::Crashed(why.clone())),
    };
    if !settings.report_batch_item_failures {
        return Verdict::Success;
    }
    let invalid = |why: &str| Verdict::Failed(Failure::InvalidResponse(why.to_owned()));
    let text = String::from_utf8_lossy(body);
    if text.trim().is_empty() {
        return Verdict::Success;
    }
    let response: Value = match serde_json::from_str(&text) {
        Ok(value) => value,
        Err(e) => return invalid(&format!("{e}: {text}")),
    };
    let failures = match &response {
        Value::Null => return Verdict::Success,
        Value::Object(fields) => match fields.get("batchItemFailures") {
            None | Some(Value::Null) => return Verdict::Success,
            Some(Value::Array(items)) => items,
            Some(_) => return invalid("batchItemFailures is not a list"),
        },
        _ => return invalid(&format!("not an object: {text}")),
    };
    let mut redeliver: BTreeMap<TopicPartition, i64> = BTreeMap::new();
    for item in failures {
        let identifier = &item["itemIdentifier"];
        let (Some(key), Some(offset)) = (
            identifier["partition"].as_str(),
            identifier["offset"].as_i64(),
        ) else {
            return Verdict::Failed(Failure::UnknownIdentifier(identifier.to_string()));
        };
        let Some(partition) = batch.partitions().find(|p| p.to_string() == key) else {
            return Verdict::Failed(Failure::UnknownIdentifier(identifier.to_string()));
        };
        if !batch.contains(partition, offset) {
            return Verdict::Failed(Failure::UnknownIdentifier(identifier.to_string()));
        }
        let lowest = redeliver.entry(partition.clone()).or_insert(offset);
        *lowest = (*lowest).min(offset);
    }
    if redeliver.is_empty() {
        Verdict::Success
    } else {
        Verdict::Partial(redeliver)
    }
}

/// A batch on its way through the mapping, with its history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackedBatch {
    /// The records.
    pub batch: Batch,
    /// Retries used so far (bisection does not count).
    pub retries: u32,
    /// Invocations of this batch and of the batches it came from.
    pub invocations: u32,
}

impl TrackedBatch {
    /// A batch not invoked yet.
    pub fn new(batch: Batch) -> Self {
        Self {
            batch,
            retries: 0,
            invocations: 0,
        }
    }
}

/// Why records went to the on-failure destination (`requestContext.condition`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    /// `MaximumRetryAttempts` ran out.
    RetryAttemptsExhausted,
    /// A record alone exceeds the payload cap.
    MaximumPayloadSizeExceeded,
    /// The Kafka pages document the two conditions above; this is the one Lambda's stream
    /// event sources use for `MaximumRecordAgeInSeconds`.
    RecordAgeExceeded,
}

impl Condition {
    /// The condition as on-failure documents spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RetryAttemptsExhausted => "RetryAttemptsExhausted",
            Self::MaximumPayloadSizeExceeded => "MaximumPayloadSizeExceeded",
            Self::RecordAgeExceeded => "RecordAgeExceeded",
        }
    }
}

/// Records the mapping gives up on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discarded {
    /// The records given up on.
    pub batch: Batch,
    /// Why.
    pub condition: Condition,
    /// How often they were invoked.
    pub invocations: u32,
    /// The last failure was the function's own (error, timeout, crash).
    pub function_error: bool,
}

/// What to do after an invocation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decision {
    /// Per partition, the offset to commit: the next one to read.
    pub commit: BTreeMap<TopicPartition, i64>,
    /// Batches to invoke next, in order, before any new batch.
    pub retry: Vec<TrackedBatch>,
    /// Records given up on, for the on-failure destination.
    pub discarded: Option<Discarded>,
}

/// Decides what follows an invocation of `attempt` (whose counters already include it).
pub fn decide(attempt: TrackedBatch, verdict: &Verdict, settings: &Settings) -> Decision {
    let retries_left = settings
        .maximum_retry_attempts
        .is_none_or(|max| attempt.retries < max);
    let give_up = |attempt: TrackedBatch, function_error: bool| Decision {
        commit: attempt.batch.next_offsets(),
        retry: vec![],
        discarded: Some(Discarded {
            batch: attempt.batch,
            condition: Condition::RetryAttemptsExhausted,
            invocations: attempt.invocations,
            function_error,
        }),
    };
    match verdict {
        Verdict::Success => Decision {
            commit: attempt.batch.next_offsets(),
            ..Decision::default()
        },
        Verdict::Partial(from) => {
            let mut commit = attempt.batch.next_offsets();
            commit.extend(from.iter().map(|(p, &offset)| (p.clone(), offset)));
            let again = TrackedBatch {
                batch: attempt.batch.redelivered(from),
                retries: attempt.retries + 1,
                invocations: attempt.invocations,
            };
            if !retries_left {
                let mut decision = give_up(again, false);
                decision.commit = attempt.batch.next_offsets();
                return decision;
            }
            Decision {
                commit,
                retry: vec![again],
                discarded: None,
            }
        }
        Verdict::Failed(failure) => {
            if settings.bisect_batch_on_function_error
                && failure.is_function_error()
                && attempt.batch.len() > 1
            {
                let (first, second) = attempt.batch.bisect();
                let half = |batch| TrackedBatch {
                    batch,
                    retries: attempt.retries,
                    invocations: attempt.invocations,
                };
                return Decision {
                    retry: vec![half(first), half(second)],
                    ..Decision::default()
                };
            }
            if !retries_left {
                return give_up(attempt, failure.is_function_error());
            }
            Decision {
                retry: vec![TrackedBatch {
                    retries: attempt.retries + 1,
                    ..attempt
                }],
                ..Decision::default()
            }
        }
    }
}

/// Who invoked what, for the on-failure record.
#[derive(Debug, Clone)]
pub struct FailureContext<'a> {
    /// The request id the document names.
    pub request_id: &'a str,
    /// The function's ARN.
    pub function_arn: &'a str,
    /// The event source of the batch.
    pub source: &'a EventSource,
    /// When, epoch milliseconds.
    pub now_ms: i64,
}

/// The record Lambda sends to the on-failure destination (page kafka-on-failure): metadata
/// per partition, and with `with_payload` (an S3 destination) the whole event as a string.
pub fn on_failure_record(
    discarded: &Discarded,
    context: &FailureContext<'_>,
    with_payload: bool,
) -> Value {
    let records_info: serde_json::Map<String, Value> = discarded
        .batch
        .partitions()
        .filter_map(|partition| {
            let records = discarded.batch.records_of(partition);
            let (first, last) = (records.first()?, records.last()?);
            Some((
                partition.to_string(),
                json!({
                    "firstRecordOffset": first.offset.to_string(),
                    "lastRecordOffset": last.offset.to_string(),
                    "firstRecordTimestamp": rfc3339(first.timestamp_ms),
                    "lastRecordTimestamp": rfc3339(last.timestamp_ms),
                }),
            ))
        })
        .collect();
    let payload = discarded.batch.event_json(context.source);
    let response_context = match discarded.condition {
        Condition::MaximumPayloadSizeExceeded => Value::Null,
        _ if discarded.function_error => json!({
            "statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"
        }),
        _ => json!({"statusCode": 200, "executedVersion": "$LATEST"}),
    };
    let mut record = json!({
        "requestContext": {
            "requestId": context.request_id,
            "functionArn": context.function_arn,
            "condition": discarded.condition.as_str(),
            "approximateInvokeCount": discarded.invocations,
        },
        "responseContext": response_context,
        "version": "1.0",
        "timestamp": rfc3339(context.now_ms),
        "KafkaBatchInfo": {
            "batchSize": discarded.batch.len(),
            "eventSourceArn": context.source.event_source_arn,
            "bootstrapServers": context.source.bootstrap_servers,
            "payloadSize": payload.len(),
            "recordsInfo": records_info,
        },
    });
    if with_payload {
        record["payload"] = Value::String(payload);
    }
    record
}

fn rfc3339(epoch_ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(epoch_ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{Record, SourceRecord, TimestampType};

    fn record(partition: i32, offset: i64) -> Record {
        Record::new(&SourceRecord {
            topic: "orders".into(),
            partition,
            offset,
            timestamp_ms: 1_700_000_000_000 + offset,
            timestamp_type: TimestampType::CreateTime,
            key: None,
            value: Some(format!("{{\"n\":{offset}}}").into_bytes()),
            headers: vec![],
        })
    }

    /// orders-0 offsets 10..=12, orders-1 offsets 20..=21.
    fn batch() -> Batch {
        Batch::from_records(
            [(0, 10), (0, 11), (0, 12), (1, 20), (1, 21)].map(|(p, o)| record(p, o)),
        )
    }

    fn tp(partition: i32) -> TopicPartition {
        TopicPartition::new("orders", partition)
    }

    fn response(text: &str) -> Invocation {
        Invocation::Response(text.as_bytes().to_vec())
    }

    fn offsets(batch: &Batch) -> Vec<(i32, i64)> {
        batch
            .records()
            .map(|r| (r.partition.partition, r.offset))
            .collect()
    }

    #[test]
    fn empty_responses_are_success() {
        let settings = Settings::default();
        for text in [
            "",
            "null",
            "{}",
            r#"{"batchItemFailures":[]}"#,
            r#"{"batchItemFailures":null}"#,
        ] {
            assert_eq!(
                judge(&batch(), &response(text), &settings),
                Verdict::Success,
                "{text:?}"
            );
        }
    }

    #[test]
    fn reported_partitions_redeliver_from_their_lowest_offset() {
        let text = r#"{"batchItemFailures":[
            {"itemIdentifier":{"partition":"orders-0","offset":12}},
            {"itemIdentifier":{"partition":"orders-0","offset":11}}]}"#;
        let verdict = judge(&batch(), &response(text), &Settings::default());
        assert_eq!(verdict, Verdict::Partial(BTreeMap::from([(tp(0), 11)])));
        let decision = decide(
            TrackedBatch {
                batch: batch(),
                retries: 0,
                invocations: 1,
            },
            &verdict,
            &Settings::default(),
        );
        assert_eq!(decision.commit, BTreeMap::from([(tp(0), 11), (tp(1), 22)]));
        assert_eq!(decision.retry.len(), 1);
        assert_eq!(offsets(&decision.retry[0].batch), vec![(0, 11), (0, 12)]);
        assert_eq!(decision.retry[0].retries, 1);
        assert_eq!(decision.discarded, None);
    }

    #[test]
    fn identifiers_outside_the_batch_and_bad_responses_fail_the_whole_batch() {
        let settings = Settings::default();
        for text in [
            r#"{"batchItemFailures":[{"itemIdentifier":{"partition":"orders-0","offset":13}}]}"#,
            r#"{"batchItemFailures":[{"itemIdentifier":{"partition":"orders-7","offset":10}}]}"#,
            r#"{"batchItemFailures":[{"itemIdentifier":{"partition":"orders-0","offset":"10"}}]}"#,
            r#"{"batchItemFailures":[{"itemIdentifier":{"topic-partition":"orders-0","offset":10}}]}"#,
        ] {
            assert!(
                matches!(
                    judge(&batch(), &response(text), &settings),
                    Verdict::Failed(Failure::UnknownIdentifier(_))
                ),
                "{text}"
            );
        }
        for text in ["[]", "not json", r#"{"batchItemFailures":{}}"#] {
            assert!(
                matches!(
                    judge(&batch(), &response(text), &settings),
                    Verdict::Failed(Failure::InvalidResponse(_))
                ),
                "{text}"
            );
        }
        let decision = decide(
            TrackedBatch {
                batch: batch(),
                retries: 0,
                invocations: 1,
            },
            &Verdict::Failed(Failure::UnknownIdentifier("x".into())),
            &settings,
        );
        assert_eq!(decision.commit, BTreeMap::new());
        assert_eq!(offsets(&decision.retry[0].batch), offsets(&batch()));
    }

    #[test]
    fn without_report_batch_item_failures_a_reported_failure_is_lost() {
        let settings = Settings {
            report_batch_item_failures: false,
            ..Settings::default()
        };
        let text =
            r#"{"batchItemFailures":[{"itemIdentifier":{"partition":"orders-0","offset":10}}]}"#;
        assert_eq!(
            judge(&batch(), &response(text), &settings),
            Verdict::Success
        );
        assert!(matches!(
            judge(&batch(), &Invocation::Error(b"boom".to_vec()), &settings),
            Verdict::Failed(Failure::FunctionError(_))
        ));
    }

    #[test]
    fn maximum_retry_attempts_bounds_a_partial_failure_then_the_rest_goes_to_on_failure() {
        let settings = Settings {
            maximum_retry_attempts: Some(2),
            ..Settings::default()
        };
        let poison = Verdict::Partial(BTreeMap::from([(tp(0), 11)]));
        let mut attempt = TrackedBatch {
            batch: batch(),
            retries: 0,
            invocations: 0,
        };
        let mut invocations = 0;
        let discarded = loop {
            attempt.invocations += 1;
            invocations += 1;
            let decision = decide(attempt.clone(), &poison, &settings);
            if let Some(discarded) = decision.discarded {
                assert_eq!(decision.commit, BTreeMap::from([(tp(0), 13)]));
                break discarded;
            }
            attempt = decision.retry.into_iter().next().unwrap();
        };
        // The first invocation and two retries.
        assert_eq!(invocations, 3);
        assert_eq!(discarded.invocations, 3);
        assert_eq!(discarded.condition, Condition::RetryAttemptsExhausted);
        assert_eq!(offsets(&discarded.batch), vec![(0, 11), (0, 12)]);
        assert!(!discarded.function_error);
    }

    #[test]
    fn errors_retry_the_whole_batch_until_exhausted() {
        let settings = Settings {
            maximum_retry_attempts: Some(1),
            ..Settings::default()
        };
        let error = Verdict::Failed(Failure::FunctionError("boom".into()));
        let first = decide(
            TrackedBatch {
                batch: batch(),
                retries: 0,
                invocations: 1,
            },
            &error,
            &settings,
        );
        assert_eq!(
            first.retry,
            vec![TrackedBatch {
                batch: batch(),
                retries: 1,
                invocations: 1
            }]
        );
        let second = decide(
            TrackedBatch {
                batch: batch(),
                retries: 1,
                invocations: 2,
            },
            &error,
            &settings,
        );
        assert!(second.retry.is_empty());
        assert_eq!(second.commit, BTreeMap::from([(tp(0), 13), (tp(1), 22)]));
        assert!(second.discarded.unwrap().function_error);
        // Infinite retries never give up.
        let forever = decide(
            TrackedBatch {
                batch: batch(),
                retries: 5000,
                invocations: 5001,
            },
            &error,
            &Settings::default(),
        );
        assert_eq!(forever.retry[0].retries, 5001);
    }

    #[test]
    fn bisection_splits_on_function_errors_only_and_does_not_count_as_a_retry() {
        let settings = Settings {
            bisect_batch_on_function_error: true,
            maximum_retry_attempts: Some(0),
            ..Settings::default()
        };
        let attempt = TrackedBatch {
            batch: batch(),
            retries: 0,
            invocations: 1,
        };
        let split = decide(
            attempt.clone(),
            &Verdict::Failed(Failure::Timeout),
            &settings,
        );
        let halves: Vec<Vec<(i32, i64)>> = split.retry.iter().map(|a| offsets(&a.batch)).collect();
        assert_eq!(
            halves,
            vec![vec![(0, 10), (0, 11)], vec![(0, 12), (1, 20), (1, 21)]]
        );
        assert!(split.retry.iter().all(|a| a.retries == 0));
        // A bad response is not a function error: no bisection, and no retries left.
        let bad = decide(
            attempt,
            &Verdict::Failed(Failure::InvalidResponse("x".into())),
            &settings,
        );
        assert!(bad.retry.is_empty());
        assert_eq!(offsets(&bad.discarded.unwrap().batch), offsets(&batch()));
        // A single record cannot be split: it is retried, or given up on.
        let one = Batch::from_records([record(0, 10)]);
        let single = decide(
            TrackedBatch {
                batch: one,
                retries: 0,
                invocations: 3,
            },
            &Verdict::Failed(Failure::FunctionError("e".into())),
            &settings,
        );
        assert_eq!(single.discarded.unwrap().invocations, 3);
    }

    #[test]
    fn settings_outside_lambdas_ranges_are_refused() {
        assert_eq!(Settings::default().validate(), Ok(()));
        let bad = [
            Settings {
                batch_size: 0,
                ..Settings::default()
            },
            Settings {
                batch_size: 10_001,
                ..Settings::default()
            },
            Settings {
                maximum_retry_attempts: Some(10_001),
                ..Settings::default()
            },
            Settings {
                maximum_record_age: Some(Duration::from_secs(59)),
                ..Settings::default()
            },
            Settings {
                batching_window: Duration::from_secs(301),
                ..Settings::default()
            },
        ];
        for settings in bad {
            assert!(settings.validate().is_err(), "{settings:?}");
        }
    }

    #[test]
    fn on_failure_record_has_lambdas_shape() {
        let source = EventSource {
            event_source_arn: Some("arn:aws:kafka:us-east-1:1:cluster/c/1".into()),
            bootstrap_servers: "b-1:9092".into(),
        };
        let discarded = Discarded {
            batch: Batch::from_records([record(0, 11), record(0, 12)]),
            condition: Condition::RetryAttemptsExhausted,
            invocations: 3,
            function_error: false,
        };
        let context = FailureContext {
            request_id: "local-000007",
            function_arn: "arn:aws:lambda:us-east-1:000000000000:function:f",
            source: &source,
            now_ms: 1_700_000_000_500,
        };
        let with = on_failure_record(&discarded, &context, true);
        let payload = discarded.batch.event_json(&source);
        assert_eq!(
            with,
            json!({
                "requestContext": {
                    "requestId": "local-000007",
                    "functionArn": "arn:aws:lambda:us-east-1:000000000000:function:f",
                    "condition": "RetryAttemptsExhausted",
                    "approximateInvokeCount": 3
                },
                "responseContext": {"statusCode": 200, "executedVersion": "$LATEST"},
                "version": "1.0",
                "timestamp": "2023-11-14T22:13:20.500Z",
                "KafkaBatchInfo": {
                    "batchSize": 2,
                    "eventSourceArn": "arn:aws:kafka:us-east-1:1:cluster/c/1",
                    "bootstrapServers": "b-1:9092",
                    "payloadSize": payload.len(),
                    "recordsInfo": {"orders-0": {
                        "firstRecordOffset": "11",
                        "lastRecordOffset": "12",
                        "firstRecordTimestamp": "2023-11-14T22:13:20.011Z",
                        "lastRecordTimestamp": "2023-11-14T22:13:20.012Z"
                    }}
                },
                "payload": payload
            })
        );
        let without = on_failure_record(&discarded, &context, false);
        assert_eq!(without.get("payload"), None);
    }
}
