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

pub(crate) fn stream_lines() -> String {
    std::fs::read_to_string(fixture_path("stream-orders.jsonl")).unwrap()
}

pub(crate) fn keyed_by_order_no() -> LineFormat {
    LineFormat::Values {
        key_field: Some("OrderNo".into()),
    }
}

pub(crate) fn event_source(bootstrap_servers: &str) -> EventSource {
    EventSource {
        event_source_arn: Some(EVENT_SOURCE_ARN.into()),
        bootstrap_servers: bootstrap_servers.into(),
    }
}

pub(crate) async fn function(database_url: &str, policy: &str) -> Function {
    function_with(database_url, policy, &[]).await
}

pub(crate) async fn function_with(
    database_url: &str,
    policy: &str,
    extra: &[(&str, &str)],
) -> Function {
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

pub(crate) fn options(settings: Settings, bootstrap_servers: &str) -> RunOptions {
    let mut options = RunOptions::new(settings, event_source(bootstrap_servers));
    options.timeout = Duration::from_secs(10);
    options.backoff = Duration::from_millis(100);
    options.max_backoff = Duration::from_millis(500);
    options
}

pub(crate) fn read_on_failure(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// The records in an on-failure record's payload: (partition key, offset, decoded value).
pub(crate) fn payload_records(record: &Value) -> Vec<(String, i64, String)> {
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

pub(crate) async fn order_numbers(pool: &sqlx::PgPool) -> Vec<String> {
    sqlx::query_scalar("SELECT order_no FROM enriched_orders ORDER BY order_no")
        .fetch_all(pool)
        .await
        .unwrap()
}

pub(crate) async fn dead_letter_offsets(pool: &sqlx::PgPool) -> Vec<(String, i64)> {
    sqlx::query_as("SELECT partition_key, source_offset FROM dead_letters ORDER BY 1, 2")
        .fetch_all(pool)
        .await
        .unwrap()
}

pub(crate) fn all_orders() -> Vec<String> {
    let mut orders: Vec<String> = (1..=10).map(|n| format!("SO-{n:03}")).collect();
    orders.push("SO-901".into());
    orders
}

pub(crate) fn lag(summary: &RunSummary) -> BTreeMap<String, i64> {
    summary
        .partitions
        .iter()
        .map(|(p, progress)| (p.to_string(), progress.lag()))
        .collect()
}

pub(crate) async fn file_topic_run(
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
pub(crate) async fn run_to_the_end(
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

pub(crate) fn now_ms() -> i64 {
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

/// The rows without `source_timestamp`: a file topic stamps its records when it is read.
fn without_timestamp(rows: Vec<Vec<Option<String>>>) -> Vec<Vec<Option<String>>> {
    rows.into_iter()
        .map(|mut row| {
            row.remove(15);
            row
        })
        .collect()
}

/// The stream run against a database that is down, each batch given up on at once: every
/// record goes to the on-failure file at `on_failure`, whose documents it returns.
async fn give_up_every_batch(
    database_url: &str,
    batches: Settings,
    on_failure: &Path,
) -> Vec<Value> {
    let mut source = Source::File(FileTopic::from_lines(
        "orders",
        3,
        &keyed_by_order_no(),
        &stream_lines(),
        now_ms(),
    ));
    let impatient =
        function_with(database_url, "dead-letter", &[("DB_RETRY_LIMIT_MS", "300")]).await;
    let summary = run_to_the_end(
        &options(batches, "localhost:9092"),
        &mut source,
        impatient,
        &Destination::File(on_failure.to_path_buf()),
    )
    .await;
    assert_eq!(summary.on_failure_records, 12, "{summary:?}");
    let given_up = read_on_failure(on_failure);
    assert_eq!(
        given_up.len(),
        usize::try_from(summary.on_failure_batches).unwrap()
    );
    given_up
}

/// The on-failure documents put where Lambda's S3 destination puts them, in moto's S3.
async fn upload_to_s3(documents: &[Value]) -> aws_sdk_s3::Client {
    let s3 = crate::moto::s3_client().await;
    s3.create_bucket()
        .bucket("enricher-on-failure")
        .send()
        .await
        .unwrap();
    for (index, document) in documents.iter().enumerate() {
        s3.put_object()
            .bucket("enricher-on-failure")
            .key(format!("aws/lambda/mapping/orders/{index:03}"))
            .body(document.to_string().into_bytes().into())
            .send()
            .await
            .unwrap();
    }
    s3
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
    let expected = without_timestamp(orders_content(&reference.pool).await);

    let server = PgServer::start();
    let db = fresh_db_on(&server.url("postgres")).await;
    db.pool.close().await;
    server.stop();
    let dir = tempfile::tempdir().unwrap();
    let on_failure = dir.path().join("on-failure.jsonl");
    let given_up = give_up_every_batch(&db.url, batches, &on_failure).await;

    server.start_again();
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    assert_eq!(
        count(&pool, "enriched_orders").await,
        0,
        "nothing written in the outage"
    );

    let s3 = upload_to_s3(&given_up).await;
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
