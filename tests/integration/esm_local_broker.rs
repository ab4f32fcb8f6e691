//! Streams through esm-local from a Kafka-compatible broker (tansu) into the real function:
//! a database outage mid-stream, both sinks, the report policy, a `kafka://` on-failure
//! destination.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use esm_local::on_failure::destination::Destination;
use esm_local::rules::Settings;
use esm_local::runner::{run, Source};
use esm_local::source::file_topic::{FileTopic, KeyAndValue};
use esm_local::source::kafka::{self, Connection, KafkaSource, StartingPosition};
use serde_json::Value;

use crate::esm_local_stream::*;
use crate::pg::PgServer;
use crate::support::*;

fn connection() -> Connection {
    Connection {
        bootstrap_servers: crate::broker::bootstrap_servers(),
        properties: vec![],
    }
}

fn lines_of(text: &str) -> Vec<KeyAndValue> {
    let format = keyed_by_order_no();
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| format.split(l))
        .collect()
}

async fn produce(topic: &str, text: &str) {
    kafka::produce(&connection(), topic, &lines_of(text))
        .await
        .unwrap();
}

async fn source(topic: &str, group: &str) -> KafkaSource {
    KafkaSource::connect(
        &connection(),
        &[topic.to_owned()],
        group,
        StartingPosition::TrimHorizon,
    )
    .await
    .unwrap()
}

/// Reconnecting with the group resumes at the committed offsets: the end of each partition.
async fn assert_committed_at_end(topic: &str, group: &str) {
    let resumed = source(topic, group).await;
    let ends = resumed.end_offsets().unwrap();
    assert_eq!(resumed.start_offsets(), ends);
    assert_eq!(ends.values().sum::<i64>(), 12);
}

async fn wait_for(pool: &sqlx::PgPool, orders: i64) {
    let started = std::time::Instant::now();
    while count(pool, "enriched_orders").await < orders {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "waited 60 s for {orders} orders"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_outage_mid_stream_ends_with_every_order_once_as_in_a_clean_pass() {
    let topic = "orders-outage";
    kafka::ensure_topic(&connection(), topic, 3).await.unwrap();
    let text = stream_lines();
    let lines: Vec<&str> = text.lines().collect();
    let (first, second) = lines.split_at(5);

    // The database goes away after the first records are written and comes back later.
    let server = PgServer::start();
    let db = fresh_db_on(&server.url("postgres")).await;
    produce(topic, &first.join("\n")).await;
    let mut run_options = options(
        Settings {
            batch_size: 2,
            ..Settings::default()
        },
        &crate::broker::bootstrap_servers(),
    );
    run_options.follow = true;
    let stop = Arc::new(AtomicBool::new(false));
    let mapping = {
        let (url, stop) = (db.url.clone(), stop.clone());
        tokio::spawn(async move {
            let mut source = Source::Kafka(source(topic, "enricher").await);
            let mut function = function(&url, "dead-letter").await;
            let summary = run(
                &run_options,
                &mut source,
                &mut function,
                &Destination::None,
                stop,
            )
            .await;
            function.stop().await;
            summary.unwrap()
        })
    };
    wait_for(&db.pool, 5).await;
    db.pool.close().await;
    server.stop();
    produce(topic, &second.join("\n")).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    server.start_again();
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    wait_for(&pool, 11).await;
    // Let the last commit land, then stop following.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let summary = mapping.await.unwrap();

    // A clean single pass over the same topic, by another consumer group.
    let clean = fresh_db().await;
    let mut source = Source::Kafka(source(topic, "clean-pass").await);
    let function = function(&clean.url, "dead-letter").await;
    let clean_summary = run_to_the_end(
        &options(Settings::default(), &crate::broker::bootstrap_servers()),
        &mut source,
        function,
        &Destination::None,
    )
    .await;

    assert_eq!(
        orders_content(&pool).await,
        orders_content(&clean.pool).await
    );
    assert_eq!(order_numbers(&pool).await, all_orders());
    let poison = dead_letter_offsets(&pool).await;
    assert_eq!(poison.len(), 1);
    assert_eq!(poison, dead_letter_offsets(&clean.pool).await);
    // The outage was shorter than the function's timeout: the function waited it out
    // inside its invocations, so the mapping saw no failure and spent no retry.
    assert_eq!(
        (
            summary.partial_failures,
            summary.batch_failures,
            summary.retries,
            summary.duplicates_redelivered
        ),
        (0, 0, 0, 0),
        "{summary:?}"
    );
    assert_eq!(summary.records_delivered, 12);
    assert_eq!(summary.on_failure_batches, 0);
    assert_eq!(lag(&summary).values().sum::<i64>(), 0);
    assert_eq!(clean_summary.retries, 0);
    assert_committed_at_end(topic, "enricher").await;
    assert_committed_at_end(topic, "clean-pass").await;
}

/// Where the stream's file topic puts each order: its partition and offset, by order number.
fn placements() -> BTreeMap<String, (i32, i64)> {
    let mut input =
        FileTopic::from_lines("orders", 3, &keyed_by_order_no(), &stream_lines(), now_ms());
    input
        .poll()
        .into_iter()
        .map(|r| {
            (
                String::from_utf8(r.key.unwrap()).unwrap(),
                (r.partition, r.offset),
            )
        })
        .collect()
}

/// The header `name` of `r`, as text.
fn header(r: &esm_local::batch::SourceRecord, name: &str) -> String {
    let (_, value) = r.headers.iter().find(|(n, _)| n == name).unwrap();
    String::from_utf8(value.clone()).unwrap()
}

/// The records of `output` from its start: at least `expected` of them (within 60 s), and
/// whatever arrives in half a second more.
async fn read_output(output: &str, expected: usize) -> Vec<esm_local::batch::SourceRecord> {
    let mut reader = source(output, "check-stream").await;
    let mut records = Vec::new();
    let until = std::time::Instant::now() + Duration::from_secs(60);
    while records.len() < expected && std::time::Instant::now() < until {
        records.extend(reader.poll(Duration::from_millis(500), 100).await.unwrap());
    }
    records.extend(reader.poll(Duration::from_millis(500), 100).await.unwrap());
    records
}

/// Records of one input partition that share an output partition keep their order.
fn assert_input_order_kept(records: &[esm_local::batch::SourceRecord]) {
    let mut last: BTreeMap<(i32, String), i64> = BTreeMap::new();
    let mut ordered = records.to_vec();
    ordered.sort_by_key(|r| (r.partition, r.offset));
    for record in &ordered {
        let source_offset: i64 = header(record, "source-offset").parse().unwrap();
        let previous = last.insert(
            (record.partition, header(record, "source-partition")),
            source_offset,
        );
        assert!(
            previous.is_none_or(|p| p < source_offset),
            "out of order: {ordered:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_through_both_sinks_puts_every_order_on_the_output_topic_as_in_the_table() {
    let output = "enriched-stream";
    kafka::ensure_topic(&connection(), output, 2).await.unwrap();
    let db = fresh_db().await;
    let servers = crate::broker::bootstrap_servers();
    let function = function_with(
        &db.url,
        "dead-letter",
        &[
            ("SINKS", "postgres,kafka"),
            ("KAFKA_BOOTSTRAP_SERVERS", &servers),
            ("OUTPUT_TOPIC", output),
            ("KAFKA_SECURITY_PROTOCOL", "plaintext"),
        ],
    )
    .await;
    let placed = placements();
    let mut stream = Source::File(FileTopic::from_lines(
        "orders",
        3,
        &keyed_by_order_no(),
        &stream_lines(),
        now_ms(),
    ));
    let summary = run_to_the_end(
        &options(
            Settings {
                batch_size: 2,
                ..Settings::default()
            },
            &servers,
        ),
        &mut stream,
        function,
        &Destination::None,
    )
    .await;
    assert_eq!((summary.retries, summary.on_failure_batches), (0, 0));
    assert_eq!(order_numbers(&db.pool).await, all_orders());

    let records = read_output(output, 11).await;
    let mut keys: Vec<String> = records
        .iter()
        .map(|r| String::from_utf8(r.key.clone().unwrap()).unwrap())
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        all_orders(),
        "every good order once, the poison record not"
    );
    for record in &records {
        let key = String::from_utf8(record.key.clone().unwrap()).unwrap();
        let (partition, offset) = placed[&key];
        assert_eq!(
            (
                header(record, "source-topic"),
                header(record, "source-partition"),
                header(record, "source-offset")
            ),
            (
                "orders".to_owned(),
                partition.to_string(),
                offset.to_string()
            ),
            "{key}"
        );
        let value: Value = serde_json::from_slice(record.value.as_deref().unwrap()).unwrap();
        assert_eq!(value["OrderNo"], key.as_str());
        let address: Option<String> =
            sqlx::query_scalar("SELECT address FROM enriched_orders WHERE order_no = $1")
                .bind(&key)
                .fetch_one(&db.pool)
                .await
                .unwrap();
        assert_eq!(value["Address"].as_str(), address.as_deref(), "{key}");
    }
    let so1 = records
        .iter()
        .find(|r| r.key.as_deref() == Some(&b"SO-001"[..]))
        .unwrap();
    let value: Value = serde_json::from_slice(so1.value.as_deref().unwrap()).unwrap();
    assert_eq!(
        (
            value["Address"].as_str(),
            value["Longitude"].to_string(),
            value["Latitude"].to_string()
        ),
        (
            Some("1745 T Street Southeast"),
            "-76.979235".to_owned(),
            "38.867033".to_owned()
        )
    );
    assert_input_order_kept(&records);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_policy_over_a_broker_gives_up_on_the_poison_batch_and_goes_on() {
    let topic = "orders-report";
    kafka::ensure_topic(&connection(), topic, 3).await.unwrap();
    produce(topic, &stream_lines()).await;
    let db = fresh_db().await;
    let dir = tempfile::tempdir().unwrap();
    let on_failure = dir.path().join("on-failure.jsonl");
    let mut source = Source::Kafka(source(topic, "enricher").await);
    let function = function(&db.url, "report").await;
    let summary = run_to_the_end(
        &options(
            Settings {
                batch_size: 6,
                maximum_retry_attempts: Some(2),
                ..Settings::default()
            },
            &crate::broker::bootstrap_servers(),
        ),
        &mut source,
        function,
        &Destination::File(on_failure.clone()),
    )
    .await;

    let records = read_on_failure(&on_failure);
    assert_eq!(records.len(), 1, "{records:#?}");
    assert_eq!(
        records[0]["requestContext"]["condition"],
        "RetryAttemptsExhausted"
    );
    assert_eq!(records[0]["requestContext"]["approximateInvokeCount"], 3);
    let given_up = payload_records(&records[0]);
    // The batch composition depends on how the broker hands records out; what holds is
    // that the given-up records start with the poison record, in its partition.
    assert!(given_up[0].2.contains("\"SO-903\""), "{given_up:?}");
    assert!(given_up.iter().all(|(p, _, _)| p == &given_up[0].0));
    let skipped: Vec<String> = given_up
        .iter()
        .filter_map(|(_, _, value)| {
            let order: Value = serde_json::from_str(value).ok()?;
            Some(order["OrderNo"].as_str()?.to_owned())
        })
        .filter(|no| no != "SO-903")
        .collect();
    let mut expected = all_orders();
    expected.retain(|o| !skipped.contains(o));
    assert_eq!(order_numbers(&db.pool).await, expected);
    assert_eq!(summary.on_failure_batches, 1);
    assert_eq!(
        usize::try_from(summary.on_failure_records).unwrap(),
        given_up.len()
    );
    assert_eq!(lag(&summary).values().sum::<i64>(), 0);
    assert_committed_at_end(topic, "enricher").await;
}

/// A `kafka://` on-failure destination: the given-up batch arrives on that topic of the
/// same broker as one record, the on-failure document with its payload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kafka_destination_gets_the_given_up_batch_with_its_payload() {
    let topic = "orders-to-kafka-destination";
    kafka::ensure_topic(&connection(), topic, 3).await.unwrap();
    kafka::ensure_topic(&connection(), "orders-failed", 1)
        .await
        .unwrap();
    produce(topic, &stream_lines()).await;
    let db = fresh_db().await;
    let mut reading = Source::Kafka(source(topic, "enricher").await);
    let function = function(&db.url, "report").await;
    let destination =
        Destination::Kafka(kafka::FailureTopic::new(&connection(), "orders-failed").unwrap());
    let summary = run_to_the_end(
        &options(
            Settings {
                batch_size: 6,
                maximum_retry_attempts: Some(0),
                ..Settings::default()
            },
            &crate::broker::bootstrap_servers(),
        ),
        &mut reading,
        function,
        &destination,
    )
    .await;
    assert_eq!(summary.on_failure_batches, 1);

    let mut failed = source("orders-failed", "check").await;
    let mut records = Vec::new();
    let started = std::time::Instant::now();
    while records.is_empty() && started.elapsed() < Duration::from_secs(20) {
        records.extend(failed.poll(Duration::from_millis(200), 10).await.unwrap());
    }
    assert_eq!(records.len(), 1, "{records:?}");
    let document: Value = serde_json::from_slice(records[0].value.as_deref().unwrap()).unwrap();
    assert_eq!(
        document["requestContext"]["condition"],
        "RetryAttemptsExhausted"
    );
    let given_up = payload_records(&document);
    assert!(given_up[0].2.contains("\"SO-903\""), "{given_up:?}");
    assert_eq!(
        usize::try_from(summary.on_failure_records).unwrap(),
        given_up.len()
    );
}
