//! The Kafka sink against a real broker (tansu) and a real PostgreSQL: what lands on the output
//! topic, and what is reported when the broker is gone, silent, or has no such topic, or when
//! the database write waits on a lock or runs out of time.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use esm_local::batch::SourceRecord;
use esm_local::source::kafka::{self, Connection, KafkaSource, StartingPosition};
use msk_order_enricher::decode::event::KafkaEvent;

use crate::broker::{self, Dedicated, Proxy};
use crate::support::*;

fn connection(servers: &str) -> Connection {
    Connection {
        bootstrap_servers: servers.into(),
        properties: vec![],
    }
}

/// A topic name of this test's own on the shared broker.
fn topic(name: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!("{name}-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

fn kafka_vars<'a>(servers: &'a str, topic: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("SINKS", "postgres,kafka"),
        ("KAFKA_BOOTSTRAP_SERVERS", servers),
        ("OUTPUT_TOPIC", topic),
        ("KAFKA_SECURITY_PROTOCOL", "plaintext"),
    ]
}

/// Everything on `topic` from the start: waits until `at_least` records arrived (60 s at most),
/// then half a second more for any beyond them.
async fn consume(servers: &str, topic: &str, at_least: usize) -> Vec<SourceRecord> {
    let group = format!("check-{topic}-{}", esm_local::clock::now_ms());
    let mut source = KafkaSource::connect(
        &connection(servers),
        &[topic.to_owned()],
        &group,
        StartingPosition::TrimHorizon,
    )
    .await
    .unwrap();
    let until = Instant::now() + Duration::from_secs(60);
    let mut records = Vec::new();
    while records.len() < at_least && Instant::now() < until {
        records.extend(
            source
                .poll(Duration::from_millis(500), 10_000)
                .await
                .unwrap(),
        );
    }
    records.extend(
        source
            .poll(Duration::from_millis(500), 10_000)
            .await
            .unwrap(),
    );
    records.sort_by_key(|r| (r.partition, r.offset));
    records
}

fn key(record: &SourceRecord) -> String {
    String::from_utf8(record.key.clone().unwrap()).unwrap()
}

fn header<'a>(record: &'a SourceRecord, name: &str) -> &'a str {
    let (_, value) = record
        .headers
        .iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no header {name}"));
    std::str::from_utf8(value).unwrap()
}

fn value(record: &SourceRecord) -> serde_json::Value {
    serde_json::from_slice(record.value.as_deref().unwrap()).unwrap()
}

/// The sample event with only the named partitions.
fn sample_partitions(keep: &[&str]) -> KafkaEvent<'static> {
    let mut event = event("sample-orders.json");
    event.records.retain(|key, _| keep.contains(&key.as_str()));
    event
}

/// Address, longitude and latitude, as text.
type Location = (Option<String>, Option<String>, Option<String>);
/// An order number and its location.
type LocationRow = (String, Option<String>, Option<String>, Option<String>);

fn sample_orders() -> BTreeSet<String> {
    (1..=10).map(|n| format!("SO-{n:03}")).collect()
}

/// The topic and the table agree on every order's location.
async fn assert_topic_agrees_with_table(records: &[SourceRecord], pool: &sqlx::PgPool) {
    let rows: Vec<LocationRow> = sqlx::query_as(
        "SELECT order_no, address, longitude::text, latitude::text FROM enriched_orders",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let table: BTreeMap<String, Location> = rows
        .into_iter()
        .map(|(no, address, longitude, latitude)| (no, (address, longitude, latitude)))
        .collect();
    for record in records {
        let value = value(record);
        let text = |field: &str| match &value[field] {
            serde_json::Value::Null => None,
            serde_json::Value::String(s) => Some(s.clone()),
            other => Some(other.to_string()),
        };
        assert_eq!(
            table[&key(record)],
            (text("Address"), text("Longitude"), text("Latitude")),
            "{}",
            key(record)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_sinks_commit_the_table_then_produce_each_order_keyed_with_location_and_source() {
    let db = fresh_db().await;
    let servers = broker::bootstrap_servers();
    let out = topic("enriched");
    kafka::ensure_topic(&connection(&servers), &out, 3)
        .await
        .unwrap();
    let app = app(&db.url, &kafka_vars(&servers, &out)).await;

    let (response, summary) = process(&app, event("sample-orders.json")).await;
    assert_eq!(reported(&response), vec![]);
    let produced = summary.produce.clone().unwrap();
    assert_eq!(
        (
            produced.delivered,
            produced.undelivered_partitions,
            produced.records_built_ahead
        ),
        (10, 0, false),
        "a cold cache: the records are built after the write"
    );
    assert_eq!(count(&db.pool, "enriched_orders").await, 10);

    let records = consume(&servers, &out, 10).await;
    assert_eq!(records.len(), 10, "each order once");
    let keys: BTreeSet<String> = records.iter().map(key).collect();
    assert_eq!(keys, sample_orders());
    let first = records.iter().find(|r| key(r) == "SO-001").unwrap();
    assert_eq!(
        std::str::from_utf8(first.value.as_deref().unwrap()).unwrap(),
        r#"{"OrderNo":"SO-001","OrderDate":"2019-01-06","Region":"East","Customer":"Jones","Item":"Pencil","Units":95,"Unit Cost":1.99,"Total":189.05,"Address":"1745 T Street Southeast","Longitude":-76.979235,"Latitude":38.867033}"#
    );
    assert_eq!(
        [
            header(first, "source-topic"),
            header(first, "source-partition"),
            header(first, "source-offset"),
            header(first, "source-timestamp"),
        ],
        ["orders", "1", "0", "1700000000000"]
    );

    assert_topic_agrees_with_table(&records, &db.pool).await;

    // A redelivery changes nothing in the table and produces the orders again, in the same
    // order within each output partition.
    // The cache is warm now, so the records are built while the database works; they are the
    // same records.
    let before = orders_snapshot(&db.pool).await;
    let (response, summary) = process(&app, event("sample-orders.json")).await;
    assert_eq!(reported(&response), vec![]);
    assert!(summary.produce.unwrap().records_built_ahead);
    assert_eq!(orders_snapshot(&db.pool).await, before);
    let again = consume(&servers, &out, 20).await;
    assert_eq!(again.len(), 20);
    // Per order number: (output partition, output offset, source offset, value) of each copy.
    type Copy = (i32, i64, String, Vec<u8>);
    let mut per_key: BTreeMap<String, Vec<Copy>> = BTreeMap::new();
    for record in &again {
        per_key.entry(key(record)).or_default().push((
            record.partition,
            record.offset,
            header(record, "source-offset").to_owned(),
            record.value.clone().unwrap_or_default(),
        ));
    }
    for (order, copies) in per_key {
        assert_eq!(copies.len(), 2, "{order}");
        assert_eq!(
            copies[0].0, copies[1].0,
            "{order}: one output partition per key"
        );
        assert!(copies[0].1 < copies[1].1);
        assert_eq!(
            (&copies[0].2, &copies[0].3),
            (&copies[1].2, &copies[1].3),
            "{order}: the same record again"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_outage_reports_only_the_partitions_it_hit_and_the_redelivery_completes_the_topic()
{
    let db = fresh_db().await;
    let proxy = Proxy::new();
    let tansu = Dedicated::behind(proxy.port);
    proxy.restore(tansu.port).await;
    let servers = format!("127.0.0.1:{}", proxy.port);
    let out = "enriched";
    kafka::ensure_topic(&connection(&servers), out, 3)
        .await
        .unwrap();
    let app = app(&db.url, &kafka_vars(&servers, out)).await;

    // Before the outage: orders-0 produces cleanly and is not reported.
    let (response, summary) = process_by(
        &app,
        sample_partitions(&["orders-0"]),
        Instant::now() + Duration::from_secs(20),
    )
    .await;
    assert_eq!(reported(&response), vec![]);
    assert_eq!(summary.produce.unwrap().delivered, 3);

    // The broker goes away while orders-1 and orders-2 are produced: the table has them (the
    // database commits first), their partitions are reported from their first records, and
    // the function answers by its deadline.
    proxy.cut().await;
    let started = Instant::now();
    let (response, summary) = process_by(
        &app,
        sample_partitions(&["orders-1", "orders-2"]),
        started + Duration::from_secs(4),
    )
    .await;
    assert!(
        started.elapsed() < Duration::from_millis(4_500),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        reported(&response),
        vec![("orders-1".into(), 0), ("orders-2".into(), 0)]
    );
    let produced = summary.produce.unwrap();
    assert_eq!(produced.undelivered_partitions, 2);
    assert!(
        produced
            .first_failure
            .as_deref()
            .unwrap()
            .contains("no delivery report before the deadline"),
        "{:?}",
        produced.first_failure
    );
    assert_eq!(count(&db.pool, "enriched_orders").await, 10);
    let committed = orders_snapshot(&db.pool).await;

    // The broker is back; the mapping redelivers what was reported.
    proxy.restore(tansu.port).await;
    let (response, summary) = process_by(
        &app,
        sample_partitions(&["orders-1", "orders-2"]),
        Instant::now() + Duration::from_secs(30),
    )
    .await;
    assert_eq!(reported(&response), vec![], "{:?}", summary.produce);
    assert_eq!(summary.produce.unwrap().delivered, 7);
    assert_eq!(
        orders_snapshot(&db.pool).await,
        committed,
        "in the table exactly once, unchanged by the redelivery"
    );
    let keys: BTreeSet<String> = consume(&servers, out, 10).await.iter().map(key).collect();
    assert_eq!(
        keys,
        sample_orders(),
        "every order on the topic at least once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_output_topic_that_does_not_exist_is_named_and_every_partition_reported() {
    let db = fresh_db().await;
    let servers = broker::bootstrap_servers();
    let missing = topic("no-such-topic");
    let app = app(&db.url, &kafka_vars(&servers, &missing)).await;
    let (response, summary) = process_by(
        &app,
        event("sample-orders.json"),
        Instant::now() + Duration::from_secs(20),
    )
    .await;
    assert_eq!(reported(&response), sample_orders_reported_whole());
    assert_eq!(
        summary.produce.unwrap().first_failure.unwrap(),
        format!("OUTPUT_TOPIC {missing:?} does not exist on the brokers of KAFKA_BOOTSTRAP_SERVERS ({servers})")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_never_acknowledges_gets_an_answer_before_the_deadline() {
    let db = fresh_db().await;
    let (port, _silent) = broker::silent_broker().await;
    let servers = format!("127.0.0.1:{port}");
    let app = app(&db.url, &kafka_vars(&servers, "enriched")).await;
    let started = Instant::now();
    let (response, summary) = process_by(
        &app,
        event("sample-orders.json"),
        started + Duration::from_secs(3),
    )
    .await;
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(3_500),
        "answered after {took:?}"
    );
    assert_eq!(reported(&response), sample_orders_reported_whole());
    assert_eq!(summary.redelivered_records, 10);
    let failure = summary.produce.unwrap().first_failure.unwrap();
    assert!(
        failure.starts_with("no delivery report before the deadline"),
        "{failure}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_alone_writes_no_table_and_sends_dead_letters_with_their_reason_to_their_topic() {
    let db = fresh_db().await;
    let servers = broker::bootstrap_servers();
    let (out, dlt) = (topic("kafka-only"), topic("kafka-only-dlt"));
    for name in [&out, &dlt] {
        kafka::ensure_topic(&connection(&servers), name, 1)
            .await
            .unwrap();
    }
    let mut vars = kafka_vars(&servers, &out);
    vars[0] = ("SINKS", "kafka");
    vars.push(("DEAD_LETTER_TOPIC", &dlt));
    let app = app(&db.url, &vars).await;
    let (response, summary) = process(&app, event("poison.json")).await;
    assert_eq!(reported(&response), vec![]);
    assert_eq!(summary.produce.unwrap().delivered, 8);
    assert_eq!(
        (
            count(&db.pool, "enriched_orders").await,
            count(&db.pool, "dead_letters").await
        ),
        (0, 0),
        "no database write"
    );

    let orders = consume(&servers, &out, 5).await;
    let keys: Vec<String> = orders.iter().map(key).collect();
    assert_eq!(keys, ["SO-001", "SO-004", "SO-002", "SO-003", "SO-005"]);
    assert_eq!(value(&orders[0])["Address"], "1745 T Street Southeast");

    let dead = consume(&servers, &dlt, 3).await;
    let positions: Vec<(&str, &str)> = dead
        .iter()
        .map(|r| (header(r, "source-partition"), header(r, "source-offset")))
        .collect();
    assert_eq!(positions, [("0", "41"), ("1", "11"), ("1", "12")]);
    assert_eq!(dead[0].key.as_deref(), Some(&b"SO-BAD"[..]));
    assert_eq!(
        dead[0].value.as_deref(),
        Some(&br#"{"OrderNo":"SO-BAD","#[..])
    );
    assert_eq!(
        header(&dead[0], "source"),
        "legacy",
        "the record's own headers are kept"
    );
    assert_eq!(
        header(&dead[0], "dead-letter-reason"),
        "value is not a valid order: EOF while parsing a value at line 1 column 20"
    );
    assert_eq!(dead[1].value.as_deref(), Some(&b"%%not-base64%%"[..]));
}

/// The order numbers on `topic`, once `at_least` arrived (see [`consume`]).
async fn keys_on(servers: &str, topic: &str, at_least: usize) -> Vec<String> {
    let mut keys: Vec<String> = consume(servers, topic, at_least)
        .await
        .iter()
        .map(key)
        .collect();
    keys.sort();
    keys
}

/// A warm execution environment with both sinks: Jones cached, the producer connected to `out`
/// (created with 3 partitions), which holds SO-WARM.
async fn warm_app(db: &TestDb, servers: &str, out: &str) -> msk_order_enricher::startup::App {
    kafka::ensure_topic(&connection(servers), out, 3)
        .await
        .unwrap();
    let mut vars = kafka_vars(servers, out);
    // The tests' 1.5 s budget would end a write that waits on a row lock while the topic is
    // read, on a loaded machine; the deadline test gives its own.
    vars.push(("DB_RETRY_LIMIT_MS", "30000"));
    let app = app(&db.url, &vars).await;
    let (response, summary) = process(&app, event_of(&[(0, 0, "SO-WARM", "Jones", 1)])).await;
    assert_eq!(reported(&response), vec![]);
    assert_eq!(summary.produce.unwrap().delivered, 1);
    app
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_of_a_batch_reaches_the_topic_while_its_write_waits_on_a_row_lock() {
    let db = fresh_db().await;
    let servers = broker::bootstrap_servers();
    let out = topic("waits");
    let app = warm_app(&db, &servers, &out).await;

    let blocker = insert_uncommitted(&db.pool, "SO-H2").await;
    let write = process(
        &app,
        event_of(&[
            (0, 1, "SO-H1", "Jones", 2),
            (1, 0, "SO-H2", "Jones", 3),
            (1, 1, "SO-H3", "Jones", 4),
        ]),
    );
    let meanwhile = async {
        copy_waiting_on_a_lock(&db.pool).await;
        // Every partition is streamed and its records built by now; the COPY waits.
        let on_topic = keys_on(&servers, &out, 1).await;
        blocker.rollback().await.unwrap();
        on_topic
    };
    let ((response, summary), during_the_write) = tokio::join!(write, meanwhile);
    assert_eq!(
        during_the_write,
        ["SO-WARM"],
        "nothing sent before the commit"
    );
    assert_eq!(reported(&response), vec![], "{:?}", summary.failure);
    let produced = summary.produce.unwrap();
    assert_eq!(
        (
            produced.delivered,
            produced.undelivered_partitions,
            produced.records_built_ahead
        ),
        (3, 0, true)
    );
    assert_eq!(
        keys_on(&servers, &out, 4).await,
        ["SO-H1", "SO-H2", "SO-H3", "SO-WARM"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_stopped_at_its_deadline_produces_nothing_then_or_later_and_its_redelivery_each_order_once(
) {
    let db = fresh_db().await;
    let servers = broker::bootstrap_servers();
    let out = topic("deadline");
    let app = warm_app(&db, &servers, &out).await;

    let blocker = insert_uncommitted(&db.pool, "SO-P2").await;
    let batch = || {
        event_of(&[
            (0, 1, "SO-P1", "Jones", 2),
            (1, 0, "SO-P2", "Jones", 3),
            (1, 1, "SO-P3", "Jones", 4),
        ])
    };
    let (response, summary) =
        process_by(&app, batch(), Instant::now() + Duration::from_millis(1500)).await;
    assert_eq!(
        summary.failure,
        Some(msk_order_enricher::postgres::WriteFailure::Deadline)
    );
    assert_eq!(
        reported(&response),
        vec![("orders-0".into(), 1), ("orders-1".into(), 0)]
    );
    assert_eq!(summary.produce, None);
    blocker.rollback().await.unwrap();
    assert_eq!(
        keys_on(&servers, &out, 1).await,
        ["SO-WARM"],
        "nothing of the reported partitions reaches the topic, then or later"
    );

    // The redelivery, and the batch after it: written and produced, each order once.
    let (response, summary) = process(&app, batch()).await;
    assert_eq!(reported(&response), vec![], "{:?}", summary.failure);
    let produced = summary.produce.unwrap();
    assert_eq!(
        (produced.delivered, produced.undelivered_partitions),
        (3, 0)
    );
    let (response, summary) = process(
        &app,
        event_of(&[(0, 2, "SO-P4", "Jones", 5), (1, 2, "SO-P5", "Jones", 6)]),
    )
    .await;
    assert_eq!(reported(&response), vec![]);
    assert_eq!(summary.produce.unwrap().delivered, 2);
    assert_eq!(
        keys_on(&servers, &out, 6).await,
        ["SO-P1", "SO-P2", "SO-P3", "SO-P4", "SO-P5", "SO-WARM"]
    );
    assert_eq!(count(&db.pool, "enriched_orders").await, 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_first_seen_in_a_later_partition_is_produced_with_the_location_looked_up() {
    let db = fresh_db().await;
    let servers = broker::bootstrap_servers();
    let out = topic("later-customer");
    let app = warm_app(&db, &servers, &out).await;

    // Jones is cached, Kivell is not: the write streams partition 0, then gives way.
    let (response, summary) = process(
        &app,
        event_of(&[
            (0, 1, "SO-J1", "Jones", 2),
            (0, 2, "SO-J2", "Jones", 3),
            (1, 0, "SO-K1", "Kivell", 4),
        ]),
    )
    .await;
    assert_eq!(reported(&response), vec![]);
    assert!(!summary.write.streamed);
    let produced = summary.produce.unwrap();
    assert_eq!(
        (produced.delivered, produced.records_built_ahead),
        (3, false),
        "the records are built after the write, with the location it looked up"
    );
    let records = consume(&servers, &out, 4).await;
    let addresses: BTreeMap<String, String> = records
        .iter()
        .map(|r| (key(r), value(r)["Address"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(
        addresses,
        BTreeMap::from([
            ("SO-J1".to_owned(), "1745 T Street Southeast".to_owned()),
            ("SO-J2".to_owned(), "1745 T Street Southeast".to_owned()),
            ("SO-K1".to_owned(), "6007 Applegate Lane".to_owned()),
            ("SO-WARM".to_owned(), "1745 T Street Southeast".to_owned()),
        ])
    );
    assert_eq!(records.len(), 4, "each once");
}
