//! What an invocation did: one value, logged as one line, turned into metrics, asserted on in
//! tests.

use crate::enrich::LookupStats;
use crate::plan::Counts;
use crate::postgres::statements::WriteStats;
use crate::postgres::WriteFailure;

/// Everything an invocation did; logged as one line, turned into metrics, asserted on in tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// What the batch held.
    pub counts: Counts,
    /// What the lookup did.
    pub lookup: LookupStats,
    /// What the write did.
    pub write: WriteStats,
    /// Why nothing was written, if so.
    pub failure: Option<WriteFailure>,
    /// Orders and dead letters committed by this invocation (0 when the write failed).
    pub orders_written: usize,
    /// Dead letters committed.
    pub dead_letters_written: usize,
    /// Partitions reported in the response, and the records Lambda will deliver again.
    pub reported: usize,
    /// Records Lambda will deliver again.
    pub redelivered_records: usize,
    /// What producing to the output topic did (`None` without the Kafka sink, or when the
    /// database write failed and nothing was produced).
    pub produce: Option<ProduceSummary>,
    /// The earliest record timestamp of the batch.
    pub oldest_timestamp_ms: Option<i64>,
    /// Attempts made again after a transient database failure, and the time waited for them.
    pub database_retries: u32,
    /// Milliseconds waited between database attempts.
    pub database_wait_ms: u64,
    /// Milliseconds decoding and planning (in a streamed write, part of it falls within
    /// `write_ms`: the later partitions are decoded while the first ones are being written).
    pub decode_ms: u64,
    /// Milliseconds in the lookup.
    pub lookup_ms: u64,
    /// Milliseconds in the write (of the attempt that finished).
    pub write_ms: u64,
    /// Milliseconds from decode to response.
    pub total_ms: u64,
}

/// What producing to the output topic did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProduceSummary {
    /// Records the brokers acknowledged.
    pub delivered: usize,
    /// Partitions reported because one of their records was not delivered.
    pub undelivered_partitions: usize,
    /// Why the first of them was not delivered.
    pub first_failure: Option<String>,
    /// Milliseconds producing and waiting for the delivery reports.
    pub produce_ms: u64,
    /// Whether the records were built while the database worked, from the cache's locations.
    pub records_built_ahead: bool,
}

impl Summary {
    /// Orders written by this invocation that left their row unchanged because the row
    /// already held a newer record (or this very record: a replay).
    pub fn orders_ignored_as_older(&self) -> usize {
        let changed = usize::try_from(self.write.orders_changed).unwrap_or(0);
        self.orders_written.saturating_sub(changed)
    }
}

/// Logs the summary as one line (JSON under Lambda): a warning when nothing was written.
pub fn log_summary(request_id: &str, summary: &Summary) {
    let counts = &summary.counts;
    let failure = match &summary.failure {
        None => String::new(),
        Some(WriteFailure::Deadline) => "deadline reached before the write finished".to_owned(),
        Some(WriteFailure::Database {
            sqlstate, message, ..
        }) => match sqlstate {
            Some(code) => format!("database ({code}): {message}"),
            None => format!("database: {message}"),
        },
        Some(WriteFailure::CommitOutcomeUnknown(error)) => format!("commit not confirmed: {error}"),
    };
    let produce = summary.produce.clone().unwrap_or_default();
    let fields = (
        counts.received,
        counts.orders,
        counts.superseded,
        summary.write.customers_not_found,
        counts.dead_lettered,
        counts.tombstones,
    );
    macro_rules! summary_event {
        ($level:ident, $message:literal) => {
            tracing::$level!(
                request_id,
                received = fields.0,
                orders = fields.1,
                superseded_in_batch = fields.2,
                customers_not_found = fields.3,
                dead_lettered = fields.4,
                tombstones = fields.5,
                poison_reported = counts.poison_reported,
                held_back = counts.held_back,
                timestamps_out_of_range = counts.timestamps_out_of_range,
                reported_partitions = summary.reported,
                redelivered_records = summary.redelivered_records,
                orders_changed = summary.write.orders_changed,
                orders_upserted = summary.write.upserted,
                orders_streamed = summary.write.streamed,
                orders_ignored_as_older = summary.orders_ignored_as_older(),
                database_retries = summary.database_retries,
                database_wait_ms = summary.database_wait_ms,
                cache_hits = summary.lookup.cache_hits,
                customers_looked_up = summary.lookup.looked_up,
                customers_unreadable = summary.lookup.unreadable,
                lookup_round_trips = summary.lookup.round_trips,
                decode_ms = summary.decode_ms,
                lookup_ms = summary.lookup_ms,
                write_ms = summary.write_ms,
                records_produced = produce.delivered,
                partitions_undelivered = produce.undelivered_partitions,
                produce_ms = produce.produce_ms,
                records_built_ahead = produce.records_built_ahead,
                produce_failure = produce.first_failure.as_deref().unwrap_or_default(),
                total_ms = summary.total_ms,
                failure = failure.as_str(),
                $message
            )
        };
    }
    if summary.failure.is_some() {
        summary_event!(
            warn,
            "batch not written; partitions reported for redelivery"
        );
    } else if produce.undelivered_partitions > 0 {
        summary_event!(
            warn,
            "batch written but not all delivered to the output topic; partitions reported for redelivery"
        );
    } else {
        summary_event!(info, "batch processed");
    }
}
