//! The records inside an on-failure document's payload (the invocation event as Lambda sent
//! it), decoded back to bytes, and a source that hands them to the runner with their original
//! offsets.

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde::Deserialize;

use crate::batch::{EventSource, SourceRecord, TimestampType, TopicPartition};

type Error = Box<dyn std::error::Error + Send + Sync>;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireEvent {
    #[serde(default)]
    event_source_arn: Option<String>,
    #[serde(default)]
    bootstrap_servers: Option<String>,
    records: BTreeMap<String, Vec<WireRecord>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireRecord {
    topic: String,
    partition: i32,
    offset: i64,
    #[serde(default)]
    timestamp: i64,
    #[serde(default)]
    timestamp_type: Option<String>,
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    value: Option<String>,
    #[serde(default)]
    headers: Vec<BTreeMap<String, Vec<i8>>>,
}

/// The event source and the records of a payload, decoded back to bytes.
pub fn payload_records(payload: &str) -> Result<(EventSource, Vec<SourceRecord>), Error> {
    let event: WireEvent = serde_json::from_str(payload)
        .map_err(|e| format!("the payload is not a Kafka event: {e}"))?;
    let decode = |field: &str, text: Option<String>, at: &str| {
        text.map(|text| {
            BASE64
                .decode(text.as_bytes())
                .map_err(|e| format!("{at}: {field} is not base64: {e}"))
        })
        .transpose()
    };
    let mut records = Vec::new();
    for (key, list) in event.records {
        for record in list {
            let at = format!("{key}@{}", record.offset);
            records.push(SourceRecord {
                key: decode("key", record.key, &at)?,
                value: decode("value", record.value, &at)?,
                headers: record
                    .headers
                    .into_iter()
                    .flatten()
                    .map(|(name, bytes)| (name, bytes.into_iter().map(i8::cast_unsigned).collect()))
                    .collect(),
                timestamp_type: match record.timestamp_type.as_deref() {
                    Some("LOG_APPEND_TIME") => TimestampType::LogAppendTime,
                    _ => TimestampType::CreateTime,
                },
                timestamp_ms: record.timestamp,
                topic: record.topic,
                partition: record.partition,
                offset: record.offset,
            });
        }
    }
    let source = EventSource {
        event_source_arn: event.event_source_arn,
        bootstrap_servers: event.bootstrap_servers.unwrap_or_default(),
    };
    Ok((source, records))
}

/// The records of one payload as a source: each partition starts at its first record's offset
/// and ends after its last, so the runner's commits and lag read as for the original topic.
#[derive(Debug, Clone, Default)]
pub struct PayloadSource {
    partitions: BTreeMap<TopicPartition, Vec<SourceRecord>>,
    handed_out: bool,
}

impl PayloadSource {
    /// A source of `records` (in offset order within each partition).
    pub fn new(records: Vec<SourceRecord>) -> Self {
        let mut partitions: BTreeMap<TopicPartition, Vec<SourceRecord>> = BTreeMap::new();
        for record in records {
            partitions
                .entry(TopicPartition::new(record.topic.clone(), record.partition))
                .or_default()
                .push(record);
        }
        for list in partitions.values_mut() {
            list.sort_by_key(|record| record.offset);
        }
        Self {
            partitions,
            handed_out: false,
        }
    }

    /// The partitions of the payload.
    pub fn topic_partitions(&self) -> Vec<TopicPartition> {
        self.partitions.keys().cloned().collect()
    }

    /// Each partition's first offset.
    pub fn start_offsets(&self) -> BTreeMap<TopicPartition, i64> {
        self.bounds(|list| list.first().map(|r| r.offset))
    }

    /// Each partition's offset after its last record.
    pub fn end_offsets(&self) -> BTreeMap<TopicPartition, i64> {
        self.bounds(|list| list.last().map(|r| r.offset + 1))
    }

    fn bounds(
        &self,
        pick: impl Fn(&[SourceRecord]) -> Option<i64>,
    ) -> BTreeMap<TopicPartition, i64> {
        self.partitions
            .iter()
            .filter_map(|(p, list)| pick(list).map(|offset| (p.clone(), offset)))
            .collect()
    }

    /// Every record, the first time; nothing after.
    pub fn poll(&mut self) -> Vec<SourceRecord> {
        if std::mem::replace(&mut self.handed_out, true) {
            return Vec::new();
        }
        self.partitions.values().flatten().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{Batch, Record};

    fn event() -> String {
        let records = [
            SourceRecord {
                topic: "orders".into(),
                partition: 1,
                offset: 41,
                timestamp_ms: 1_700_000_000_000,
                timestamp_type: TimestampType::CreateTime,
                key: Some(b"SO-1".to_vec()),
                value: Some(b"{\"n\":1}".to_vec()),
                headers: vec![("city".into(), "Montréal".as_bytes().to_vec())],
            },
            SourceRecord {
                topic: "orders".into(),
                partition: 1,
                offset: 42,
                timestamp_ms: 1_700_000_000_001,
                timestamp_type: TimestampType::LogAppendTime,
                key: None,
                value: None,
                headers: vec![],
            },
        ];
        Batch::from_records(records.iter().map(Record::new)).event_json(&EventSource {
            event_source_arn: Some("arn:aws:kafka:us-east-1:1:cluster/c/1".into()),
            bootstrap_servers: "b-1:9098".into(),
        })
    }

    #[test]
    fn a_payload_decodes_back_to_the_records_it_was_made_of() {
        let json = event();
        let (source, records) = payload_records(&json).unwrap();
        assert_eq!(
            source.event_source_arn.as_deref(),
            Some("arn:aws:kafka:us-east-1:1:cluster/c/1")
        );
        assert_eq!(source.bootstrap_servers, "b-1:9098");
        assert_eq!(records.len(), 2);
        assert_eq!(
            records[0].headers,
            vec![("city".to_owned(), "Montréal".as_bytes().to_vec())]
        );
        assert_eq!(records[1].timestamp_type, TimestampType::LogAppendTime);
        assert_eq!(
            (records[1].key.clone(), records[1].value.clone()),
            (None, None)
        );
        // Rendering the decoded records again gives the same event, byte for byte.
        let again = Batch::from_records(records.iter().map(Record::new)).event_json(&source);
        assert_eq!(again, json);
    }

    #[test]
    fn a_payload_source_keeps_the_original_offsets() {
        let (_, records) = payload_records(&event()).unwrap();
        let mut source = PayloadSource::new(records);
        let p = TopicPartition::new("orders", 1);
        assert_eq!(source.start_offsets(), BTreeMap::from([(p.clone(), 41)]));
        assert_eq!(source.end_offsets(), BTreeMap::from([(p, 43)]));
        assert_eq!(source.poll().len(), 2);
        assert_eq!(source.poll().len(), 0, "handed out once");
    }
}
