//! One invocation: event in, decode, plan, enrich and write, response out.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use lambda_runtime::{Context, Diagnostic};

use crate::decode::event::{KafkaEvent, PartitionKey};
use crate::enrich::location::Locations;
use crate::kafka::producer::{ProduceReport, Producer};
use crate::kafka::records::{self, OrderRecords, PartitionRecords};
use crate::lambda::deadline::{self, epoch_ms, millis};
use crate::plan::stream::PlanStream;
use crate::plan::{Plan, PlannedOrder, WriteOutcome};
use crate::postgres::statements::WriteStats;
use crate::postgres::write::{self, DatabaseStats, WriteTap, Written};
use crate::postgres::WriteFailure;
use crate::report::metrics;
use crate::report::response::{self, BatchResponse};
use crate::report::summary::{log_summary, ProduceSummary, Summary};
use crate::startup::App;

/// Why an invocation fails as a whole (Lambda then retries the whole batch). Its variant is
/// the `errorType` of Lambda's error report.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// The payload is not a Kafka event: dropping it would lose whatever it is.
    #[error("the event is not a Kafka event: {0}")]
    NotAKafkaEvent(#[source] serde_json::Error),
    /// The runtime's layer did not hand the invocation's body over (see `raw_body`).
    #[error("the body of invocation {0} was not handed to the handler")]
    BodyMissing(String),
    /// `COMMIT` was sent and its answer lost: the batch may be written, so no partition may
    /// be reported as not written. The write is idempotent, so the retry is harmless.
    #[error("the database did not confirm the commit ({0}); the whole batch is retried")]
    CommitOutcomeUnknown(String),
}

impl From<HandlerError> for Diagnostic {
    fn from(error: HandlerError) -> Self {
        let error_type = match &error {
            HandlerError::NotAKafkaEvent(_) => "NotAKafkaEvent",
            HandlerError::BodyMissing(_) => "BodyMissing",
            HandlerError::CommitOutcomeUnknown(_) => "CommitOutcomeUnknown",
        };
        Diagnostic {
            error_type: error_type.to_owned(),
            error_message: error.to_string(),
        }
    }
}

/// The Lambda handler.
///
/// The event arrives as the bytes Lambda sent (`body`, see [`crate::lambda::raw_body`]) and is parsed
/// once, here, into a [`KafkaEvent`] that borrows its strings from them. An event that is not
/// a Kafka event fails the invocation, so Lambda retries the batch rather than this function
/// dropping it.
pub async fn handle(
    app: &App,
    body: Option<Bytes>,
    context: Context,
) -> Result<BatchResponse, HandlerError> {
    tracing::debug!(
        deadline_ms = context.deadline,
        now_ms = epoch_ms(),
        "invocation received"
    );
    let deadline = deadline::from_epoch_ms(context.deadline, app.deadline_margin);
    let body = body.ok_or_else(|| HandlerError::BodyMissing(context.request_id.clone()))?;
    let payload = parse_event(&body).map_err(HandlerError::NotAKafkaEvent)?;
    let (response, summary) = process(app, payload, deadline).await;
    log_summary(&context.request_id, &summary);
    if let Some(document) = metrics::emf_document(&summary, &app.metrics, epoch_ms()) {
        // EMF goes to stdout as its own line; CloudWatch Logs extracts the metrics.
        println!("{document}");
    }
    match summary.failure {
        Some(WriteFailure::CommitOutcomeUnknown(why)) => {
            Err(HandlerError::CommitOutcomeUnknown(why))
        }
        _ => Ok(response),
    }
}

/// Parses the event from its bytes. Text that is UTF-8 as a whole (every event Lambda sends)
/// is parsed as text, which spares serde_json a UTF-8 check per string; anything else is
/// parsed as bytes, whose error says where the text went wrong.
pub fn parse_event(body: &[u8]) -> Result<KafkaEvent<'_>, serde_json::Error> {
    match simdutf8::basic::from_utf8(body) {
        Ok(text) => serde_json::from_str(text),
        Err(_) => serde_json::from_slice(body),
    }
}

/// Processes one event. Never fails: what could not be written or delivered is in the response
/// (a lost `COMMIT` answer shows as [`WriteFailure::CommitOutcomeUnknown`] in the summary).
///
/// Decode and plan, enrich and write, produce, respond. Decoding and planning
/// ([`PlanStream`]) are consumed by the database write a partition at a time: in a warm
/// execution environment the write starts on the first partitions while the later ones are
/// still being decoded. The plan is pure all the same: it is the one `plan::plan` makes.
///
/// With both sinks the database commits first and the records are produced after it: a
/// partition whose delivery failed is redelivered, the database write of the redelivery
/// changes nothing (it is idempotent) and the records are produced again.
pub async fn process(
    app: &App,
    event: KafkaEvent<'_>,
    deadline: Option<Instant>,
) -> (BatchResponse, Summary) {
    let started = Instant::now();
    let mut stream = PlanStream::new(event, app.poison_policy);
    let mut ahead = RecordsAhead {
        app,
        built: None,
        streamed: None,
    };
    // Boxed: the database work is a deep future (retries, spans, the transaction), and
    // nesting it inline in the runtime's future overflows rustc's layout query depth.
    let written = Box::pin(write::write_batch(
        &app.database,
        &app.cache,
        &mut stream,
        deadline,
        &mut ahead,
    ))
    .await;
    let decode_ms = millis(stream.decode_time());
    let Written { plan, io, result } = written;
    let (locations, failure) = match result {
        Ok(locations) => (locations, None),
        Err(failure) => (Locations::new(), Some(failure)),
    };
    let produced = match (&app.producer, &failure) {
        (Some(producer), None) => {
            let dead_letters_to_kafka = !app.database.is_sink;
            let records =
                output_records(&plan, &io, &locations, ahead, dead_letters_to_kafka).await;
            Some(produce(producer, records, deadline).await)
        }
        _ => None,
    };
    let outcome = if failure.is_some() {
        WriteOutcome::NotWritten
    } else {
        WriteOutcome::Committed
    };
    let undelivered = produced
        .as_ref()
        .map_or(&[][..], |(report, _)| &report.undelivered[..]);
    let response = response::for_batch(&plan, outcome, undelivered);
    let summary = summarize(
        app, &plan, io, failure, &response, produced, decode_ms, started,
    );
    (response, summary)
}

/// The output records prepared while the database works (with the output topic as a sink).
struct RecordsAhead<'a> {
    app: &'a App,
    /// Built on another thread from the complete plan.
    built: Option<tokio::task::JoinHandle<(Locations, Vec<PartitionRecords>)>>,
    /// Built a partition at a time, on this thread, as the write streamed the partitions: the
    /// server stores the rows meanwhile, and a second thread would compete with the decoding.
    streamed: Option<OrderRecords>,
}

impl WriteTap for RecordsAhead<'_> {
    fn planned(&mut self, plan: &Arc<Plan>) {
        plan.log_records_set_aside();
        // A write that stopped streaming before the last partition built only some records.
        if !self
            .streamed
            .as_ref()
            .is_some_and(|records| records.covers(plan))
        {
            self.streamed = None;
            self.built = build_output_ahead(self.app, plan);
        }
    }

    fn streamed(&mut self, key: &PartitionKey, orders: &[PlannedOrder], locations: &Locations) {
        if self.app.producer.is_some() {
            self.streamed
                .get_or_insert_with(OrderRecords::default)
                .add(key, orders, locations);
        }
    }
}

/// The output records built on another thread while the database works, when the cache holds
/// every customer of the batch (a warm execution environment): the build then costs the
/// invocation nothing but the wait it overlaps. It yields the locations it used, for the
/// check after the write.
fn build_output_ahead(
    app: &App,
    plan: &Arc<Plan>,
) -> Option<tokio::task::JoinHandle<(Locations, Vec<PartitionRecords>)>> {
    app.producer.as_ref()?;
    if plan.orders.is_empty() {
        return None;
    }
    let locations = crate::enrich::cached(&app.cache, &plan.distinct_customers())?;
    let plan = Arc::clone(plan);
    let dead_letters_to_kafka = !app.database.is_sink;
    Some(tokio::task::spawn_blocking(move || {
        // No order refused: that is known only after the write, and checked then.
        let records = records::build(&plan, &locations, &[], dead_letters_to_kafka);
        (locations, records)
    }))
}

/// The committed batch's records for the output topic: those built while the database worked
/// when they still hold, else built now; and whether they were built ahead.
async fn output_records(
    plan: &Plan,
    io: &DatabaseStats,
    locations: &Locations,
    ahead: RecordsAhead<'_>,
    dead_letters_to_kafka: bool,
) -> (Vec<PartitionRecords>, bool) {
    // The records built while the database worked hold, unless the write used other
    // locations (a cache entry expired in between) or the database refused orders.
    let built_ahead = match (ahead.streamed, ahead.built) {
        (Some(streamed), _) if io.refused.is_empty() => streamed.finish(locations),
        (_, Some(built)) if io.refused.is_empty() => match built.await {
            Ok((used, records)) if used == *locations => Some(records),
            _ => None,
        },
        _ => None,
    };
    if let Some(records) = built_ahead {
        return (records, true);
    }
    let mut refused = vec![false; plan.orders.len()];
    for &index in &io.refused {
        if let Some(flag) = refused.get_mut(index) {
            *flag = true;
        }
    }
    let records = records::build(plan, locations, &refused, dead_letters_to_kafka);
    (records, false)
}

/// Produces the records to the output topic and waits for their delivery reports, never past
/// `deadline`.
async fn produce(
    producer: &Producer,
    (records, records_built_ahead): (Vec<PartitionRecords>, bool),
    deadline: Option<Instant>,
) -> (ProduceReport, bool) {
    let report = Box::pin(producer.produce(&records, deadline)).await;
    free_off_the_response_path(records);
    for failed in &report.undelivered {
        tracing::warn!(
            partition = failed.partition.as_str(),
            offset = failed.offset,
            reason = failed.reason.as_str(),
            "record not delivered to the output topic; its partition is redelivered from it"
        );
    }
    (report, records_built_ahead)
}

/// Frees the batch's output records (about 70,000 allocations for 10,000 orders) on a blocking
/// thread: librdkafka holds its own copies once they are enqueued, and freeing them here would
/// delay the response by about a millisecond (measured in `end_to_end`) for nothing.
fn free_off_the_response_path(records: Vec<PartitionRecords>) {
    drop(tokio::task::spawn_blocking(move || drop(records)));
}

/// What the invocation did, for the log line and the metrics.
#[allow(clippy::too_many_arguments)]
fn summarize(
    app: &App,
    plan: &Plan,
    io: DatabaseStats,
    failure: Option<WriteFailure>,
    response: &BatchResponse,
    produced: Option<(ProduceReport, bool)>,
    decode_ms: u64,
    started: Instant,
) -> Summary {
    let committed = failure.is_none() && app.database.is_sink;
    Summary {
        counts: plan.counts.clone(),
        lookup: io.lookup,
        // A write that did not commit changed nothing, whatever its last attempt counted.
        write: if failure.is_none() {
            io.write
        } else {
            WriteStats::default()
        },
        failure,
        orders_written: if committed {
            plan.orders.len() - io.orders_refused
        } else {
            0
        },
        dead_letters_written: if committed {
            plan.dead_letters.len() + io.orders_refused
        } else {
            0
        },
        reported: response.batch_item_failures.len(),
        redelivered_records: plan.redelivered_from(&response.reported()),
        produce: produced.map(|(report, records_built_ahead)| ProduceSummary {
            delivered: report.delivered,
            undelivered_partitions: report.undelivered.len(),
            first_failure: report.undelivered.first().map(|u| u.reason.clone()),
            produce_ms: report.produce_ms,
            records_built_ahead,
        }),
        oldest_timestamp_ms: plan.oldest_timestamp_ms,
        database_retries: io.retries,
        database_wait_ms: io.waited_ms,
        decode_ms,
        lookup_ms: io.lookup_ms,
        write_ms: io.write_ms,
        total_ms: millis(started.elapsed()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_that_is_not_utf8_is_refused_with_where_it_goes_wrong() {
        let body = b"{\"records\":{\"orders-\xff\":[]}}";
        let error = parse_event(body).unwrap_err();
        assert_eq!(
            error.to_string(),
            "invalid unicode code point at line 1 column 21"
        );
        let event = parse_event(br#"{"records":{"orders-0":[]}}"#).unwrap();
        assert_eq!(event.records.len(), 1);
    }
}
