//! The whole stream: the event source mapping emulator reads a topic (a file, or a real
//! broker), invokes the real function binary through the Runtime API, and applies Lambda's
//! rules to its answers, against a real PostgreSQL.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use esm_local::batch::{EventSource, TopicPartition};
use esm_local::function::Function;
use esm_local::on_failure::destination::Destination;
use esm_local::rules::Settings;
use esm_local::runner::{run, PartitionOffsets, RunOptions, RunSummary, Source};
use esm_local::source::file_topic::{FileTopic, LineFormat};
use esm_local::EVENT_SOURCE_ARN;
use serde_json::Value;

use crate::pg::PgServer;
use crate::support::*;

const FUNCTION: &str = env!("CARGO_BIN_EXE_msk-order-enricher");

fn stream_lines() -> String {
    std::fs::read_to_string(fixture_path("stream-orders.jsonl")).unwrap()
}

fn keyed_by_order_no() -> LineFormat {
    LineFormat::Values {
        key_field: Some("OrderNo".into()),
    }
}

fn event_source(bootstrap_servers: &str) -> EventSource {
    EventSource {
        event_source_arn: Some(EVENT_SOURCE_ARN.into()),
        bootstrap_servers: bootstrap_servers.into(),
    }
}

async fn function(database_url: &str, policy: &str) -> Function {
    function_with(database_url, policy, &[]).await
}

async fn function_with(database_url: &str, policy: &str, extra: &[(&str, &str)]) -> Function {
    let mut env = vec![
        ("DATABASE_URL", database_url),
        ("DB_CONNECT_TIMEOUT_MS", "500"),
        ("POISON_RECORD_POLICY", policy),
        ("AWS_LAMBDA_LOG_LEVEL", "error"),
    ];
    env.extend_from_slice(extra);
    let mut function = Function::spawn_with_env(
        PathBuf::from(FUNCTION),
        env.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
    .await
    .unwrap();
    // The function's logs and metrics stay out of the test output.
    function.log_to(PathBuf::from("/dev/null"));
    function
}

fn options(settings: Settings, bootstrap_servers: &str) -> RunOptions {
    let mut options = RunOptions::new(settings, event_source(bootstrap_servers));
    options.timeout = Duration::from_secs(10);
    options.backoff = Duration::from_millis(100);
    options.max_backoff = Duration::from_millis(500);
    options
}

fn read_on_failure(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// The records in an on-failure record's payload: (partition key, offset, decoded value).
fn payload_records(record: &Value) -> Vec<(String, i64, String)> {
    let payload: Value = serde_json::from_str(record["payload"].as_str().unwrap()).unwrap();
    let mut out = Vec::new();
    for (key, records) in payload["records"].as_object().unwrap() {
        for r in records.as_array().unwrap() {
            let value = BASE64.decode(r["value"].as_str().unwrap()).unwrap();
            out.push((
                key.clone(),
                r["offset"].as_i64().unwrap(),
                String::from_utf8(value).unwrap(),
            ));
        }
    }
    out
}

async fn order_numbers(pool: &sqlx::PgPool) -> Vec<String> {
    sqlx::query_scalar("SELECT order_no FROM enriched_orders ORDER BY order_no")
        .fetch_all(pool)
        .await
        .unwrap()
}

async fn dead_letter_offsets(pool: &sqlx::PgPool) -> Vec<(String, i64)> {
    sqlx::query_as("SELECT partition_key, source_offset FROM dead_letters ORDER BY 1, 2")
        .fetch_all(pool)
        .await
        .unwrap()
}

fn all_orders() -> Vec<String> {
    let mut orders: Vec<String> = (1..=10).map(|n| format!("SO-{n:03}")).collect();
    orders.push("SO-901".into());
    orders
}

fn lag(summary: &RunSummary) -> BTreeMap<String, i64> {
    summary
        .partitions
        .iter()
        .map(|(p, progress)| (p.to_string(), progress.lag()))
        .collect()
}

async fn file_topic_run(
    db: &TestDb,
    policy: &str,
    settings: Settings,
    destination: &Destination,
) -> RunSummary {
    let mut source = Source::File(FileTopic::from_lines(
        "orders",
        3,
        &keyed_by_order_no(),
        &stream_lines(),
        now_ms(),
    ));
    let function = function(&db.url, policy).await;
    run_to_the_end(
        &options(settings, "localhost:9092"),
        &mut source,
        function,
        destination,
    )
    .await
}

/// Runs the mapping until it has caught up, then stops the function.
async fn run_to_the_end(
    options: &RunOptions,
    source: &mut Source,
    mut function: Function,
    destination: &Destination,
) -> RunSummary {
    let summary = run(
        options,
        source,
        &mut function,
        destination,
        Arc::new(AtomicBool::new(false)),
    )
    .await
    .unwrap();
    function.stop().await;
    summary
}

fn now_ms() -> i64 {
    esm_local::clock::now_ms()
}

/// Where each order lands in a 3-partition topic (Kafka's partitioner on `OrderNo`), and the
/// poison record `SO-903` between them.
#[test]
fn the_stream_fixture_places_the_poison_record_before_other_orders_of_its_partition() {
    let mut topic = FileTopic::from_lines("orders", 3, &keyed_by_order_no(), &stream_lines(), 0);
    let placed: Vec<(i32, i64, String)> = topic
        .poll()
        .into_iter()
        .map(|r| {
            (
                r.partition,
                r.offset,
                String::from_utf8(r.key.unwrap()).unwrap(),
            )
        })
        .collect();
    let expected = [
        (0, 0, "SO-004"),
        (0, 1, "SO-009"),
        (0, 2, "SO-010"),
        (1, 0, "SO-001"),
        (1, 1, "SO-002"),
        (1, 2, "SO-003"),
        (1, 3, "SO-005"),
        (1, 4, "SO-903"),
        (1, 5, "SO-901"),
        (1, 6, "SO-007"),
        (2, 0, "SO-006"),
        (2, 1, "SO-008"),
    ];
    let expected: Vec<(i32, i64, String)> = expected
        .iter()
        .map(|(p, o, k)| (*p, *o, k.to_string()))
        .collect();
    assert_eq!(placed, expected);
}

#[tokio::test]
async fn file_topic_run_dead_letters_the_poison_record_and_commits_everything() {
    let db = fresh_db().await;
    let summary = file_topic_run(
        &db,
        "dead-letter",
        Settings {
            batch_size: 6,
            ..Settings::default()
        },
        &Destination::None,
    )
    .await;
    assert_eq!(order_numbers(&db.pool).await, all_orders());
    assert_eq!(
        dead_letter_offsets(&db.pool).await,
        vec![("orders-1".to_owned(), 4)]
    );
    // 12 records in two batches of 6, no failures.
    assert_eq!(summary.records_delivered, 12);
    assert_eq!(summary.invocations, 2);
    assert_eq!(
        (
            summary.retries,
            summary.duplicates_redelivered,
            summary.on_failure_batches
        ),
        (0, 0, 0)
    );
    assert_eq!(summary.function_starts, 1);
    assert_eq!(
        summary.partitions[&TopicPartition::new("orders", 1)],
        PartitionOffsets {
            start: 0,
            committed: 7,
            end: 7
        }
    );
    assert_eq!(
        lag(&summary),
        BTreeMap::from([
            ("orders-0".into(), 0),
            ("orders-1".into(), 0),
            ("orders-2".into(), 0)
        ])
    );
    let unknown: Option<String> =
        sqlx::query_scalar("SELECT address FROM enriched_orders WHERE order_no = 'SO-901'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(unknown, None);
}

#[tokio::test]
async fn report_policy_with_two_retries_sends_the_rest_of_the_batch_on_failure() {
    let db = fresh_db().await;
    let dir = tempfile::tempdir().unwrap();
    let on_failure = dir.path().join("on-failure.jsonl");
    let summary = file_topic_run(
        &db,
        "report",
        Settings {
            batch_size: 6,
            maximum_retry_attempts: Some(2),
            ..Settings::default()
        },
        &Destination::File(on_failure.clone()),
    )
    .await;
    let records = read_on_failure(&on_failure);
    assert_eq!(records.len(), 1, "{records:#?}");
    let record = &records[0];
    assert_eq!(
        record["requestContext"]["condition"],
        "RetryAttemptsExhausted"
    );
    // The first delivery and two retries.
    assert_eq!(record["requestContext"]["approximateInvokeCount"], 3);
    assert_eq!(
        record["KafkaBatchInfo"]["bootstrapServers"],
        "localhost:9092"
    );
    let info = &record["KafkaBatchInfo"]["recordsInfo"]["orders-1"];
    assert_eq!(
        (
            info["firstRecordOffset"].as_str(),
            info["lastRecordOffset"].as_str()
        ),
        (Some("4"), Some("6"))
    );
    // The poison record and the orders after it in its batch: orders-1 offsets 4 to 6. That
    // batch held orders-2 offsets 0 and 1 and orders-1 offsets 3 to 6: orders-2 and orders-1
    // offset 3 (SO-005), before the poison record, were written.
    let given_up: Vec<(String, i64)> = payload_records(record)
        .into_iter()
        .map(|(p, o, _)| (p, o))
        .collect();
    assert_eq!(
        given_up,
        vec![
            ("orders-1".to_owned(), 4),
            ("orders-1".to_owned(), 5),
            ("orders-1".to_owned(), 6)
        ]
    );
    assert!(payload_records(record)[0].2.contains("\"SO-903\""));
    // Everything else was processed; SO-901 and SO-007, behind the poison record in its
    // batch, were never written.
    let mut expected = all_orders();
    expected.retain(|o| o != "SO-901" && o != "SO-007");
    assert_eq!(order_numbers(&db.pool).await, expected);
    assert_eq!(dead_letter_offsets(&db.pool).await, vec![]);
    assert_eq!(summary.on_failure_batches, 1);
    assert_eq!(summary.on_failure_records, 3);
    assert_eq!(summary.invocations, 4);
    assert_eq!(summary.retries, 2);
    assert_eq!(summary.duplicates_redelivered, 6);
    assert_eq!(lag(&summary).values().sum::<i64>(), 0);
}

#[tokio::test]
async fn records_older_than_the_maximum_age_go_on_failure_undelivered() {
    let db = fresh_db().await;
    let dir = tempfile::tempdir().unwrap();
    let on_failure = dir.path().join("on-failure.jsonl");
    // Produced two minutes ago; the mapping keeps records for one.
    let produced = now_ms() - 120_000;
    let mut source = Source::File(FileTopic::from_lines(
        "orders",
        3,
        &keyed_by_order_no(),
        &stream_lines(),
        produced,
    ));
    let function = function(&db.url, "dead-letter").await;
    let settings = Settings {
        maximum_record_age: Some(Duration::from_secs(60)),
        ..Settings::default()
    };
    let summary = run_to_the_end(
        &options(settings, "localhost:9092"),
        &mut source,
        function,
        &Destination::File(on_failure.clone()),
    )
    .await;
    let records = read_on_failure(&on_failure);
    assert_eq!(records.len(), 1);
    assert_eq!(
        records[0]["requestContext"]["condition"],
        "RecordAgeExceeded"
    );
    assert_eq!(records[0]["requestContext"]["approximateInvokeCount"], 0);
    assert_eq!(records[0]["KafkaBatchInfo"]["batchSize"], 12);
    assert_eq!(payload_records(&records[0]).len(), 12);
    assert_eq!(summary.invocations, 0);
    assert_eq!(summary.function_starts, 0);
    assert_eq!(count(&db.pool, "enriched_orders").await, 0);
    assert_eq!(lag(&summary).values().sum::<i64>(), 0);
}

/// Batches the mapping gave up on while the database was down, kept in S3 (one object per
/// batch, as Lambda's S3 destination does), replayed into the function: every order written
/// once, exactly as a clean pass would; a second replay (from the JSON lines) changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_given_up_in_an_outage_are_replayed_and_a_second_replay_changes_nothing() {
    use esm_local::on_failure::documents;
    use esm_local::replay::{self, ReplayOptions};

    let reference = fresh_db().await;
    let batches = Settings {
        batch_size: 5,
        maximum_retry_attempts: Some(0),
        ..Settings::default()
    };
    file_topic_run(
        &reference,
        "dead-letter",
        batches.clone(),
        &Destination::None,
    )
    .await;
    // A file topic stamps its records when it is read: compare everything but the timestamp.
    let without_timestamp = |rows: Vec<Vec<Option<String>>>| -> Vec<Vec<Option<String>>> {
        rows.into_iter()
            .map(|mut row| {
                row.remove(15);
                row
            })
            .collect()
    };
    let expected = without_timestamp(orders_content(&reference.pool).await);

    let server = PgServer::start();
    let db = fresh_db_on(&server.url("postgres")).await;
    db.pool.close().await;
    server.stop();
    let dir = tempfile::tempdir().unwrap();
    let on_failure = dir.path().join("on-failure.jsonl");
    let mut source = Source::File(FileTopic::from_lines(
        "orders",
        3,
        &keyed_by_order_no(),
        &stream_lines(),
        now_ms(),
    ));
    let impatient = function_with(&db.url, "dead-letter", &[("DB_RETRY_LIMIT_MS", "300")]).await;
    let summary = run_to_the_end(
        &options(batches, "localhost:9092"),
        &mut source,
        impatient,
        &Destination::File(on_failure.clone()),
    )
    .await;
    assert_eq!(summary.on_failure_records, 12, "{summary:?}");
    let given_up = read_on_failure(&on_failure);
    assert_eq!(
        given_up.len(),
        usize::try_from(summary.on_failure_batches).unwrap()
    );

    server.start_again();
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    assert_eq!(
        count(&pool, "enriched_orders").await,
        0,
        "nothing written in the outage"
    );

    let s3 = crate::moto::s3_client().await;
    s3.create_bucket()
        .bucket("enricher-on-failure")
        .send()
        .await
        .unwrap();
    for (index, document) in given_up.iter().enumerate() {
        s3.put_object()
            .bucket("enricher-on-failure")
            .key(format!("aws/lambda/mapping/orders/{index:03}"))
            .body(document.to_string().into_bytes().into())
            .send()
            .await
            .unwrap();
    }
    let options = ReplayOptions {
        timeout: Duration::from_secs(10),
        maximum_retry_attempts: 0,
        backoff: Duration::from_millis(100),
    };
    let mut function = function(&db.url, "dead-letter").await;
    let from_s3 = documents::documents_from_s3(&s3, "s3://enricher-on-failure/aws/lambda/")
        .await
        .unwrap();
    assert_eq!(from_s3.len(), given_up.len());
    let stop = Arc::new(AtomicBool::new(false));
    let first = replay::replay(
        &from_s3,
        &mut function,
        &options,
        &Destination::None,
        stop.clone(),
    )
    .await
    .unwrap();
    assert_eq!(
        first.iter().map(|r| r.accepted).sum::<u64>(),
        12,
        "{first:?}"
    );
    assert!(first
        .iter()
        .all(|r| r.still_failing == 0 && r.unusable.is_none()));
    assert_eq!(without_timestamp(orders_content(&pool).await), expected);
    assert_eq!(
        dead_letter_offsets(&pool).await,
        dead_letter_offsets(&reference.pool).await
    );

    let snapshot = orders_snapshot(&pool).await;
    let from_file = documents::documents_from_path(&on_failure).unwrap();
    let second = replay::replay(
        &from_file,
        &mut function,
        &options,
        &Destination::None,
        stop,
    )
    .await
    .unwrap();
    function.stop().await;
    assert_eq!(second.iter().map(|r| r.accepted).sum::<u64>(), 12);
    assert_eq!(
        orders_snapshot(&pool).await,
        snapshot,
        "a second replay changed rows"
    );
    assert_eq!(count(&pool, "dead_letters").await, 1);
}

#[tokio::test]
async fn an_sqs_destination_gets_the_metadata_without_the_payload() {
    let db = fresh_db().await;
    let sqs = crate::moto::sqs_client().await;
    let queue_url = sqs
        .create_queue()
        .queue_name("enricher-on-failure")
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let destination = Destination::Sqs {
        client: sqs.clone(),
        queue_url: queue_url.clone(),
    };
    let summary = file_topic_run(
        &db,
        "report",
        Settings {
            batch_size: 6,
            maximum_retry_attempts: Some(0),
            ..Settings::default()
        },
        &destination,
    )
    .await;
    assert_eq!(summary.on_failure_batches, 1);
    let messages = sqs
        .receive_message()
        .queue_url(&queue_url)
        .max_number_of_messages(10)
        .send()
        .await
        .unwrap()
        .messages
        .unwrap_or_default();
    assert_eq!(messages.len(), 1);
    let record: Value = serde_json::from_str(messages[0].body().unwrap()).unwrap();
    assert_eq!(record.get("payload"), None);
    assert_eq!(
        record["requestContext"]["condition"],
        "RetryAttemptsExhausted"
    );
    // No retries: the first delivery was the only one.
    assert_eq!(record["requestContext"]["approximateInvokeCount"], 1);
    let info = &record["KafkaBatchInfo"]["recordsInfo"]["orders-1"];
    assert_eq!(info["firstRecordOffset"], "4");
    assert_eq!(info["lastRecordOffset"], "6");
}

mod broker_tests {
    use super::*;
    use crate::broker::bootstrap_servers;
    use crate::pg::PgServer;
    use esm_local::source::file_topic::KeyAndValue;
    use esm_local::source::kafka::{self, Connection, KafkaSource, StartingPosition};
    use std::sync::atomic::Ordering;

    fn connection() -> Connection {
        Connection {
            bootstrap_servers: bootstrap_servers(),
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
            &bootstrap_servers(),
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
            &options(Settings::default(), &bootstrap_servers()),
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_stream_through_both_sinks_puts_every_order_on_the_output_topic_as_in_the_table() {
        let output = "enriched-stream";
        kafka::ensure_topic(&connection(), output, 2).await.unwrap();
        let db = fresh_db().await;
        let servers = bootstrap_servers();
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
        let mut input =
            FileTopic::from_lines("orders", 3, &keyed_by_order_no(), &stream_lines(), now_ms());
        let placed: BTreeMap<String, (i32, i64)> = input
            .poll()
            .into_iter()
            .map(|r| {
                (
                    String::from_utf8(r.key.unwrap()).unwrap(),
                    (r.partition, r.offset),
                )
            })
            .collect();
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

        let mut reader = source(output, "check-stream").await;
        let mut records = Vec::new();
        let until = std::time::Instant::now() + Duration::from_secs(60);
        while records.len() < 11 && std::time::Instant::now() < until {
            records.extend(reader.poll(Duration::from_millis(500), 100).await.unwrap());
        }
        records.extend(reader.poll(Duration::from_millis(500), 100).await.unwrap());
        let header = |r: &esm_local::batch::SourceRecord, name: &str| -> String {
            let (_, value) = r.headers.iter().find(|(n, _)| n == name).unwrap();
            String::from_utf8(value.clone()).unwrap()
        };
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
        // Records of one input partition that share an output partition keep their order.
        let mut last: BTreeMap<(i32, String), i64> = BTreeMap::new();
        let mut ordered = records.clone();
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
                &bootstrap_servers(),
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
                &bootstrap_servers(),
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
}
