//! Records waiting per partition, and the batches the event source mapping cuts from them:
//! at most `BatchSize` records, at most 6 MB of event JSON, several partitions per batch,
//! offsets contiguous and in order within each partition.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde::Serialize;

/// Lambda's limit for a synchronous invocation payload (6 MB).
pub const MAX_PAYLOAD_BYTES: usize = 6 * 1024 * 1024;

/// One partition of one topic: the event's `records` key is `topic-partition`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicPartition {
    /// The topic.
    pub topic: String,
    /// The partition number.
    pub partition: i32,
}

impl TopicPartition {
    /// Partition `partition` of `topic`.
    pub fn new(topic: impl Into<String>, partition: i32) -> Self {
        Self {
            topic: topic.into(),
            partition,
        }
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// What a record's timestamp means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampType {
    /// Set by the producer (`CREATE_TIME`).
    CreateTime,
    /// Set by the broker (`LOG_APPEND_TIME`).
    LogAppendTime,
}

/// A record as read from the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceRecord {
    /// Its topic.
    pub topic: String,
    /// Its partition.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// Its timestamp, epoch milliseconds.
    pub timestamp_ms: i64,
    /// What the timestamp means.
    pub timestamp_type: TimestampType,
    /// The key bytes (`None`: no key).
    pub key: Option<Vec<u8>>,
    /// `None`: a tombstone.
    pub value: Option<Vec<u8>>,
    /// Headers as name and bytes.
    pub headers: Vec<(String, Vec<u8>)>,
}

impl SourceRecord {
    /// The record as one JSON object for people and scripts (`esm-local consume`): partition,
    /// offset, timestamp, key and header values as text (base64 under `*_base64` when they are
    /// not UTF-8), and the value as JSON when it is JSON, else as text or base64.
    pub fn to_display_json(&self) -> serde_json::Value {
        use serde_json::{json, Map, Value};
        fn text_or_base64(object: &mut Map<String, Value>, name: &str, bytes: &[u8]) {
            match std::str::from_utf8(bytes) {
                Ok(text) => object.insert(name.to_owned(), Value::from(text)),
                Err(_) => {
                    object.insert(format!("{name}_base64"), Value::from(BASE64.encode(bytes)))
                }
            };
        }
        let mut object = Map::new();
        object.insert("topic".into(), json!(self.topic));
        object.insert("partition".into(), json!(self.partition));
        object.insert("offset".into(), json!(self.offset));
        object.insert("timestamp".into(), json!(self.timestamp_ms));
        match &self.key {
            Some(key) => text_or_base64(&mut object, "key", key),
            None => {
                object.insert("key".into(), Value::Null);
            }
        }
        match &self.value {
            None => {
                object.insert("value".into(), Value::Null);
            }
            Some(value) => match serde_json::from_slice::<Value>(value) {
                Ok(parsed) => {
                    object.insert("value".into(), parsed);
                }
                Err(_) => text_or_base64(&mut object, "value", value),
            },
        }
        let mut headers = Map::new();
        for (name, value) in &self.headers {
            text_or_base64(&mut headers, name, value);
        }
        object.insert("headers".into(), Value::Object(headers));
        Value::Object(object)
    }
}

/// A record with its event JSON already rendered: batches are measured and built from these
/// without serialising a record twice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Its partition.
    pub partition: TopicPartition,
    /// Its offset.
    pub offset: i64,
    /// Its timestamp, epoch milliseconds (for `MaximumRecordAgeInSeconds`).
    pub timestamp_ms: i64,
    json: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WireRecord<'a> {
    topic: &'a str,
    partition: i32,
    offset: i64,
    timestamp: i64,
    timestamp_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<String>,
    /// One-entry objects of Java (signed) bytes, as the event source mapping sends them.
    headers: Vec<BTreeMap<&'a str, Vec<i8>>>,
}

impl Record {
    /// Renders `source` as the event JSON carries it.
    pub fn new(source: &SourceRecord) -> Self {
        let wire = WireRecord {
            topic: &source.topic,
            partition: source.partition,
            offset: source.offset,
            timestamp: source.timestamp_ms,
            timestamp_type: match source.timestamp_type {
                TimestampType::CreateTime => "CREATE_TIME",
                TimestampType::LogAppendTime => "LOG_APPEND_TIME",
            },
            key: source.key.as_deref().map(|key| BASE64.encode(key)),
            value: source.value.as_deref().map(|value| BASE64.encode(value)),
            headers: source
                .headers
                .iter()
                .map(|(name, bytes)| {
                    BTreeMap::from([(
                        name.as_str(),
                        bytes.iter().map(|&b| b.cast_signed()).collect(),
                    )])
                })
                .collect(),
        };
        Self {
            partition: TopicPartition::new(source.topic.clone(), source.partition),
            offset: source.offset,
            timestamp_ms: source.timestamp_ms,
            // Serialising a struct of strings, numbers and vectors into a String cannot fail.
            json: serde_json::to_string(&wire).unwrap_or_default(),
        }
    }

    /// The record's JSON in the event.
    pub fn json(&self) -> &str {
        &self.json
    }
}

/// What the event says about where its records come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventSource {
    /// `aws:kafka` (with an ARN) or `SelfManagedKafka` (without).
    pub event_source_arn: Option<String>,
    /// The `bootstrapServers` string.
    pub bootstrap_servers: String,
}

impl EventSource {
    /// Bytes of the event around its records: `{"eventSource":...,"records":{` and `}}`.
    fn envelope(&self) -> String {
        let mut head = String::from("{");
        match &self.event_source_arn {
            Some(arn) => {
                head.push_str(r#""eventSource":"aws:kafka","eventSourceArn":"#);
                head.push_str(&json_string(arn));
            }
            None => head.push_str(r#""eventSource":"SelfManagedKafka""#),
        }
        head.push_str(r#","bootstrapServers":"#);
        head.push_str(&json_string(&self.bootstrap_servers));
        head.push_str(r#","records":{"#);
        head
    }
}

fn json_string(text: &str) -> String {
    serde_json::Value::String(text.to_owned()).to_string()
}

/// Records of one invocation, grouped by partition, each group in offset order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    groups: BTreeMap<TopicPartition, Vec<Record>>,
}

impl Batch {
    /// The batch of `records`, grouped by partition.
    pub fn from_records(records: impl IntoIterator<Item = Record>) -> Self {
        let mut batch = Self::default();
        for record in records {
            batch
                .groups
                .entry(record.partition.clone())
                .or_default()
                .push(record);
        }
        for group in batch.groups.values_mut() {
            group.sort_by_key(|record| record.offset);
        }
        batch
    }

    /// Records in the batch.
    pub fn len(&self) -> usize {
        self.groups.values().map(Vec::len).sum()
    }

    /// Whether the batch has no record.
    pub fn is_empty(&self) -> bool {
        self.groups.values().all(Vec::is_empty)
    }

    /// Its partitions, in order.
    pub fn partitions(&self) -> impl Iterator<Item = &TopicPartition> {
        self.groups.keys()
    }

    /// Its records, partition by partition, each in offset order.
    pub fn records(&self) -> impl Iterator<Item = &Record> {
        self.groups.values().flatten()
    }

    /// The records of one partition.
    pub fn records_of(&self, partition: &TopicPartition) -> &[Record] {
        self.groups.get(partition).map_or(&[], Vec::as_slice)
    }

    /// Whether the batch holds that record.
    pub fn contains(&self, partition: &TopicPartition, offset: i64) -> bool {
        self.records_of(partition)
            .binary_search_by_key(&offset, |record| record.offset)
            .is_ok()
    }

    /// The offset after the last record of each partition: what to commit when it succeeded.
    pub fn next_offsets(&self) -> BTreeMap<TopicPartition, i64> {
        self.groups
            .iter()
            .filter_map(|(partition, records)| {
                Some((partition.clone(), records.last()?.offset + 1))
            })
            .collect()
    }

    /// The records of `partitions` from their offsets on: what a partial batch response asks
    /// to be delivered again. Other partitions are left out.
    pub fn redelivered(&self, from: &BTreeMap<TopicPartition, i64>) -> Self {
        let groups = from
            .iter()
            .filter_map(|(partition, &offset)| {
                let records: Vec<Record> = self
                    .records_of(partition)
                    .iter()
                    .filter(|record| record.offset >= offset)
                    .cloned()
                    .collect();
                (!records.is_empty()).then(|| (partition.clone(), records))
            })
            .collect();
        Self { groups }
    }

    /// Two halves of about equal size, in record order (partition by partition): each
    /// partition's offsets stay contiguous, the first half holding the earlier ones.
    pub fn bisect(&self) -> (Self, Self) {
        let half = self.len() / 2;
        let mut first = Vec::with_capacity(half);
        let mut second = Vec::with_capacity(self.len() - half);
        for (index, record) in self.records().enumerate() {
            if index < half {
                first.push(record.clone());
            } else {
                second.push(record.clone());
            }
        }
        (Self::from_records(first), Self::from_records(second))
    }

    /// Splits off the records older than `max_age_ms` at `now_ms`: (fresh, expired).
    pub fn split_expired(&self, now_ms: i64, max_age_ms: i64) -> (Self, Self) {
        let (expired, fresh): (Vec<Record>, Vec<Record>) = self
            .records()
            .cloned()
            .partition(|record| now_ms.saturating_sub(record.timestamp_ms) > max_age_ms);
        (Self::from_records(fresh), Self::from_records(expired))
    }

    /// The invocation payload: the exact event JSON Lambda sends.
    pub fn event_json(&self, source: &EventSource) -> String {
        let mut json = source.envelope();
        for (index, (partition, records)) in self.groups.iter().enumerate() {
            if index > 0 {
                json.push(',');
            }
            json.push_str(&json_string(&partition.to_string()));
            json.push_str(":[");
            for (index, record) in records.iter().enumerate() {
                if index > 0 {
                    json.push(',');
                }
                json.push_str(record.json());
            }
            json.push(']');
        }
        json.push_str("}}");
        json
    }
}

/// The size of an event as it grows, byte-exact with [`Batch::event_json`].
struct PayloadSize {
    bytes: usize,
    partitions: BTreeMap<TopicPartition, usize>,
}

impl PayloadSize {
    fn new(source: &EventSource) -> Self {
        Self {
            bytes: source.envelope().len() + "}}".len(),
            partitions: BTreeMap::new(),
        }
    }

    /// The size with `record` added.
    fn with(&self, record: &Record) -> usize {
        let added = match self.partitions.get(&record.partition) {
            // `,` before the record.
            Some(_) => 1 + record.json().len(),
            // `,` before the group unless it is the first, `"key":[`, the record, `]`.
            None => {
                usize::from(!self.partitions.is_empty())
                    + json_string(&record.partition.to_string()).len()
                    + 2
                    + record.json().len()
                    + 1
            }
        };
        self.bytes + added
    }

    fn add(&mut self, record: &Record) {
        self.bytes = self.with(record);
        *self.partitions.entry(record.partition.clone()).or_default() += 1;
    }
}

/// Why the next batch cannot be cut yet, or what it is.
#[derive(Debug, PartialEq, Eq)]
pub enum Cut {
    /// The next batch.
    Batch(Batch),
    /// A record that alone makes an event over the payload limit: Lambda cannot deliver it,
    /// and sends its metadata to the on-failure destination (`MaximumPayloadSizeExceeded`).
    Oversized(Batch),
    /// No record is waiting.
    Nothing,
}

/// Records read from the source and not yet in a batch, per partition, in offset order.
#[derive(Debug, Default)]
pub struct Pending {
    partitions: BTreeMap<TopicPartition, VecDeque<Record>>,
    /// The partition the next batch starts with, so that a busy partition cannot starve the
    /// others when batches fill up.
    rotation: usize,
}

impl Pending {
    /// The offset of the first record waiting in `partition`.
    pub fn first_offset(&self, partition: &TopicPartition) -> Option<i64> {
        self.partitions
            .get(partition)?
            .front()
            .map(|record| record.offset)
    }

    /// Adds a record after the others of its partition.
    pub fn push(&mut self, record: Record) {
        self.partitions
            .entry(record.partition.clone())
            .or_default()
            .push_back(record);
    }

    /// Records waiting.
    pub fn len(&self) -> usize {
        self.partitions.values().map(VecDeque::len).sum()
    }

    /// Whether no record is waiting.
    pub fn is_empty(&self) -> bool {
        self.partitions.values().all(VecDeque::is_empty)
    }

    /// The number of bytes of an event holding every pending record (an over-estimate by a
    /// few bytes per partition): the batching window closes early once this passes the cap.
    pub fn payload_bytes(&self) -> usize {
        self.partitions
            .values()
            .flatten()
            .map(|record| record.json().len() + 1)
            .sum()
    }

    /// Cuts the next batch: up to `batch_size` records and `max_payload_bytes` of event JSON.
    pub fn cut(
        &mut self,
        source: &EventSource,
        batch_size: usize,
        max_payload_bytes: usize,
    ) -> Cut {
        let order: Vec<TopicPartition> = self
            .partitions
            .iter()
            .filter(|(_, records)| !records.is_empty())
            .map(|(partition, _)| partition.clone())
            .collect();
        if order.is_empty() {
            return Cut::Nothing;
        }
        let start = self.rotation % order.len();
        self.rotation = self.rotation.wrapping_add(1);
        let mut size = PayloadSize::new(source);
        let mut taken = Vec::new();
        'partitions: for partition in order[start..].iter().chain(&order[..start]) {
            let Some(queue) = self.partitions.get_mut(partition) else {
                continue;
            };
            while let Some(record) = queue.front() {
                if taken.len() == batch_size {
                    break 'partitions;
                }
                if size.with(record) > max_payload_bytes {
                    if taken.is_empty() {
                        let record = queue.pop_front().into_iter();
                        return Cut::Oversized(Batch::from_records(record));
                    }
                    // The payload is full: later records of this partition must not go
                    // ahead of this one, but other partitions may still fit.
                    continue 'partitions;
                }
                size.add(record);
                taken.extend(queue.pop_front());
            }
        }
        Cut::Batch(Batch::from_records(taken))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_record_shows_as_json_with_text_where_it_is_text() {
        let record = SourceRecord {
            topic: "enriched".into(),
            partition: 1,
            offset: 7,
            timestamp_ms: 1_700_000_000_000,
            timestamp_type: TimestampType::CreateTime,
            key: Some(b"SO-001".to_vec()),
            value: Some(br#"{"OrderNo":"SO-001","Total":189.05}"#.to_vec()),
            headers: vec![
                ("source-offset".into(), b"0".to_vec()),
                ("raw".into(), vec![0xff, 0x00]),
            ],
        };
        assert_eq!(
            record.to_display_json(),
            serde_json::json!({
                "topic": "enriched", "partition": 1, "offset": 7, "timestamp": 1_700_000_000_000_i64,
                "key": "SO-001",
                "value": {"OrderNo": "SO-001", "Total": 189.05},
                "headers": {"source-offset": "0", "raw_base64": "/wA="}
            })
        );
        let odd = SourceRecord {
            key: None,
            value: Some(b"not json".to_vec()),
            headers: vec![],
            ..record
        };
        assert_eq!(odd.to_display_json()["value"], "not json");
        assert_eq!(odd.to_display_json()["key"], serde_json::Value::Null);
    }

    use super::*;

    pub(crate) fn record(topic: &str, partition: i32, offset: i64, value: &str) -> Record {
        Record::new(&SourceRecord {
            topic: topic.to_owned(),
            partition,
            offset,
            timestamp_ms: 1_700_000_000_000 + offset,
            timestamp_type: TimestampType::CreateTime,
            key: Some(format!("k{offset}").into_bytes()),
            value: Some(value.as_bytes().to_vec()),
            headers: vec![],
        })
    }

    fn msk() -> EventSource {
        EventSource {
            event_source_arn: Some("arn:aws:kafka:us-east-1:123456789012:cluster/c/1".into()),
            bootstrap_servers: "b-1:9092,b-2:9092".into(),
        }
    }

    /// Users of `aws_lambda_events` must be able to trust every event this renders: keyed and
    /// unkeyed records, tombstones, headers with non-ASCII bytes, both timestamp types, both
    /// event sources.
    #[test]
    fn every_event_deserialises_with_aws_lambda_events() {
        use aws_lambda_events::event::kafka::KafkaEvent;
        let records = [
            SourceRecord {
                headers: vec![("city".into(), "Montréal".as_bytes().to_vec())],
                ..plain("orders.v1-eu", 0, 7)
            },
            SourceRecord {
                key: None,
                timestamp_type: TimestampType::LogAppendTime,
                ..plain("orders.v1-eu", 0, 8)
            },
            SourceRecord {
                value: None,
                ..plain("audit", 3, 0)
            },
        ];
        for source in [
            msk(),
            EventSource {
                event_source_arn: None,
                bootstrap_servers: "localhost:9092".into(),
            },
        ] {
            let batch = Batch::from_records(records.iter().map(Record::new));
            let json = batch.event_json(&source);
            let event: KafkaEvent = serde_json::from_str(&json).unwrap();
            let expected_source = if source.event_source_arn.is_some() {
                "aws:kafka"
            } else {
                "SelfManagedKafka"
            };
            assert_eq!(event.event_source.as_deref(), Some(expected_source));
            assert_eq!(event.event_source_arn, source.event_source_arn);
            assert_eq!(
                event.bootstrap_servers.as_deref(),
                Some(source.bootstrap_servers.as_str())
            );
            let eu = &event.records["orders.v1-eu-0"];
            assert_eq!(eu.len(), 2);
            assert_eq!(
                (eu[0].topic.as_deref(), eu[0].partition, eu[0].offset),
                (Some("orders.v1-eu"), 0, 7)
            );
            assert_eq!(eu[0].key.as_deref(), Some("azc="), "base64 of k7");
            assert_eq!(eu[0].value.as_deref(), Some("dmFsdWU="), "base64 of value");
            assert_eq!(eu[0].timestamp_type.as_deref(), Some("CREATE_TIME"));
            let city: Vec<i8> = "Montréal".bytes().map(u8::cast_signed).collect();
            assert_eq!(eu[0].headers[0]["city"], city);
            assert_eq!(eu[1].key, None);
            assert_eq!(eu[1].timestamp_type.as_deref(), Some("LOG_APPEND_TIME"));
            assert_eq!(event.records["audit-3"][0].value, None, "a tombstone");
        }
    }

    fn plain(topic: &str, partition: i32, offset: i64) -> SourceRecord {
        SourceRecord {
            topic: topic.to_owned(),
            partition,
            offset,
            timestamp_ms: 1_700_000_000_000,
            timestamp_type: TimestampType::CreateTime,
            key: Some(format!("k{offset}").into_bytes()),
            value: Some(b"value".to_vec()),
            headers: vec![],
        }
    }

    fn offsets(batch: &Batch) -> Vec<(String, i64)> {
        batch
            .records()
            .map(|r| (r.partition.to_string(), r.offset))
            .collect()
    }

    #[test]
    fn record_json_is_the_msk_wire_format() {
        let record = Record::new(&SourceRecord {
            topic: "orders".into(),
            partition: 2,
            offset: 15,
            timestamp_ms: 1545084650987,
            timestamp_type: TimestampType::CreateTime,
            key: Some(b"SO-001".to_vec()),
            value: None,
            headers: vec![("source".into(), "wëb".as_bytes().to_vec())],
        });
        assert_eq!(
            record.json(),
            r#"{"topic":"orders","partition":2,"offset":15,"timestamp":1545084650987,"timestampType":"CREATE_TIME","key":"U08tMDAx","headers":[{"source":[119,-61,-85,98]}]}"#
        );
    }

    #[test]
    fn event_json_groups_partitions_and_its_size_is_exact() {
        let mut pending = Pending::default();
        for (partition, offset) in [(0, 5), (1, 7), (0, 6), (1, 8)] {
            pending.push(record("orders.v1-eu", partition, offset, "{}"));
        }
        let Cut::Batch(batch) = pending.cut(&msk(), 10, MAX_PAYLOAD_BYTES) else {
            panic!("expected a batch");
        };
        let json = batch.event_json(&msk());
        let event: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(event["eventSource"], "aws:kafka");
        assert_eq!(event["bootstrapServers"], "b-1:9092,b-2:9092");
        let keys: Vec<&String> = event["records"].as_object().unwrap().keys().collect();
        assert_eq!(keys, ["orders.v1-eu-0", "orders.v1-eu-1"]);
        assert_eq!(event["records"]["orders.v1-eu-1"][1]["offset"], 8);
        let mut size = PayloadSize::new(&msk());
        batch.records().for_each(|r| size.add(r));
        assert_eq!(size.bytes, json.len());
        let self_managed = EventSource {
            event_source_arn: None,
            bootstrap_servers: "localhost:9092".into(),
        };
        let json = batch.event_json(&self_managed);
        assert!(json.starts_with(r#"{"eventSource":"SelfManagedKafka","bootstrapServers""#));
    }

    #[test]
    fn batches_hold_at_most_batch_size_records_and_rotate_partitions() {
        let mut pending = Pending::default();
        for offset in 0..4 {
            pending.push(record("t", 0, offset, "a"));
            pending.push(record("t", 1, offset, "b"));
        }
        let mut cuts = Vec::new();
        while let Cut::Batch(batch) = pending.cut(&msk(), 3, MAX_PAYLOAD_BYTES) {
            cuts.push(offsets(&batch));
        }
        let p = |p: i32, o: i64| (format!("t-{p}"), o);
        assert_eq!(
            cuts,
            vec![
                vec![p(0, 0), p(0, 1), p(0, 2)],
                // The next batch starts with the next partition.
                vec![p(1, 0), p(1, 1), p(1, 2)],
                vec![p(0, 3), p(1, 3)],
            ]
        );
    }

    #[test]
    fn the_payload_cap_ends_a_batch_and_an_oversized_record_is_cut_alone() {
        let big = "x".repeat(600);
        let mut pending = Pending::default();
        for offset in 0..3 {
            pending.push(record("t", 0, offset, &big));
        }
        pending.push(record("t", 1, 0, "small"));
        // Exactly room for two big records and the small one: the third big one does not
        // fit, yet the small record of another partition still does.
        let mut exact = PayloadSize::new(&msk());
        for r in [
            record("t", 0, 0, &big),
            record("t", 0, 1, &big),
            record("t", 1, 0, "small"),
        ] {
            exact.add(&r);
        }
        let cap = exact.bytes;
        let Cut::Batch(first) = pending.cut(&msk(), 100, cap) else {
            panic!("expected a batch")
        };
        assert_eq!(
            offsets(&first),
            vec![("t-0".into(), 0), ("t-0".into(), 1), ("t-1".into(), 0)]
        );
        assert_eq!(first.event_json(&msk()).len(), cap);
        let Cut::Oversized(alone) = pending.cut(&msk(), 100, 500) else {
            panic!("expected the record alone")
        };
        assert_eq!(offsets(&alone), vec![("t-0".into(), 2)]);
        assert_eq!(pending.cut(&msk(), 100, cap), Cut::Nothing);
    }

    #[test]
    fn redelivery_keeps_reported_partitions_from_their_offsets() {
        let batch = Batch::from_records(
            [(0, 1), (0, 2), (0, 3), (1, 1), (1, 2)].map(|(p, o)| record("t", p, o, "v")),
        );
        let again = batch.redelivered(&BTreeMap::from([(TopicPartition::new("t", 0), 2)]));
        assert_eq!(offsets(&again), vec![("t-0".into(), 2), ("t-0".into(), 3)]);
        assert_eq!(
            batch.next_offsets(),
            BTreeMap::from([
                (TopicPartition::new("t", 0), 4),
                (TopicPartition::new("t", 1), 3)
            ])
        );
        assert!(batch.contains(&TopicPartition::new("t", 1), 2));
        assert!(!batch.contains(&TopicPartition::new("t", 1), 3));
    }

    #[test]
    fn bisect_keeps_each_partition_contiguous() {
        let batch = Batch::from_records(
            [(0, 1), (0, 2), (0, 3), (1, 1), (1, 2)].map(|(p, o)| record("t", p, o, "v")),
        );
        let (first, second) = batch.bisect();
        assert_eq!(offsets(&first), vec![("t-0".into(), 1), ("t-0".into(), 2)]);
        assert_eq!(
            offsets(&second),
            vec![("t-0".into(), 3), ("t-1".into(), 1), ("t-1".into(), 2)]
        );
    }

    #[test]
    fn expired_records_are_split_off() {
        let batch = Batch::from_records([1, 2, 3].map(|o| record("t", 0, o, "v")));
        // Timestamps are 1_700_000_000_000 + offset: at this instant offset 1 is 60,001 ms old,
        // over the limit; offset 2 is exactly at it, which is not over.
        let now = 1_700_000_000_000 + 60_002;
        let (fresh, expired) = batch.split_expired(now, 60_000);
        assert_eq!(offsets(&fresh), vec![("t-0".into(), 2), ("t-0".into(), 3)]);
        assert_eq!(offsets(&expired), vec![("t-0".into(), 1)]);
    }
}
