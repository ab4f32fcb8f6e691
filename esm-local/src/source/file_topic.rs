//! A topic read from a file, for when no broker is at hand: one record per line, placed in
//! partitions by Kafka's default partitioner so that each key keeps its order, as it would in a
//! broker.

use std::collections::BTreeMap;

use crate::batch::{SourceRecord, TimestampType, TopicPartition};
use crate::source::partitioner::partition_for;

/// A record's key and value (`None` value: a tombstone).
pub type KeyAndValue = (Option<Vec<u8>>, Option<Vec<u8>>);

/// How a line becomes a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineFormat {
    /// The line is the value; the key is the value's top-level JSON field `key_field` when it
    /// is a string, else the record has no key.
    Values {
        /// The JSON field holding the key.
        key_field: Option<String>,
    },
    /// `key<separator>value`, as kcat reads and writes with `-K`. A line without the separator
    /// is a value without a key; an empty value is a tombstone.
    KeyValue {
        /// What separates key from value.
        separator: String,
    },
}

impl LineFormat {
    /// The record's key and value from one line.
    pub fn split(&self, line: &str) -> KeyAndValue {
        match self {
            Self::Values { key_field } => {
                let key = key_field.as_deref().and_then(|field| {
                    let value: serde_json::Value = serde_json::from_str(line).ok()?;
                    Some(value.get(field)?.as_str()?.as_bytes().to_vec())
                });
                (key, Some(line.as_bytes().to_vec()))
            }
            Self::KeyValue { separator } => match line.split_once(separator.as_str()) {
                Some((key, "")) => (Some(key.as_bytes().to_vec()), None),
                Some((key, value)) => (
                    Some(key.as_bytes().to_vec()),
                    Some(value.as_bytes().to_vec()),
                ),
                None => (None, Some(line.as_bytes().to_vec())),
            },
        }
    }
}

/// A topic whose partitions are held in memory, with the offsets committed so far.
#[derive(Debug, Clone)]
pub struct FileTopic {
    topic: String,
    partitions: Vec<Vec<SourceRecord>>,
    /// Per partition, the next offset not yet handed out by [`FileTopic::poll`].
    read: Vec<usize>,
    /// The partitions this copy reads (all when `None`): one poller's share.
    owned: Option<std::collections::BTreeSet<i32>>,
}

impl FileTopic {
    /// Lines of `text` (blank ones skipped) as records of `topic`, timestamped `now_ms`.
    /// Keyed records go to Kafka's default partition for their key; unkeyed ones round-robin.
    pub fn from_lines(
        topic: &str,
        partitions: i32,
        format: &LineFormat,
        text: &str,
        now_ms: i64,
    ) -> Self {
        let count = partitions.max(1);
        let mut records: Vec<Vec<SourceRecord>> = (0..count).map(|_| Vec::new()).collect();
        let mut unkeyed = 0;
        for line in text.lines().filter(|line| !line.trim().is_empty()) {
            let (key, value) = format.split(line);
            let partition = match &key {
                Some(key) => partition_for(key, count),
                None => {
                    unkeyed += 1;
                    (unkeyed - 1) % count
                }
            };
            // partition_for and the round robin both give 0..count.
            let list = &mut records[usize::try_from(partition).unwrap_or(0)];
            list.push(SourceRecord {
                topic: topic.to_owned(),
                partition,
                offset: offset_at(list.len()),
                timestamp_ms: now_ms,
                timestamp_type: TimestampType::CreateTime,
                key,
                value,
                headers: vec![],
            });
        }
        Self {
            topic: topic.to_owned(),
            read: vec![0; records.len()],
            partitions: records,
            owned: None,
        }
    }

    /// A copy that reads only `partitions` (one poller's share of the topic).
    pub fn owning(&self, partitions: &std::collections::BTreeSet<i32>) -> Self {
        Self {
            owned: Some(partitions.clone()),
            ..self.clone()
        }
    }

    fn owns(&self, partition: usize) -> bool {
        let number = i32::try_from(partition).unwrap_or(i32::MAX);
        self.owned
            .as_ref()
            .is_none_or(|owned| owned.contains(&number))
    }

    /// The topic's partitions.
    pub fn topic_partitions(&self) -> Vec<TopicPartition> {
        (0..self.partitions.len())
            .filter(|&p| self.owns(p))
            .map(|p| TopicPartition::new(self.topic.clone(), i32::try_from(p).unwrap_or(i32::MAX)))
            .collect()
    }

    /// Every record not handed out yet.
    pub fn poll(&mut self) -> Vec<SourceRecord> {
        let mut out = Vec::new();
        for (index, (records, read)) in self.partitions.iter().zip(self.read.iter_mut()).enumerate()
        {
            let number = i32::try_from(index).unwrap_or(i32::MAX);
            if self
                .owned
                .as_ref()
                .is_some_and(|owned| !owned.contains(&number))
            {
                continue;
            }
            out.extend_from_slice(&records[*read..]);
            *read = records.len();
        }
        out
    }

    /// The offset after each partition's last record.
    pub fn end_offsets(&self) -> BTreeMap<TopicPartition, i64> {
        self.partitions
            .iter()
            .enumerate()
            .filter(|(p, _)| self.owns(*p))
            .map(|(p, records)| {
                (
                    TopicPartition::new(self.topic.clone(), i32::try_from(p).unwrap_or(i32::MAX)),
                    offset_at(records.len()),
                )
            })
            .collect()
    }
}

/// The offset of the record at `index` of a partition (a file has far fewer than 2^63 lines).
fn offset_at(index: usize) -> i64 {
    i64::try_from(index).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_lines_follow_kafkas_partitioner_and_keep_their_order() {
        let text = "\
{\"OrderNo\":\"SO-1\",\"n\":1}
{\"OrderNo\":\"SO-2\",\"n\":2}

{\"OrderNo\":\"SO-1\",\"n\":3}
not json
";
        let format = LineFormat::Values {
            key_field: Some("OrderNo".into()),
        };
        let mut topic = FileTopic::from_lines("orders", 3, &format, text, 7);
        let records = topic.poll();
        assert_eq!(records.len(), 4);
        let p1 = partition_for(b"SO-1", 3);
        let so1: Vec<(i32, i64, &[u8])> = records
            .iter()
            .filter(|r| r.key.as_deref() == Some(b"SO-1".as_slice()))
            .map(|r| {
                (
                    r.partition,
                    r.offset,
                    r.value.as_deref().unwrap_or_default(),
                )
            })
            .collect();
        assert_eq!(so1.len(), 2);
        assert!(so1.iter().all(|(p, _, _)| *p == p1));
        assert!(so1[0].1 < so1[1].1);
        assert_eq!(so1[1].2, b"{\"OrderNo\":\"SO-1\",\"n\":3}");
        let unkeyed: Vec<_> = records.iter().filter(|r| r.key.is_none()).collect();
        assert_eq!(unkeyed.len(), 1);
        assert_eq!(unkeyed[0].value.as_deref(), Some(b"not json".as_slice()));
        // Offsets are dense per partition, and every record is handed out once.
        let ends = topic.end_offsets();
        assert_eq!(ends.values().sum::<i64>(), 4);
        assert!(topic.poll().is_empty());
    }

    #[test]
    fn key_value_lines_split_at_the_first_separator() {
        let format = LineFormat::KeyValue {
            separator: "|".into(),
        };
        assert_eq!(
            format.split("SO-1|{\"a\":\"x|y\"}"),
            (Some(b"SO-1".to_vec()), Some(b"{\"a\":\"x|y\"}".to_vec()))
        );
        assert_eq!(format.split("SO-1|"), (Some(b"SO-1".to_vec()), None));
        assert_eq!(format.split("lonely"), (None, Some(b"lonely".to_vec())));
    }
}
