//! A Kafka-compatible broker as the source (Apache Kafka, MSK, Redpanda, tansu), through
//! librdkafka: partitions assigned by the mapping itself, offsets committed to its consumer
//! group only when a batch is done with, as Lambda's event source mapping does.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, StreamConsumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, Timestamp, TopicPartitionList};

use crate::batch::{SourceRecord, TimestampType, TopicPartition};
use crate::source::file_topic::KeyAndValue;

type Error = Box<dyn std::error::Error + Send + Sync>;

const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a consumer group without committed offsets starts (`StartingPosition`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartingPosition {
    /// The earliest offset (`TRIM_HORIZON`).
    TrimHorizon,
    /// The end of the partition (`LATEST`).
    Latest,
    /// `AT_TIMESTAMP` with `StartingPositionTimestamp`, in epoch milliseconds.
    AtTimestamp(i64),
}

/// Connection settings shared by the consumer, the producer and the admin client.
#[derive(Debug, Clone)]
pub struct Connection {
    /// The brokers, comma-separated.
    pub bootstrap_servers: String,
    /// Further librdkafka properties (`security.protocol`, `sasl.mechanism`, ...).
    pub properties: Vec<(String, String)>,
}

impl Connection {
    fn config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.bootstrap_servers);
        for (key, value) in &self.properties {
            config.set(key, value);
        }
        config
    }
}

/// Runs a blocking librdkafka call without stalling the async runtime's other tasks.
fn blocking<T>(call: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(call)
}

/// A consumer group reading topics of a broker, committing only what the mapping is done with.
pub struct KafkaSource {
    consumer: StreamConsumer,
    /// A client of its own for end offsets: on the consumer's connection the query would wait
    /// behind its long-polling fetches (about 0.5 s a partition).
    offsets: BaseConsumer,
    partitions: Vec<TopicPartition>,
    /// Where reading started: the group's committed offsets, else the starting position.
    start: BTreeMap<TopicPartition, i64>,
}

/// Every partition of `topics`, in topic and partition order; an error naming a topic that
/// does not exist.
fn topic_partitions(
    consumer: &StreamConsumer,
    connection: &Connection,
    topics: &[String],
) -> Result<Vec<TopicPartition>, Error> {
    let mut partitions = Vec::new();
    for topic in topics {
        let metadata = blocking(|| consumer.fetch_metadata(Some(topic), METADATA_TIMEOUT))
            .map_err(|e| {
                format!(
                    "reading the metadata of topic {topic} from {}: {e}",
                    connection.bootstrap_servers
                )
            })?;
        let found = metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic)
            .filter(|t| t.error().is_none() && !t.partitions().is_empty())
            .ok_or_else(|| {
                format!(
                    "topic {topic} does not exist on {}",
                    connection.bootstrap_servers
                )
            })?;
        let mut ids: Vec<i32> = found.partitions().iter().map(|p| p.id()).collect();
        ids.sort_unstable();
        partitions.extend(
            ids.into_iter()
                .map(|id| TopicPartition::new(topic.clone(), id)),
        );
    }
    Ok(partitions)
}

/// Where reading `p` starts: the group's committed offset, else the starting position, within
/// the partition's low and high watermarks.
fn start_offset(
    consumer: &StreamConsumer,
    p: &TopicPartition,
    committed: Option<i64>,
    starting: StartingPosition,
) -> Result<i64, Error> {
    let (low, high) =
        blocking(|| consumer.fetch_watermarks(&p.topic, p.partition, METADATA_TIMEOUT))
            .map_err(|e| format!("reading the offsets of {p}: {e}"))?;
    let offset = match (committed, starting) {
        (Some(n), _) => n,
        (None, StartingPosition::TrimHorizon) => low,
        (None, StartingPosition::Latest) => high,
        (None, StartingPosition::AtTimestamp(ms)) => {
            let mut query = TopicPartitionList::new();
            query
                .add_partition_offset(&p.topic, p.partition, Offset::Offset(ms))
                .map_err(|e| format!("{p}: {e}"))?;
            let found = blocking(|| consumer.offsets_for_times(query, METADATA_TIMEOUT))
                .map_err(|e| format!("looking up offsets at {ms} ms in {p}: {e}"))?;
            match found
                .find_partition(&p.topic, p.partition)
                .map(|elem| elem.offset())
            {
                Some(Offset::Offset(n)) => n,
                // No record at or after the timestamp: start at the end.
                _ => high,
            }
        }
    };
    Ok(offset.clamp(low, high))
}

impl KafkaSource {
    /// Joins `group` on `topics`, starting where the group committed or at `starting`.
    pub async fn connect(
        connection: &Connection,
        topics: &[String],
        group: &str,
        starting: StartingPosition,
    ) -> Result<Self, Error> {
        let consumer: StreamConsumer = connection
            .config()
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            // Answer polls within 100 ms when there is nothing new (librdkafka waits 500 ms).
            .set("fetch.wait.max.ms", "100")
            .set(
                "auto.offset.reset",
                match starting {
                    StartingPosition::Latest => "latest",
                    _ => "earliest",
                },
            )
            .create()
            .map_err(|e| format!("creating the Kafka consumer: {e}"))?;
        let partitions = topic_partitions(&consumer, connection, topics)?;
        let mut wanted = TopicPartitionList::new();
        for p in &partitions {
            wanted.add_partition(&p.topic, p.partition);
        }
        let committed =
            blocking(|| consumer.committed_offsets(wanted.clone(), METADATA_TIMEOUT))
                .map_err(|e| format!("reading the committed offsets of group {group}: {e}"))?;
        let mut start = BTreeMap::new();
        let mut assignment = TopicPartitionList::new();
        for p in &partitions {
            let committed = committed
                .find_partition(&p.topic, p.partition)
                .and_then(|elem| match elem.offset() {
                    Offset::Offset(n) if n >= 0 => Some(n),
                    _ => None,
                });
            let offset = start_offset(&consumer, p, committed, starting)?;
            assignment
                .add_partition_offset(&p.topic, p.partition, Offset::Offset(offset))
                .map_err(|e| format!("{p}: {e}"))?;
            start.insert(p.clone(), offset);
        }
        consumer
            .assign(&assignment)
            .map_err(|e| format!("assigning the partitions: {e}"))?;
        let offsets: BaseConsumer = connection
            .config()
            .create()
            .map_err(|e| format!("creating the Kafka offsets client: {e}"))?;
        Ok(Self {
            consumer,
            offsets,
            partitions,
            start,
        })
    }

    /// Keeps only the partitions `keep` accepts (one poller's share), from where reading
    /// started.
    pub fn retain(&mut self, keep: impl Fn(&TopicPartition) -> bool) -> Result<(), Error> {
        self.partitions.retain(|p| keep(p));
        self.start.retain(|p, _| keep(p));
        let mut assignment = TopicPartitionList::new();
        for (p, offset) in &self.start {
            assignment
                .add_partition_offset(&p.topic, p.partition, Offset::Offset(*offset))
                .map_err(|e| format!("{p}: {e}"))?;
        }
        self.consumer
            .assign(&assignment)
            .map_err(|e| format!("assigning the partitions: {e}"))?;
        Ok(())
    }

    /// The partitions read.
    pub fn topic_partitions(&self) -> Vec<TopicPartition> {
        self.partitions.clone()
    }

    /// Where reading started in each partition.
    pub fn start_offsets(&self) -> BTreeMap<TopicPartition, i64> {
        self.start.clone()
    }

    /// Records that arrive within `wait`, up to `max` of them.
    pub async fn poll(&mut self, wait: Duration, max: usize) -> Result<Vec<SourceRecord>, Error> {
        let mut records = Vec::new();
        let until = tokio::time::Instant::now() + wait;
        while records.len() < max {
            let message = match tokio::time::timeout_at(until, self.consumer.recv()).await {
                Err(_) => break,
                Ok(Err(e)) => return Err(format!("reading from Kafka: {e}").into()),
                Ok(Ok(message)) => message,
            };
            let (timestamp_ms, timestamp_type) = match message.timestamp() {
                Timestamp::CreateTime(ms) => (ms, TimestampType::CreateTime),
                Timestamp::LogAppendTime(ms) => (ms, TimestampType::LogAppendTime),
                Timestamp::NotAvailable => (0, TimestampType::CreateTime),
            };
            let headers = message
                .headers()
                .map(|headers| {
                    headers
                        .iter()
                        .map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec()))
                        .collect()
                })
                .unwrap_or_default();
            records.push(SourceRecord {
                topic: message.topic().to_owned(),
                partition: message.partition(),
                offset: message.offset(),
                timestamp_ms,
                timestamp_type,
                key: message.key().map(<[u8]>::to_vec),
                value: message.payload().map(<[u8]>::to_vec),
                headers,
            });
        }
        Ok(records)
    }

    /// Commits `offsets` (the next offset to read, per partition) to the consumer group.
    pub fn commit(&mut self, offsets: &BTreeMap<TopicPartition, i64>) -> Result<(), Error> {
        if offsets.is_empty() {
            return Ok(());
        }
        let mut list = TopicPartitionList::new();
        for (p, &offset) in offsets {
            list.add_partition_offset(&p.topic, p.partition, Offset::Offset(offset))
                .map_err(|e| format!("{p}: {e}"))?;
        }
        blocking(|| self.consumer.commit(&list, CommitMode::Sync))
            .map_err(|e| format!("committing offsets: {e}").into())
    }

    /// Each partition's high watermark: the offset its next record will get.
    pub fn end_offsets(&self) -> Result<BTreeMap<TopicPartition, i64>, Error> {
        let mut ends = BTreeMap::new();
        for p in &self.partitions {
            let (_, high) = blocking(|| {
                self.offsets
                    .fetch_watermarks(&p.topic, p.partition, METADATA_TIMEOUT)
            })
            .map_err(|e| format!("reading the end offset of {p}: {e}"))?;
            ends.insert(p.clone(), high);
        }
        Ok(ends)
    }
}

/// Every record of `topic` from its start, read until none has arrived for `idle` (or `max`
/// were read). Reads as a consumer group of its own that commits nothing.
pub async fn read_topic(
    connection: &Connection,
    topic: &str,
    idle: Duration,
    max: usize,
) -> Result<Vec<SourceRecord>, Error> {
    let group = format!("esm-local-read-{}", crate::clock::now_ms());
    let mut source = KafkaSource::connect(
        connection,
        &[topic.to_owned()],
        &group,
        StartingPosition::TrimHorizon,
    )
    .await?;
    let mut records = Vec::new();
    while records.len() < max {
        let more = source.poll(idle, max - records.len()).await?;
        if more.is_empty() {
            break;
        }
        records.extend(more);
    }
    records.sort_by_key(|r| (r.partition, r.offset));
    Ok(records)
}

/// Creates `topic` with `partitions` partitions unless it exists; says which it was.
pub async fn ensure_topic(
    connection: &Connection,
    topic: &str,
    partitions: i32,
) -> Result<bool, Error> {
    let admin: AdminClient<DefaultClientContext> = connection
        .config()
        .create()
        .map_err(|e| format!("creating the Kafka admin client: {e}"))?;
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let results = admin
        .create_topics(
            [&new],
            &AdminOptions::new().operation_timeout(Some(METADATA_TIMEOUT)),
        )
        .await
        .map_err(|e| format!("creating topic {topic}: {e}"))?;
    match results.into_iter().next() {
        Some(Ok(_)) => Ok(true),
        Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists))) => Ok(false),
        Some(Err((_, code))) => Err(format!("creating topic {topic}: {code}").into()),
        None => Err(format!("creating topic {topic}: no answer").into()),
    }
}

/// Produces records to `topic`; keyed ones land where Java clients would put them, since
/// librdkafka is told to use Kafka's murmur2 partitioner. Returns per partition the count.
pub async fn produce(
    connection: &Connection,
    topic: &str,
    records: &[KeyAndValue],
) -> Result<BTreeMap<i32, usize>, Error> {
    let producer: FutureProducer = connection
        .config()
        .set("partitioner", "murmur2_random")
        .set("enable.idempotence", "true")
        .create()
        .map_err(|e| format!("creating the Kafka producer: {e}"))?;
    let mut counts = BTreeMap::new();
    // One at a time: the order of the file is the order in each partition.
    for (index, (key, value)) in records.iter().enumerate() {
        let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic);
        if let Some(key) = key {
            record = record.key(key.as_slice());
        }
        if let Some(value) = value {
            record = record.payload(value.as_slice());
        }
        let delivery = producer
            .send(record, Duration::from_secs(30))
            .await
            .map_err(|(e, _)| format!("producing record {} to {topic}: {e}", index + 1))?;
        *counts.entry(delivery.partition).or_default() += 1;
    }
    Ok(counts)
}

/// A `kafka://topic` on-failure destination: on-failure documents produced to a topic of the
/// same broker, one record each.
pub struct FailureTopic {
    producer: FutureProducer,
    topic: String,
}

impl FailureTopic {
    /// A producer for `topic` on the broker of `connection`.
    pub fn new(connection: &Connection, topic: &str) -> Result<Self, Error> {
        let producer: FutureProducer = connection
            .config()
            .set("enable.idempotence", "true")
            .create()
            .map_err(|e| format!("creating the Kafka producer for {topic}: {e}"))?;
        Ok(Self {
            producer,
            topic: topic.to_owned(),
        })
    }

    /// The topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Produces one document and waits for the broker's acknowledgement.
    pub async fn send(&self, document: &str) -> Result<(), Error> {
        let record: FutureRecord<'_, [u8], str> = FutureRecord::to(&self.topic).payload(document);
        self.producer
            .send(record, Duration::from_secs(30))
            .await
            .map_err(|(e, _)| format!("producing the on-failure record to {}: {e}", self.topic))?;
        Ok(())
    }
}
