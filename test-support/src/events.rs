//! Order events for tests and benchmarks, rendered by the same code that renders the events of
//! `esm-local run`: each order line a record value, keyed by `OrderNo` and partitioned by
//! Kafka's default partitioner.

use std::collections::BTreeMap;

use esm_local::batch::{Batch, EventSource, Record, SourceRecord, TimestampType};
use esm_local::source::partitioner::partition_for;

/// One record to place in an event: its key and value bytes (`None` value: a tombstone).
#[derive(Debug, Clone)]
pub struct RecordSpec {
    /// The record key (`None`: unkeyed, placed round-robin).
    pub key: Option<Vec<u8>>,
    /// The record value (`None`: a tombstone).
    pub value: Option<Vec<u8>>,
}

impl RecordSpec {
    /// An order line keyed by its `OrderNo` (unkeyed when the line has none, e.g. poison).
    pub fn from_order_line(line: &str) -> Self {
        let key = serde_json::from_str::<serde_json::Value>(line)
            .ok()
            .and_then(|value| {
                value
                    .get("OrderNo")?
                    .as_str()
                    .map(|no| no.as_bytes().to_vec())
            });
        Self {
            key,
            value: Some(line.as_bytes().to_vec()),
        }
    }
}

/// `count` synthetic orders `SO-<n>` numbered from `first_order`, spread over `customers`
/// customers named `Customer <i>`. Each value is about 420 bytes, so 10,000 of them make an
/// event just under the 6 MB invocation payload limit.
pub fn synthetic_orders(count: usize, first_order: usize, customers: usize) -> Vec<RecordSpec> {
    (first_order..first_order + count)
        .map(|i| {
            let units = 1 + i % 90;
            let total = rust_decimal::Decimal::new(1999, 2) * rust_decimal::Decimal::from(units);
            let line = format!(
                r#"{{"OrderNo":"SO-{i:08}","OrderDate":"2024-03-{day:02}","Region":"Central","Customer":"Customer {customer}","Item":"Binder {pad}","Units":{units},"Unit Cost":19.99,"Total":{total}}}"#,
                day = 1 + i % 28,
                customer = i % customers.max(1),
                pad = "x".repeat(128),
            );
            RecordSpec::from_order_line(&line)
        })
        .collect()
}

/// The MSK event JSON for `topic` with `partitions` partitions. Keyed records go to their key's
/// partition, unkeyed ones round-robin; offsets start at `first_offset` in each partition;
/// timestamps start at `first_timestamp_ms` and grow by one per record. Every record carries
/// the header `source: esm-local`.
pub fn build_event(
    topic: &str,
    partitions: i32,
    records: impl IntoIterator<Item = RecordSpec>,
    first_offset: i64,
    first_timestamp_ms: i64,
) -> String {
    let partitions = partitions.max(1);
    let mut next_offset: BTreeMap<i32, i64> = BTreeMap::new();
    let mut round_robin = (0..partitions).cycle();
    let mut rendered = Vec::new();
    for (timestamp_ms, spec) in (first_timestamp_ms..).zip(records) {
        let next_round_robin = round_robin.next().unwrap_or(0);
        let partition = match &spec.key {
            Some(key) => partition_for(key, partitions),
            None => next_round_robin,
        };
        let offset = next_offset.entry(partition).or_insert(first_offset);
        rendered.push(Record::new(&SourceRecord {
            topic: topic.to_owned(),
            partition,
            offset: *offset,
            timestamp_ms,
            timestamp_type: TimestampType::CreateTime,
            key: spec.key,
            value: spec.value,
            headers: vec![("source".to_owned(), b"esm-local".to_vec())],
        }));
        *offset += 1;
    }
    Batch::from_records(rendered).event_json(&EventSource {
        event_source_arn: Some(esm_local::EVENT_SOURCE_ARN.to_owned()),
        bootstrap_servers: "b-1.orders-cluster.kafka.us-east-1.amazonaws.com:9098".to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_of_one_key_share_a_partition_in_order() {
        let specs = ["SO-1", "SO-2", "SO-1"].map(|no| RecordSpec {
            key: Some(no.as_bytes().to_vec()),
            value: Some(no.as_bytes().to_vec()),
        });
        let event: serde_json::Value =
            serde_json::from_str(&build_event("orders", 4, specs, 100, 0)).unwrap();
        let p1 = partition_for(b"SO-1", 4);
        let so1: Vec<(i64, i64)> = event["records"][format!("orders-{p1}")]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["key"] == "U08tMQ==")
            .map(|r| {
                (
                    r["offset"].as_i64().unwrap(),
                    r["timestamp"].as_i64().unwrap(),
                )
            })
            .collect();
        assert_eq!(so1, [(100, 0), (101, 2)]);
        let total: usize = event["records"]
            .as_object()
            .unwrap()
            .values()
            .map(|records| records.as_array().unwrap().len())
            .sum();
        assert_eq!(total, 3);
    }
}
