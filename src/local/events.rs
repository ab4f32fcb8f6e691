//! MSK events built from order files, as the event source mapping would deliver them: each
//! line a record value, keyed by `OrderNo` and partitioned by Kafka's default partitioner.

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde_json::value::RawValue;

use crate::event::{KafkaEvent, KafkaRecord};

pub const EVENT_SOURCE_ARN: &str =
    "arn:aws:kafka:us-east-1:123456789012:cluster/orders-cluster/751d2973-a626-431c-9d4e-d7975eb44dd7-2";

/// One record to place in an event: its key and value bytes (`None` value: a tombstone).
#[derive(Debug, Clone)]
pub struct RecordSpec {
    pub key: Option<Vec<u8>>,
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

/// Kafka's default partitioner for keyed records: `toPositive(murmur2(key)) % partitions`.
pub fn partition_for(key: &[u8], partitions: i32) -> i32 {
    ((murmur2(key) & 0x7fff_ffff) as i32) % partitions.max(1)
}

/// Kafka's murmur2 (seed 0x9747b28c), as in `org.apache.kafka.common.utils.Utils.murmur2`.
pub fn murmur2(data: &[u8]) -> u32 {
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let mut h: u32 = 0x9747_b28c ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for chunk in chunks.by_ref() {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = chunks.remainder();
    if rest.len() >= 3 {
        h ^= u32::from(rest[2]) << 16;
    }
    if rest.len() >= 2 {
        h ^= u32::from(rest[1]) << 8;
    }
    if !rest.is_empty() {
        h ^= u32::from(rest[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h
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

/// Builds an MSK event for `topic` with `partitions` partitions. Keyed records go to their
/// key's partition, unkeyed ones round-robin; offsets start at `first_offset` in each
/// partition; timestamps start at `first_timestamp_ms` and grow by one per record.
pub fn build_event(
    topic: &str,
    partitions: i32,
    records: impl IntoIterator<Item = RecordSpec>,
    first_offset: i64,
    first_timestamp_ms: i64,
) -> KafkaEvent {
    let mut by_key: BTreeMap<String, Vec<KafkaRecord>> = BTreeMap::new();
    let mut next_offset: BTreeMap<i32, i64> = BTreeMap::new();
    // Every record says where it came from: the header `source` = "esm-local" (Java bytes).
    let source_header: Box<RawValue> = RawValue::from_string(format!(
        r#"[{{"source":{:?}}}]"#,
        b"esm-local".iter().map(|&b| b as i8).collect::<Vec<i8>>()
    ))
    .expect("valid JSON");
    for (index, spec) in records.into_iter().enumerate() {
        let partition = match &spec.key {
            Some(key) => partition_for(key, partitions),
            None => (index as i32) % partitions.max(1),
        };
        let offset = next_offset.entry(partition).or_insert(first_offset);
        by_key
            .entry(format!("{topic}-{partition}"))
            .or_default()
            .push(KafkaRecord {
                topic: topic.to_owned(),
                partition,
                offset: *offset,
                timestamp: Some(first_timestamp_ms + index as i64),
                timestamp_type: Some("CREATE_TIME".to_owned()),
                key: spec.key.map(|key| BASE64.encode(key)),
                value: spec.value.map(|value| BASE64.encode(value)),
                headers: Some(source_header.clone()),
            });
        *offset += 1;
    }
    KafkaEvent {
        event_source: Some("aws:kafka".to_owned()),
        event_source_arn: Some(EVENT_SOURCE_ARN.to_owned()),
        bootstrap_servers: Some("b-1.orders-cluster.kafka.us-east-1.amazonaws.com:9098".to_owned()),
        records: by_key,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_kafka() {
        // Vectors from Kafka's UtilsTest.
        assert_eq!(murmur2(b"21") as i32, -973932308);
        assert_eq!(murmur2(b"foobar") as i32, -790332482);
        assert_eq!(murmur2(b"a-little-bit-long-string") as i32, -985981536);
        assert_eq!(murmur2(b"a-little-bit-longer-string") as i32, -1486304829);
        assert_eq!(
            murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8") as i32,
            -58897971
        );
        assert_eq!(murmur2(b"abc") as i32, 479470107);
    }

    #[test]
    fn records_of_one_key_share_a_partition_in_order() {
        let specs = ["SO-1", "SO-2", "SO-1"].map(|no| RecordSpec {
            key: Some(no.as_bytes().to_vec()),
            value: Some(no.as_bytes().to_vec()),
        });
        let event = build_event("orders", 4, specs, 100, 0);
        let p1 = partition_for(b"SO-1", 4);
        let so1 = &event.records[&format!("orders-{p1}")];
        let so1_offsets: Vec<i64> = so1
            .iter()
            .filter(|r| r.key.as_deref() == Some("U08tMQ=="))
            .map(|r| r.offset)
            .collect();
        assert_eq!(so1_offsets.len(), 2);
        assert!(so1_offsets[0] < so1_offsets[1]);
        assert_eq!(event.records.values().map(Vec::len).sum::<usize>(), 3);
    }
}
