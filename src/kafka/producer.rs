//! The output topic's producer: one idempotent librdkafka producer per execution environment,
//! built at init (no network), reused by every invocation, and built again after a fatal
//! error, a refused connection, or when its MSK IAM token would expire before the next
//! refresh (an environment frozen for longer than the token lives).
//!
//! An invocation enqueues its records partition by partition in offset order, then waits for
//! every delivery report, never past its deadline. A partition whose record was not delivered
//! is reported from that record; the partition's later records are not enqueued once a failure
//! is known. Records still queued at the deadline are purged so that they are not sent after
//! the function has answered; records already sent may still be acknowledged, and the
//! redelivery then produces them again (at least once: the source headers identify them).

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::client::{ClientContext, OAuthToken};
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer as _, PurgeConfig, ThreadedProducer};
use rdkafka::types::RDKafkaRespErr;
use tokio::sync::Notify;

use crate::config::credentials::KafkaUser;
use crate::config::{KafkaSink, SaslMechanism};
use crate::kafka::delivery::{Deliveries, Delivery, OpenBatch};
use crate::kafka::msk_iam;
use crate::kafka::records::{PartitionRecords, Record, Topic, Undelivered};
use crate::lambda::deadline::millis;
use crate::locks::lock;

/// Rebuild the producer when its token has less than this left: librdkafka refreshes at 80%
/// of the lifetime, so only a frozen environment gets this close.
const TOKEN_MIN_LEFT: Duration = Duration::from_secs(60);

/// The longest the first invocation spends asking the brokers whether the topics exist.
const METADATA_TIMEOUT: Duration = Duration::from_secs(5);

/// Below the brokers' own idle limit (Kafka's and MSK's default is 10 minutes), so that the
/// client closes idle connections before the broker does and never writes to a dead socket.
const CONNECTIONS_MAX_IDLE_MS: &str = "300000";

/// New producers one invocation may build after fatal errors before it reports the records.
const MAX_REBUILDS: usize = 2;

/// The `client.id` the brokers see.
const CLIENT_ID: &str = "msk-order-enricher";

/// Why the producer could not be built (a setting librdkafka refuses).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the Kafka producer could not be created: {0}")]
pub struct ProducerError(String);

/// What producing an invocation's records did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ProduceReport {
    /// Records acknowledged by the brokers.
    pub delivered: usize,
    /// Per partition, the first record that was not delivered.
    pub undelivered: Vec<Undelivered>,
    /// Milliseconds from the first enqueue to the last delivery report.
    pub produce_ms: u64,
}

/// One round of enqueueing and waiting.
struct Round {
    delivered: usize,
    /// This producer cannot deliver any more (fatal error, or its id or epoch refused).
    producer_lost: bool,
    /// Per partition: the position (in its records) and report of the first undelivered one.
    failed: Vec<Option<(usize, Undelivered)>>,
}

/// The output topic and the producer that writes to it.
pub(crate) struct Producer {
    sink: KafkaSink,
    user: Option<KafkaUser>,
    current: Mutex<Arc<Built>>,
    topics_confirmed: AtomicBool,
}

/// A producer and what its callbacks learned.
struct Built {
    producer: ThreadedProducer<Callbacks>,
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    /// Expiry of the last MSK IAM token (epoch ms); 0 before the first.
    token_expires_at_ms: AtomicI64,
    /// Set after a fatal error or a refused authentication: the next invocation builds anew.
    broken: AtomicBool,
    /// The brokers refused the connection (authentication, or a certificate that does not
    /// verify): no delivery report is coming, stop waiting for them.
    refused: Notify,
    /// The last error librdkafka reported for the client (not for a record), for the reasons.
    last_error: Mutex<Option<String>>,
    /// Each record's delivery report, written by librdkafka's polling thread.
    deliveries: Deliveries,
}

/// librdkafka's callbacks, on its own threads.
struct Callbacks {
    iam: bool,
    shared: Arc<Shared>,
}

impl ClientContext for Callbacks {
    const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;

    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => tracing::error!(facility, "librdkafka: {message}"),
            RDKafkaLogLevel::Warning => tracing::warn!(facility, "librdkafka: {message}"),
            _ => tracing::debug!(facility, "librdkafka: {message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(error = %error, "Kafka client error: {reason}");
        if let Ok(mut last) = self.shared.last_error.lock() {
            *last = Some(reason.to_owned());
        }
        let refused = match error.rdkafka_error_code() {
            Some(RDKafkaErrorCode::Authentication) => true,
            // Other TLS errors can be a connection cut mid-handshake; these cannot.
            Some(RDKafkaErrorCode::SSL) => reason.contains("certificate verify failed"),
            _ => false,
        };
        if refused {
            self.shared.broken.store(true, Ordering::Relaxed);
            self.shared.refused.notify_one();
        }
    }

    // Called on librdkafka's thread, which waits for the answer: signing is synchronous and
    // needs no network (the credentials are the role's, in the environment).
    fn generate_oauth_token(
        &self,
        _config: Option<&str>,
    ) -> Result<OAuthToken, Box<dyn std::error::Error>> {
        if !self.iam {
            return Err("OAUTHBEARER is only used for AWS_MSK_IAM".into());
        }
        let (credentials, region) = msk_iam::credentials_from(|name| std::env::var(name).ok())?;
        let token = msk_iam::sign_token(&credentials, &region, SystemTime::now())?;
        self.shared
            .token_expires_at_ms
            .store(token.expires_at_ms, Ordering::Relaxed);
        Ok(OAuthToken {
            token: token.value,
            principal_name: CLIENT_ID.to_owned(),
            lifetime_ms: token.expires_at_ms,
        })
    }
}

impl rdkafka::producer::ProducerContext for Callbacks {
    /// The record's batch and slot (see `delivery`): no allocation per record.
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &rdkafka::message::DeliveryResult<'_>, opaque: usize) {
        self.shared.deliveries.report(
            opaque,
            result.as_ref().map(|_| ()).map_err(|(error, _)| error),
        );
    }
}

impl Producer {
    /// Builds the producer (no connection yet: it connects on the first record).
    pub(crate) fn new(sink: KafkaSink, user: Option<KafkaUser>) -> Result<Self, ProducerError> {
        let built = build(&sink, user.as_ref())?;
        Ok(Self {
            sink,
            user,
            current: Mutex::new(Arc::new(built)),
            topics_confirmed: AtomicBool::new(false),
        })
    }

    /// Produces `partitions`' records and waits for their delivery reports until `deadline`
    /// (or `KAFKA_DELIVERY_TIMEOUT_MS` when there is none).
    pub(crate) async fn produce(
        &self,
        partitions: &[PartitionRecords],
        deadline: Option<Instant>,
    ) -> ProduceReport {
        let mut report = ProduceReport::default();
        if partitions.iter().all(|p| p.records.is_empty()) {
            return report;
        }
        let end = deadline.unwrap_or_else(|| Instant::now() + self.sink.delivery_timeout);
        let built = self.ready().await;
        let started = Instant::now();
        if !self.topics_confirmed.load(Ordering::Relaxed) {
            match self.check_topics(&built, end).await {
                Ok(confirmed) => self.topics_confirmed.store(confirmed, Ordering::Relaxed),
                Err(reason) => {
                    report.undelivered = partitions
                        .iter()
                        .filter_map(|p| p.records.first().map(|r| (p, r.offset)))
                        .map(|(p, offset)| Undelivered {
                            partition: p.key.clone(),
                            offset,
                            reason: reason.clone(),
                        })
                        .collect();
                    return report;
                }
            }
        }

        // Where each partition starts: its first record, then after a fatal error the first
        // record that was not delivered.
        let mut starts: Vec<Option<usize>> = vec![Some(0); partitions.len()];
        let mut built = built;
        let mut failed;
        let mut rebuilds = 0;
        loop {
            let attempt = self.attempt(&built, partitions, &starts, end).await;
            report.delivered += attempt.delivered;
            failed = attempt.failed;
            // A fatal error, or a broker that no longer accepts this producer's id or epoch,
            // ends this producer, not the brokers: a new one can still deliver in time.
            if !attempt.producer_lost || rebuilds == MAX_REBUILDS || Instant::now() >= end {
                break;
            }
            rebuilds += 1;
            built = self.ready().await;
            starts = failed
                .iter()
                .map(|slot| slot.as_ref().map(|(position, _)| *position))
                .collect();
            tracing::warn!(
                partitions = starts.iter().flatten().count(),
                "producing the undelivered records again with a new producer"
            );
        }
        report.undelivered = failed
            .into_iter()
            .flatten()
            .map(|(_, undelivered)| undelivered)
            .collect();
        report.produce_ms = millis(started.elapsed());
        report
    }

    /// Enqueues each partition's records from `starts[i]` on and waits for their reports.
    async fn attempt(
        &self,
        built: &Built,
        partitions: &[PartitionRecords],
        starts: &[Option<usize>],
        end: Instant,
    ) -> Round {
        let mut failed: Vec<Option<(usize, Undelivered)>> = vec![None; partitions.len()];
        let enqueue_started = Instant::now();
        let capacity = partitions.iter().map(|p| p.records.len()).sum();
        let batch = built.shared.deliveries.open(capacity);
        let slots = self
            .enqueue(built, &batch, partitions, starts, end, &mut failed)
            .await;
        tracing::debug!(
            records = slots.len(),
            enqueue_ms = millis(enqueue_started.elapsed()),
            "records handed to the producer"
        );
        let refused = wait_for_reports(built, &batch, end).await;
        let tally = self.tally(
            built,
            &batch,
            partitions,
            &slots,
            refused.as_deref(),
            &mut failed,
        );
        if tally.out_of_time {
            // Not sent yet: never sent after the answer. Sent ones may still be acknowledged;
            // their reports find the batch closed. The purged records keep the sequence
            // numbers they were given when enqueued (librdkafka only skips them for an aborted
            // transaction), so the partition's next records would follow a gap the brokers
            // refuse: the next invocation starts with a new producer, a new id.
            built.producer.purge(PurgeConfig::default().queue());
            built.shared.broken.store(true, Ordering::Relaxed);
        }
        let mut producer_lost = tally.producer_lost;
        if let Some((code, reason)) = built.producer.client().fatal_error() {
            tracing::error!(code = ?code, "the producer hit a fatal error ({reason}); building a new one");
            producer_lost = true;
        }
        if producer_lost {
            built.shared.broken.store(true, Ordering::Relaxed);
        }
        Round {
            delivered: tally.delivered,
            failed,
            producer_lost,
        }
    }

    /// Hands each partition's records from `starts[i]` on to librdkafka, waiting while its
    /// queue is full (until `end`). A record that cannot be enqueued is its partition's
    /// failure, and the partition's later records are not enqueued. Returns each enqueued
    /// record's slot: its partition's index and its position there.
    async fn enqueue(
        &self,
        built: &Built,
        batch: &OpenBatch<'_>,
        partitions: &[PartitionRecords],
        starts: &[Option<usize>],
        end: Instant,
        failed: &mut [Option<(usize, Undelivered)>],
    ) -> Vec<(usize, usize)> {
        let capacity = partitions.iter().map(|p| p.records.len()).sum();
        let mut slots: Vec<(usize, usize)> = Vec::with_capacity(capacity);
        'partitions: for (index, partition) in partitions.iter().enumerate() {
            let Some(first) = starts.get(index).copied().flatten() else {
                continue;
            };
            for (position, record) in partition.records.iter().enumerate().skip(first) {
                let Some(topic) = self.topic_for(record.destination) else {
                    continue;
                };
                let undelivered = |reason: String| Undelivered {
                    partition: partition.key.clone(),
                    offset: record.offset,
                    reason,
                };
                let Some(opaque) = batch.expect(slots.len()) else {
                    // More records than one batch counts (2^32): the rest go next time.
                    first_failure(&mut failed[index], position, || {
                        undelivered("more records than one invocation can produce".to_owned())
                    });
                    continue 'partitions;
                };
                match send(&built.producer, message(topic, opaque, record), end).await {
                    Ok(()) => slots.push((index, position)),
                    Err(error) => {
                        batch.not_enqueued();
                        let reason = self.describe(&error, built, topic);
                        first_failure(&mut failed[index], position, || undelivered(reason));
                        continue 'partitions;
                    }
                }
            }
        }
        slots
    }

    /// What the reports of the enqueued records say: how many were delivered, and each
    /// partition's first record that was not (kept in `failed`, with the reason).
    fn tally(
        &self,
        built: &Built,
        batch: &OpenBatch<'_>,
        partitions: &[PartitionRecords],
        slots: &[(usize, usize)],
        refused: Option<&str>,
        failed: &mut [Option<(usize, Undelivered)>],
    ) -> Tally {
        let mut tally = Tally::default();
        for (slot, &(index, position)) in slots.iter().enumerate() {
            let partition = &partitions[index];
            let record = &partition.records[position];
            // Records after a known failure of their partition are redelivered anyway; the
            // ones before it still decide where the partition is reported from.
            if failed[index]
                .as_ref()
                .is_some_and(|(failed_at, _)| *failed_at < position)
            {
                continue;
            }
            let reason = match batch.outcome(slot) {
                Delivery::Delivered => {
                    tally.delivered += 1;
                    continue;
                }
                Delivery::Failed(error) => {
                    tally.producer_lost |=
                        error.rdkafka_error_code().is_some_and(ends_the_producer);
                    let topic = self.topic_for(record.destination).unwrap_or_default();
                    self.describe(&error, built, topic)
                }
                Delivery::Pending => {
                    tally.out_of_time = true;
                    match refused {
                        Some(reason) => reason.to_owned(),
                        None => no_report_in_time(built),
                    }
                }
            };
            first_failure(&mut failed[index], position, || Undelivered {
                partition: partition.key.clone(),
                offset: record.offset,
                reason,
            });
        }
        tally
    }

    /// The producer to use, built again first when the last one broke or its token is stale.
    async fn ready(&self) -> Arc<Built> {
        let current = Arc::clone(&lock(&self.current));
        let stale_token = self.sink.sasl == Some(SaslMechanism::AwsMskIam)
            && token_is_stale(
                current.shared.token_expires_at_ms.load(Ordering::Relaxed),
                epoch_ms(),
            );
        if !current.shared.broken.load(Ordering::Relaxed) && !stale_token {
            return current;
        }
        match build(&self.sink, self.user.as_ref()) {
            Ok(fresh) => {
                let fresh = Arc::new(fresh);
                let old = std::mem::replace(&mut *lock(&self.current), Arc::clone(&fresh));
                tracing::info!(stale_token, "Kafka producer built again");
                // Dropping a producer purges and flushes for up to 500 ms: not on this thread.
                drop(current);
                tokio::task::spawn_blocking(move || drop(old));
                fresh
            }
            Err(error) => {
                tracing::error!("{error}; keeping the previous producer");
                current
            }
        }
    }

    /// Asks the brokers whether the topics exist. `Err` when they say one does not; `Ok(false)`
    /// when they could not be asked (the deliveries then wait for the brokers).
    async fn check_topics(&self, built: &Arc<Built>, end: Instant) -> Result<bool, String> {
        let timeout = end
            .saturating_duration_since(Instant::now())
            .min(METADATA_TIMEOUT);
        let mut topics = vec![("OUTPUT_TOPIC", self.sink.topic.clone())];
        if let Some(topic) = &self.sink.dead_letter_topic {
            topics.push(("DEAD_LETTER_TOPIC", topic.clone()));
        }
        let built = Arc::clone(built);
        let servers = self.sink.bootstrap_servers.clone();
        let answer = tokio::task::spawn_blocking(move || {
            for (variable, topic) in topics {
                let metadata = match built.producer.client().fetch_metadata(Some(&topic), timeout) {
                    Ok(metadata) => metadata,
                    Err(error) => {
                        tracing::warn!(error = %error, "could not read the topics' metadata; producing anyway");
                        return Ok(false);
                    }
                };
                let error = metadata
                    .topics()
                    .iter()
                    .find(|t| t.name() == topic)
                    .map_or(Some(RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART), |t| t.error());
                match error {
                    None => {}
                    Some(RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) => {
                        return Err(format!(
                            "{variable} {topic:?} does not exist on the brokers of KAFKA_BOOTSTRAP_SERVERS ({servers})"
                        ))
                    }
                    Some(RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED) => {
                        return Err(format!(
                            "{variable} {topic:?}: the function may not describe it (kafka-cluster:DescribeTopic)"
                        ))
                    }
                    Some(other) => {
                        return Err(format!(
                            "{variable} {topic:?}: the brokers answered {:?}",
                            RDKafkaErrorCode::from(other)
                        ))
                    }
                }
            }
            Ok(true)
        })
        .await;
        answer.unwrap_or(Ok(false))
    }

    /// The topic a record goes to; `None` for a dead letter when there is no dead-letter topic
    /// (the dead letters then go to the database).
    fn topic_for(&self, destination: Topic) -> Option<&str> {
        match destination {
            Topic::Orders => Some(self.sink.topic.as_str()),
            Topic::DeadLetters => self.sink.dead_letter_topic.as_deref(),
        }
    }

    /// A record's failure, with the setting or permission to check.
    fn describe(&self, error: &KafkaError, built: &Built, topic: &str) -> String {
        let hint = match error.rdkafka_error_code() {
            Some(RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic) => {
                format!(" (topic {topic:?} does not exist on KAFKA_BOOTSTRAP_SERVERS: check OUTPUT_TOPIC and DEAD_LETTER_TOPIC)")
            }
            Some(RDKafkaErrorCode::TopicAuthorizationFailed) => {
                format!(" (the function may not write to {topic:?}: kafka-cluster:WriteData)")
            }
            Some(RDKafkaErrorCode::ClusterAuthorizationFailed) => {
                " (the idempotent producer needs kafka-cluster:WriteDataIdempotently on the cluster)"
                    .to_owned()
            }
            Some(RDKafkaErrorCode::MessageTimedOut) => {
                let mut hint = " (not acknowledged within KAFKA_DELIVERY_TIMEOUT_MS".to_owned();
                if let Some(last) = last_error(built) {
                    hint.push_str(&format!("; the client's last error: {last}"));
                }
                hint.push(')');
                hint
            }
            _ => String::new(),
        };
        format!("{error}{hint}")
    }
}

/// Errors after which the brokers will not take records from this producer's id and epoch
/// (after a leader change or a long idle, or a broker that does not support bumping the epoch):
/// only a new producer, with a new id, can deliver.
fn ends_the_producer(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::ProducerFenced
            | RDKafkaErrorCode::InvalidProducerEpoch
            | RDKafkaErrorCode::InvalidProducerIdMapping
            | RDKafkaErrorCode::UnknownProducerId
            | RDKafkaErrorCode::OutOfOrderSequenceNumber
            | RDKafkaErrorCode::Fatal
    )
}

/// Whether a token expiring at `expires_at_ms` (0: none issued yet) is too close to expiry at
/// `now_ms` to be used: by the wall clock, which keeps running while the environment is frozen.
fn token_is_stale(expires_at_ms: i64, now_ms: i64) -> bool {
    let min_left_ms = i64::try_from(TOKEN_MIN_LEFT.as_millis()).unwrap_or(i64::MAX);
    expires_at_ms != 0 && expires_at_ms.saturating_sub(now_ms) < min_left_ms
}

/// Keeps the failure at the earliest position of a partition.
fn first_failure(
    slot: &mut Option<(usize, Undelivered)>,
    position: usize,
    undelivered: impl FnOnce() -> Undelivered,
) {
    if slot.as_ref().is_none_or(|(at, _)| position < *at) {
        *slot = Some((position, undelivered()));
    }
}

/// What the delivery reports of one attempt said, beyond each partition's first failure.
#[derive(Default)]
struct Tally {
    delivered: usize,
    /// A report said this producer cannot deliver any more.
    producer_lost: bool,
    /// Some records had no report by the deadline.
    out_of_time: bool,
}

/// `record` as librdkafka takes it, to `topic`, its delivery report going to slot `opaque`.
fn message<'r>(
    topic: &'r str,
    opaque: usize,
    record: &'r Record,
) -> BaseRecord<'r, [u8], [u8], usize> {
    let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
    for (name, value) in &record.headers {
        headers = headers.insert(Header {
            key: name,
            value: value.as_deref(),
        });
    }
    let mut message =
        BaseRecord::<[u8], [u8], usize>::with_opaque_to(topic, opaque).headers(headers);
    if let Some(key) = &record.key {
        message = message.key(&key[..]);
    }
    if let Some(value) = &record.value {
        message = message.payload(&value[..]);
    }
    message
}

/// Enqueues `message`; while librdkafka's queue is full, waits for deliveries to make room,
/// until `end`.
async fn send(
    producer: &ThreadedProducer<Callbacks>,
    mut message: BaseRecord<'_, [u8], [u8], usize>,
    end: Instant,
) -> Result<(), KafkaError> {
    loop {
        match producer.send(message) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back))
                if Instant::now() < end =>
            {
                message = back;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err((error, _)) => return Err(error),
        }
    }
}

/// Waits once for every report of `batch`, cut short by `end` or a refused connection, whose
/// reason it returns.
async fn wait_for_reports(built: &Built, batch: &OpenBatch<'_>, end: Instant) -> Option<String> {
    tokio::select! {
        () = batch.all_reported() => None,
        () = tokio::time::sleep_until(end.into()) => None,
        () = built.shared.refused.notified() => Some(format!(
            "the brokers refused the connection: {} (check KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_MECHANISM, KAFKA_SECRET_ARN and KAFKA_SSL_CA_LOCATION, or the role's kafka-cluster:Connect permission)",
            last_error(built).unwrap_or_else(|| "no reason given".to_owned())
        )),
    }
}

/// Why a record has no delivery report at the deadline, with the client's last error if any.
fn no_report_in_time(built: &Built) -> String {
    let mut reason =
        "no delivery report before the deadline (the function's timeout minus DEADLINE_MARGIN_MS)"
            .to_owned();
    if let Some(error) = last_error(built) {
        reason.push_str(&format!("; the client's last error: {error}"));
    }
    reason
}

fn last_error(built: &Built) -> Option<String> {
    built
        .shared
        .last_error
        .lock()
        .ok()
        .and_then(|last| last.clone())
}

fn build(sink: &KafkaSink, user: Option<&KafkaUser>) -> Result<Built, ProducerError> {
    let shared = Arc::new(Shared::default());
    let callbacks = Callbacks {
        iam: sink.sasl == Some(SaslMechanism::AwsMskIam),
        shared: Arc::clone(&shared),
    };
    let producer = client_config(sink, user)
        .create_with_context(callbacks)
        .map_err(|error| ProducerError(error.to_string()))?;
    Ok(Built { producer, shared })
}

/// The producer's librdkafka settings.
fn client_config(sink: &KafkaSink, user: Option<&KafkaUser>) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &sink.bootstrap_servers)
        .set("client.id", CLIENT_ID)
        // Idempotence keeps each partition's records in order and without duplicates across
        // the client's own retries; it implies acks=all, which is set for clarity.
        .set("enable.idempotence", "true")
        .set("acks", "all")
        // lz4: compiled into librdkafka (no further C library in the binary), and the
        // cheapest on CPU of the codecs for JSON, where Lambda pays for every millisecond.
        .set("compression.type", "lz4")
        // Every invocation enqueues its whole batch at once and then waits for it: lingering
        // would only hold back the last request. Records still batch up behind the requests
        // in flight (end_to_end, 10,000 records: produce_ms 26-45 with 5 ms, 17-29 with 0).
        .set("linger.ms", "0")
        // Kafka's Java partitioner: an order lands where any Java or Kafka Streams client
        // keyed by its number would put it.
        .set("partitioner", "murmur2_random")
        .set(
            "message.timeout.ms",
            sink.delivery_timeout.as_millis().to_string(),
        )
        // A frozen and thawed environment may hold sockets the network has forgotten.
        .set("socket.keepalive.enable", "true")
        .set("connections.max.idle.ms", CONNECTIONS_MAX_IDLE_MS)
        .set("reconnect.backoff.max.ms", "1000")
        // A mistyped topic must fail, not be created.
        .set("allow.auto.create.topics", "false")
        .set("security.protocol", sink.protocol.as_str());
    if sink.protocol.uses_tls() {
        match &sink.ca_location {
            Some(path) => config.set("ssl.ca.location", path.to_string_lossy()),
            // The binary's OpenSSL is vendored: let librdkafka find the system's roots.
            None => config.set("ssl.ca.location", "probe"),
        };
    }
    match sink.sasl {
        None => {}
        Some(SaslMechanism::AwsMskIam) => {
            config.set("sasl.mechanism", "OAUTHBEARER");
        }
        Some(mechanism) => {
            config.set("sasl.mechanism", mechanism.as_str());
            if let Some(user) = user {
                config
                    .set("sasl.username", &user.username)
                    .set("sasl.password", &user.password);
            }
        }
    }
    config
}

fn epoch_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::KafkaProtocol;

    fn sink(protocol: KafkaProtocol, sasl: Option<SaslMechanism>) -> KafkaSink {
        KafkaSink {
            bootstrap_servers: "b-1:9098,b-2:9098".into(),
            topic: "enriched-orders".into(),
            dead_letter_topic: None,
            protocol,
            sasl,
            secret_arn: None,
            ca_location: None,
            delivery_timeout: Duration::from_secs(120),
        }
    }

    fn settings(config: &ClientConfig, names: &[&str]) -> Vec<Option<String>> {
        names
            .iter()
            .map(|name| config.get(name).map(str::to_owned))
            .collect()
    }

    #[test]
    fn the_producer_is_idempotent_with_acks_all_lz4_and_the_delivery_timeout() {
        let config = client_config(&sink(KafkaProtocol::Plaintext, None), None);
        assert_eq!(
            settings(
                &config,
                &[
                    "bootstrap.servers",
                    "enable.idempotence",
                    "acks",
                    "compression.type",
                    "message.timeout.ms",
                    "allow.auto.create.topics",
                    "partitioner",
                    "socket.keepalive.enable",
                    "connections.max.idle.ms",
                    "security.protocol",
                    "sasl.mechanism",
                    "ssl.ca.location",
                ]
            ),
            [
                Some("b-1:9098,b-2:9098"),
                Some("true"),
                Some("all"),
                Some("lz4"),
                Some("120000"),
                Some("false"),
                Some("murmur2_random"),
                Some("true"),
                Some("300000"),
                Some("plaintext"),
                None,
                None,
            ]
            .map(|v| v.map(str::to_owned))
        );
    }

    #[test]
    fn msk_iam_uses_oauthbearer_over_tls_with_the_system_roots() {
        let config = client_config(
            &sink(KafkaProtocol::SaslSsl, Some(SaslMechanism::AwsMskIam)),
            None,
        );
        assert_eq!(
            settings(
                &config,
                &[
                    "security.protocol",
                    "sasl.mechanism",
                    "ssl.ca.location",
                    "sasl.username"
                ]
            ),
            [Some("sasl_ssl"), Some("OAUTHBEARER"), Some("probe"), None]
                .map(|v| v.map(str::to_owned))
        );
    }

    #[test]
    fn scram_takes_the_user_from_the_secret() {
        let user = KafkaUser {
            username: "enricher".into(),
            password: "pw".into(),
        };
        let mut scram = sink(KafkaProtocol::SaslSsl, Some(SaslMechanism::ScramSha512));
        scram.ca_location = Some("/etc/msk-ca.pem".into());
        let config = client_config(&scram, Some(&user));
        assert_eq!(
            settings(
                &config,
                &[
                    "sasl.mechanism",
                    "sasl.username",
                    "sasl.password",
                    "ssl.ca.location"
                ]
            ),
            [
                Some("SCRAM-SHA-512"),
                Some("enricher"),
                Some("pw"),
                Some("/etc/msk-ca.pem")
            ]
            .map(|v| v.map(str::to_owned))
        );
    }

    #[test]
    fn a_partition_is_reported_from_its_earliest_failure_whatever_order_they_are_learnt_in() {
        let failure = |offset| {
            move || Undelivered {
                partition: crate::decode::event::PartitionKey::new("orders-0"),
                offset,
                reason: format!("at {offset}"),
            }
        };
        let mut slot = None;
        first_failure(&mut slot, 5, failure(105));
        first_failure(&mut slot, 2, failure(102));
        first_failure(&mut slot, 3, failure(103));
        assert_eq!(slot.map(|(at, u)| (at, u.offset)), Some((2, 102)));
    }

    #[test]
    fn a_token_that_a_freeze_brought_close_to_expiry_is_replaced() {
        let issued = 1_796_126_400_000;
        let expires = issued + 900_000;
        assert!(
            !token_is_stale(0, issued),
            "no token yet: librdkafka asks for one"
        );
        assert!(!token_is_stale(expires, issued + 720_000), "3 minutes left");
        assert!(token_is_stale(expires, issued + 850_000), "50 s left");
        assert!(
            token_is_stale(expires, issued + 3_600_000),
            "thawed an hour later"
        );
    }

    #[test]
    fn errors_that_end_a_producer_id_are_told_from_broker_trouble() {
        assert!(ends_the_producer(RDKafkaErrorCode::ProducerFenced));
        assert!(ends_the_producer(
            RDKafkaErrorCode::OutOfOrderSequenceNumber
        ));
        assert!(!ends_the_producer(RDKafkaErrorCode::MessageTimedOut));
        assert!(!ends_the_producer(RDKafkaErrorCode::NotLeaderForPartition));
    }
}
