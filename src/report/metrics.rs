//! CloudWatch metrics as Embedded Metric Format (EMF): one JSON document per invocation,
//! printed to stdout, which CloudWatch Logs turns into metrics with no API call and no extra
//! latency.
//!
//! Written here rather than through `metrics_cloudwatch_embedded` or `metrique`: every value is
//! already in the invocation's `Summary`, so a document is one pure function of it; a global
//! metrics recorder would add process-wide state that tests running in parallel share, and a
//! flush step to get right.

use serde_json::{json, Map, Value};

use crate::config::MetricsConfig;
use crate::report::summary::Summary;

/// The metrics, their units and meaning; the README's table and the template's alarms and
/// dashboard use these names.
pub mod names {
    /// Records in the batch.
    pub const RECORDS_RECEIVED: &str = "RecordsReceived";
    /// Orders written with a location.
    pub const ORDERS_ENRICHED: &str = "OrdersEnriched";
    /// Orders written whose customer is unknown.
    pub const CUSTOMERS_NOT_FOUND: &str = "CustomersNotFound";
    /// Customers whose row could not be read (written without a location, counted in
    /// `CustomersNotFound` too).
    pub const CUSTOMERS_UNREADABLE: &str = "CustomersUnreadable";
    /// Records kept in `dead_letters`.
    pub const RECORDS_DEAD_LETTERED: &str = "RecordsDeadLettered";
    /// Records without a value.
    pub const TOMBSTONES: &str = "Tombstones";
    /// Records Lambda delivers again.
    pub const RECORDS_RETRIED: &str = "RecordsRetried";
    /// Partitions named in the response.
    pub const PARTITIONS_RETRIED: &str = "PartitionsRetried";
    /// 1 when nothing could be written.
    pub const WRITE_FAILURES: &str = "WriteFailures";
    /// Decode to response, milliseconds.
    pub const BATCH_DURATION: &str = "BatchDuration";
    /// Customer lookup, milliseconds.
    pub const LOOKUP_DURATION: &str = "LookupDuration";
    /// Lookup queries.
    pub const LOOKUP_ROUND_TRIPS: &str = "LookupRoundTrips";
    /// The write, milliseconds.
    pub const WRITE_DURATION: &str = "WriteDuration";
    /// Share of customers found in the cache, percent.
    pub const CACHE_HIT_RATIO: &str = "CacheHitRatio";
    /// Now minus the oldest record timestamp, milliseconds.
    pub const OLDEST_RECORD_AGE: &str = "OldestRecordAge";
    /// Attempts repeated after a transient database failure.
    pub const DATABASE_RETRIES: &str = "DatabaseRetries";
    /// Time waited between them, milliseconds.
    pub const DATABASE_WAIT_DURATION: &str = "DatabaseWaitDuration";
    /// Orders that left their row unchanged (older, or a replay).
    pub const ORDERS_IGNORED_AS_OLDER: &str = "OrdersIgnoredAsOlder";
    /// Records whose timestamp PostgreSQL cannot store.
    pub const TIMESTAMPS_OUT_OF_RANGE: &str = "TimestampsOutOfRange";
    /// Records the output topic's brokers acknowledged (only with the Kafka sink).
    pub const RECORDS_PRODUCED: &str = "RecordsProduced";
    /// Partitions reported because a record was not delivered to the output topic.
    pub const PRODUCE_FAILURES: &str = "ProduceFailures";
    /// Producing and waiting for the delivery reports, milliseconds.
    pub const PRODUCE_DURATION: &str = "ProduceDuration";
}

/// The EMF document for one invocation, or `None` when metrics are off.
pub fn emf_document(summary: &Summary, config: &MetricsConfig, now_ms: i64) -> Option<String> {
    let namespace = config.namespace.as_deref()?;
    let count = |n: usize| (n as f64, "Count");
    // Milliseconds of one invocation stay far below 2^53: f64 holds them exactly.
    #[allow(clippy::cast_precision_loss)]
    let millis = |ms: u64| (ms as f64, "Milliseconds");
    let mut metrics: Vec<(&str, (f64, &str))> = vec![
        (names::RECORDS_RECEIVED, count(summary.counts.received)),
        (
            names::ORDERS_ENRICHED,
            // Saturating: only committed orders count, and an attempt that wrote and then
            // failed to commit leaves nothing written.
            count(
                summary
                    .orders_written
                    .saturating_sub(summary.write.customers_not_found),
            ),
        ),
        (
            names::CUSTOMERS_NOT_FOUND,
            count(summary.write.customers_not_found),
        ),
        (
            names::CUSTOMERS_UNREADABLE,
            count(summary.lookup.unreadable),
        ),
        (
            names::RECORDS_DEAD_LETTERED,
            count(summary.dead_letters_written),
        ),
        (names::TOMBSTONES, count(summary.counts.tombstones)),
        (names::RECORDS_RETRIED, count(summary.redelivered_records)),
        (names::PARTITIONS_RETRIED, count(summary.reported)),
        (
            names::WRITE_FAILURES,
            count(usize::from(summary.failure.is_some())),
        ),
        (names::BATCH_DURATION, millis(summary.total_ms)),
        (names::LOOKUP_DURATION, millis(summary.lookup_ms)),
        (names::LOOKUP_ROUND_TRIPS, count(summary.lookup.round_trips)),
        (names::WRITE_DURATION, millis(summary.write_ms)),
        (
            names::DATABASE_RETRIES,
            (f64::from(summary.database_retries), "Count"),
        ),
        (
            names::DATABASE_WAIT_DURATION,
            millis(summary.database_wait_ms),
        ),
        (
            names::ORDERS_IGNORED_AS_OLDER,
            count(summary.orders_ignored_as_older()),
        ),
        (
            names::TIMESTAMPS_OUT_OF_RANGE,
            count(summary.counts.timestamps_out_of_range),
        ),
    ];
    if let Some(produce) = &summary.produce {
        metrics.push((names::RECORDS_PRODUCED, count(produce.delivered)));
        metrics.push((
            names::PRODUCE_FAILURES,
            count(produce.undelivered_partitions),
        ));
        metrics.push((names::PRODUCE_DURATION, millis(produce.produce_ms)));
    }
    let customers = summary.lookup.cache_hits + summary.lookup.looked_up;
    if customers > 0 {
        let ratio = 100.0 * summary.lookup.cache_hits as f64 / customers as f64;
        metrics.push((names::CACHE_HIT_RATIO, (ratio, "Percent")));
    }
    if let Some(oldest) = summary.oldest_timestamp_ms {
        metrics.push((
            names::OLDEST_RECORD_AGE,
            ((now_ms - oldest).max(0) as f64, "Milliseconds"),
        ));
    }

    Some(document(&metrics, config, namespace, now_ms))
}

/// The EMF document of `metrics` (name, value, unit), with the configured dimensions.
fn document(
    metrics: &[(&str, (f64, &str))],
    config: &MetricsConfig,
    namespace: &str,
    now_ms: i64,
) -> String {
    let mut document = Map::new();
    let dimension_names: Vec<&str> = config
        .dimensions
        .iter()
        .map(|(name, _)| name.as_str())
        .collect();
    document.insert(
        "_aws".to_owned(),
        json!({
            "Timestamp": now_ms,
            "CloudWatchMetrics": [{
                "Namespace": namespace,
                "Dimensions": [dimension_names],
                "Metrics": metrics.iter().map(|(name, (_, unit))| json!({"Name": name, "Unit": unit})).collect::<Vec<_>>(),
            }],
        }),
    );
    for (name, value) in &config.dimensions {
        document.insert(name.clone(), Value::String(value.clone()));
    }
    for (name, (value, _)) in metrics {
        document.insert((*name).to_owned(), json!(value));
    }
    Value::Object(document).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::enrich::LookupStats;
    use crate::plan::Counts;
    use crate::postgres::statements::WriteStats;
    use crate::postgres::WriteFailure;

    fn summary() -> Summary {
        Summary {
            counts: Counts {
                received: 12,
                orders: 9,
                tombstones: 1,
                dead_lettered: 2,
                ..Counts::default()
            },
            lookup: LookupStats {
                cache_hits: 3,
                looked_up: 1,
                round_trips: 1,
                unreadable: 0,
            },
            write: WriteStats {
                orders_changed: 9,
                dead_letters_inserted: 2,
                customers_not_found: 1,
                round_trips: 1,
                ..WriteStats::default()
            },
            failure: None,
            orders_written: 9,
            dead_letters_written: 2,
            reported: 0,
            redelivered_records: 0,
            produce: None,
            oldest_timestamp_ms: Some(1_700_000_000_000),
            database_retries: 2,
            database_wait_ms: 300,
            decode_ms: 1,
            lookup_ms: 4,
            write_ms: 7,
            total_ms: 13,
        }
    }

    fn config() -> MetricsConfig {
        MetricsConfig {
            namespace: Some("MskOrderEnricher".into()),
            dimensions: vec![("FunctionName".into(), "enricher".into())],
        }
    }

    #[test]
    fn document_has_every_metric_with_its_unit_and_value() {
        let text = emf_document(&summary(), &config(), 1_700_000_004_500).unwrap();
        let doc: Value = serde_json::from_str(&text).unwrap();
        let directive = &doc["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(doc["_aws"]["Timestamp"], 1_700_000_004_500i64);
        assert_eq!(directive["Namespace"], "MskOrderEnricher");
        assert_eq!(directive["Dimensions"], json!([["FunctionName"]]));
        assert_eq!(doc["FunctionName"], "enricher");
        let declared: Vec<(String, String)> = directive["Metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m["Name"].as_str().unwrap().to_owned(),
                    m["Unit"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        let expected = [
            ("RecordsReceived", "Count", 12.0),
            ("OrdersEnriched", "Count", 8.0),
            ("CustomersNotFound", "Count", 1.0),
            ("CustomersUnreadable", "Count", 0.0),
            ("RecordsDeadLettered", "Count", 2.0),
            ("Tombstones", "Count", 1.0),
            ("RecordsRetried", "Count", 0.0),
            ("PartitionsRetried", "Count", 0.0),
            ("WriteFailures", "Count", 0.0),
            ("BatchDuration", "Milliseconds", 13.0),
            ("LookupDuration", "Milliseconds", 4.0),
            ("LookupRoundTrips", "Count", 1.0),
            ("WriteDuration", "Milliseconds", 7.0),
            ("DatabaseRetries", "Count", 2.0),
            ("DatabaseWaitDuration", "Milliseconds", 300.0),
            ("OrdersIgnoredAsOlder", "Count", 0.0),
            ("TimestampsOutOfRange", "Count", 0.0),
            ("CacheHitRatio", "Percent", 75.0),
            ("OldestRecordAge", "Milliseconds", 4500.0),
        ];
        assert_eq!(
            declared,
            expected
                .iter()
                .map(|(n, u, _)| (n.to_string(), u.to_string()))
                .collect::<Vec<_>>()
        );
        for (name, _, value) in expected {
            assert_eq!(doc[name].as_f64(), Some(value), "{name}");
        }
    }

    #[test]
    fn a_failed_write_counts_retries_and_no_cache_ratio_without_customers() {
        let mut summary = summary();
        summary.failure = Some(WriteFailure::Deadline);
        summary.orders_written = 0;
        summary.dead_letters_written = 0;
        summary.write = WriteStats::default();
        summary.reported = 2;
        summary.redelivered_records = 11;
        summary.lookup = LookupStats::default();
        let doc: Value =
            serde_json::from_str(&emf_document(&summary, &config(), 0).unwrap()).unwrap();
        assert_eq!(doc["WriteFailures"].as_f64(), Some(1.0));
        assert_eq!(doc["RecordsRetried"].as_f64(), Some(11.0));
        assert_eq!(doc["PartitionsRetried"].as_f64(), Some(2.0));
        assert_eq!(doc["OrdersEnriched"].as_f64(), Some(0.0));
        assert!(doc.get("CacheHitRatio").is_none());
        assert_eq!(doc["OldestRecordAge"].as_f64(), Some(0.0), "never negative");
    }

    #[test]
    fn the_kafka_sink_adds_its_delivery_metrics() {
        let mut summary = summary();
        summary.produce = Some(crate::report::summary::ProduceSummary {
            delivered: 9,
            undelivered_partitions: 1,
            first_failure: Some("broker down".into()),
            produce_ms: 21,
            records_built_ahead: false,
        });
        let doc: Value =
            serde_json::from_str(&emf_document(&summary, &config(), 0).unwrap()).unwrap();
        assert_eq!(doc["RecordsProduced"].as_f64(), Some(9.0));
        assert_eq!(doc["ProduceFailures"].as_f64(), Some(1.0));
        assert_eq!(doc["ProduceDuration"].as_f64(), Some(21.0));
        let plain: Value =
            serde_json::from_str(&emf_document(&self::summary(), &config(), 0).unwrap()).unwrap();
        assert!(
            plain.get("RecordsProduced").is_none(),
            "only with the Kafka sink"
        );
    }

    #[test]
    fn no_namespace_no_metrics() {
        assert_eq!(emf_document(&summary(), &MetricsConfig::default(), 0), None);
    }
}
