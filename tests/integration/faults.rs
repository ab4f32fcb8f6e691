//! Production faults against a real server: an outage shorter than the time left, a row lock
//! held past the deadline, sessions killed between invocations, a timestamp the database cannot
//! store, an order number too long for the primary key's index, a commit that keeps failing,
//! and concurrent execution environments writing the same orders.

use std::time::{Duration, Instant};

use test_support::events::{build_event, RecordSpec};

use crate::pg::PgServer;
use crate::support::*;

/// One partition of `topic` holding `orders` (order number, units) from `first_offset` on.
fn batch(
    topic: &str,
    orders: &[(String, u32)],
    first_offset: i64,
    timestamp_ms: i64,
) -> msk_order_enricher::decode::event::KafkaEvent<'static> {
    let specs = orders
        .iter()
        .map(|(no, units)| RecordSpec::from_order_line(&order_line(no, "Jones", *units)));
    parse_event(&build_event(topic, 1, specs, first_offset, timestamp_ms))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_shorter_than_the_time_left_is_waited_out_and_nothing_is_reported() {
    let server = PgServer::start();
    let db = fresh_db_on(&server.url("postgres")).await;
    let app = app(
        &db.url,
        &[
            ("DB_CONNECT_TIMEOUT_MS", "500"),
            ("DB_RETRY_LIMIT_MS", "40000"),
        ],
    )
    .await;
    let (response, _) = process(&app, event("sample-orders.json")).await;
    assert_eq!(reported(&response), vec![]);

    db.pool.close().await;
    server.stop();
    let started = Instant::now();
    let outage = async {
        tokio::time::sleep(Duration::from_secs(12)).await;
        tokio::task::block_in_place(|| server.start_again());
    };
    let work = process_by(
        &app,
        event("poison.json"),
        Instant::now() + Duration::from_secs(40),
    );
    let ((response, summary), ()) = tokio::join!(work, outage);

    assert_eq!(reported(&response), vec![], "{:?}", summary.failure);
    assert_eq!(summary.failure, None);
    assert!(started.elapsed() >= Duration::from_secs(12));
    assert!(summary.database_retries > 0);
    assert!(summary.database_wait_ms > 0);
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    assert_eq!(count(&pool, "dead_letters").await, 3);
    // poison.json updates orders of sample-orders.json: still ten orders.
    assert_eq!(count(&pool, "enriched_orders").await, 10);
}

#[tokio::test]
async fn a_row_lock_held_past_the_deadline_is_reported_in_time_and_never_commits_later() {
    let db = fresh_db().await;
    let app = app(&db.url, &[("DB_POOL_SIZE", "1")]).await;
    let (response, _) = process(&app, event("sample-orders.json")).await;
    assert_eq!(reported(&response), vec![]);
    let before = orders_snapshot(&db.pool).await;

    let mut blocker = db.pool.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM enriched_orders WHERE order_no = 'SO-001' FOR UPDATE")
        .execute(&mut *blocker)
        .await
        .unwrap();
    let newer = batch("orders", &[("SO-001".into(), 7)], 100, 1_800_000_000_000);
    let started = Instant::now();
    let (response, summary) =
        process_by(&app, newer.clone(), Instant::now() + Duration::from_secs(3)).await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(reported(&response), vec![("orders-0".into(), 100)]);
    assert_eq!(
        summary.failure,
        Some(msk_order_enricher::postgres::WriteFailure::Deadline)
    );

    // The lock outlives the deadline; once it goes, nothing of the reported batch commits.
    tokio::time::sleep(Duration::from_secs(2)).await;
    blocker.commit().await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(orders_snapshot(&db.pool).await, before);
    let still_running: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'msk-order-enricher' AND state <> 'idle'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(still_running, 0);

    // The one pooled connection is free again: the redelivery writes the order.
    let (response, summary) = process(&app, newer).await;
    assert_eq!(reported(&response), vec![], "{:?}", summary.failure);
    let units: i32 =
        sqlx::query_scalar("SELECT units FROM enriched_orders WHERE order_no = 'SO-001'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(units, 7);
}

#[tokio::test]
async fn sessions_terminated_between_invocations_do_not_fail_the_next_batch() {
    let db = fresh_db().await;
    let app = app(&db.url, &[]).await;
    let (response, _) = process(&app, event("sample-orders.json")).await;
    assert_eq!(reported(&response), vec![]);
    let terminated: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'msk-order-enricher'",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert!(!terminated.is_empty() && terminated.iter().all(|t| *t));

    let (response, summary) = process(&app, event("poison.json")).await;
    assert_eq!(reported(&response), vec![], "{:?}", summary.failure);
    assert_eq!(summary.failure, None);
    // The pool may notice the closed socket itself; otherwise BEGIN finds it, once.
    assert!(
        summary.database_retries <= 1,
        "{}",
        summary.database_retries
    );
    assert_eq!(count(&db.pool, "dead_letters").await, 3);
    assert_eq!(count(&db.pool, "enriched_orders").await, 10);
}

#[tokio::test]
async fn a_timestamp_the_database_cannot_store_does_not_fail_its_batch() {
    let db = fresh_db().await;
    let app = app(&db.url, &[]).await;
    let orders: Vec<(String, u32)> = (1..=3).map(|n| (format!("SO-T{n}"), n)).collect();
    let mut event = batch("orders", &orders, 0, 1_700_000_000_000);
    // Valid for chrono, out of range for timestamptz (about 5000 BC).
    event.records.get_mut("orders-0").unwrap()[1].timestamp = Some(-220_000_000_000_000);

    let (response, summary) = process(&app, event).await;
    assert_eq!(reported(&response), vec![], "{:?}", summary.failure);
    assert_eq!(summary.counts.timestamps_out_of_range, 1);
    let rows: Vec<(String, Option<String>, bool)> = sqlx::query_as(
        "SELECT order_no, source_timestamp::text, source_timestamp_out_of_range FROM enriched_orders ORDER BY order_no",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(
        rows,
        vec![
            ("SO-T1".into(), Some("2023-11-14 22:13:20+00".into()), false),
            ("SO-T2".into(), None, true),
            (
                "SO-T3".into(),
                Some("2023-11-14 22:13:20.002+00".into()),
                false
            ),
        ]
    );
}

#[tokio::test]
async fn an_order_the_database_refuses_is_dead_lettered_and_the_rest_written_on_first_delivery() {
    let db = fresh_db().await;
    // A rule the function knows nothing about, as an operator might add it.
    sqlx::query("ALTER TABLE enriched_orders ADD CONSTRAINT units_below_1000 CHECK (units < 1000)")
        .execute(&db.pool)
        .await
        .unwrap();
    let app = app(&db.url, &[]).await;
    let orders = [
        ("SO-R1".to_owned(), 5),
        ("SO-R2".to_owned(), 5000),
        ("SO-R3".to_owned(), 7),
    ];
    let (response, summary) = process(&app, batch("orders", &orders, 0, 1_700_000_000_000)).await;

    assert_eq!(reported(&response), vec![], "{:?}", summary.failure);
    assert_eq!(
        (summary.orders_written, summary.dead_letters_written),
        (2, 1)
    );
    let written: Vec<String> =
        sqlx::query_scalar("SELECT order_no FROM enriched_orders ORDER BY order_no")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(written, ["SO-R1", "SO-R3"]);
    let (offset, reason, value): (i64, String, Vec<u8>) =
        sqlx::query_as("SELECT source_offset, reason, raw_value FROM dead_letters")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(offset, 1);
    assert!(
        reason.starts_with("the database refused the order: "),
        "{reason}"
    );
    assert!(reason.contains("units_below_1000"), "{reason}");
    let value: serde_json::Value = serde_json::from_slice(&value).unwrap();
    assert_eq!(
        (value["OrderNo"].as_str(), value["Units"].as_i64()),
        (Some("SO-R2"), Some(5000))
    );

    // The redelivery of the same batch changes nothing.
    let before = orders_snapshot(&db.pool).await;
    let (response, _) = process(&app, batch("orders", &orders, 0, 1_700_000_000_000)).await;
    assert_eq!(reported(&response), vec![]);
    assert_eq!(orders_snapshot(&db.pool).await, before);
    assert_eq!(count(&db.pool, "dead_letters").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_environments_writing_the_same_orders_in_opposite_orders_never_fail() {
    let db = fresh_db().await;
    let mut environments = Vec::new();
    for _ in 0..4 {
        environments.push(app(&db.url, &[]).await);
    }
    let orders: Vec<String> = (0..300).map(|n| format!("SO-C{n:03}")).collect();
    for round in 0..6u32 {
        let invocations = environments.iter().enumerate().map(|(i, app)| {
            let mut mine: Vec<(String, u32)> =
                orders.iter().map(|no| (no.clone(), round + 1)).collect();
            if i % 2 == 1 {
                mine.reverse();
            }
            let offset = i64::from(round) * 300;
            let event = batch(
                &format!("orders-env{i}"),
                &mine,
                offset,
                1_700_000_000_000 + offset,
            );
            // No deadline: a deadlock would surface as a failure rather than a timeout.
            process(app, event)
        });
        for (response, summary) in futures::future::join_all(invocations).await {
            assert_eq!(
                reported(&response),
                vec![],
                "round {round}: {:?}",
                summary.failure
            );
            assert_eq!(
                summary.database_retries, 0,
                "round {round}: a deadlock was retried"
            );
        }
    }
    assert_eq!(count(&db.pool, "enriched_orders").await, 300);
}

/// The commit-order property against the real upsert: the same records, cut into invocations
/// and committed in different orders (each partition's own order kept), leave the same rows,
/// and each row is the greatest record under (clock, topic, partition, offset).
#[tokio::test]
async fn the_table_does_not_depend_on_the_order_invocations_commit_in() {
    use esm_local::batch::{Batch, EventSource, Record, SourceRecord, TimestampType};

    let db = fresh_db().await;
    let app = app(&db.url, &[]).await;
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = |n: u64| -> u64 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    for scenario in 0..12 {
        let partitions: Vec<Vec<(String, i64)>> = (0..3)
            .map(|_| {
                (0..1 + next(6))
                    .map(|_| {
                        (
                            format!("SO-P{}", next(3)),
                            1_700_000_000_000 + i64::try_from(next(4)).unwrap(),
                        )
                    })
                    .collect()
            })
            .collect();
        let record = |p: usize, offset: usize| {
            let (no, ts) = &partitions[p][offset];
            Record::new(&SourceRecord {
                topic: "orders".into(),
                partition: i32::try_from(p).unwrap(),
                offset: i64::try_from(offset).unwrap(),
                timestamp_ms: *ts,
                timestamp_type: TimestampType::CreateTime,
                key: Some(no.as_bytes().to_vec()),
                value: Some(
                    order_line(no, "Jones", u32::try_from(offset).unwrap() + 1).into_bytes(),
                ),
                headers: vec![],
            })
        };
        let source = EventSource {
            event_source_arn: None,
            bootstrap_servers: "localhost:9092".into(),
        };
        let mut outcomes = Vec::new();
        for _schedule in 0..4 {
            sqlx::query("TRUNCATE enriched_orders")
                .execute(&db.pool)
                .await
                .unwrap();
            let mut cursor = [0usize; 3];
            while (0..3).any(|p| cursor[p] < partitions[p].len()) {
                let mut records = Vec::new();
                for p in 0..3 {
                    if cursor[p] == partitions[p].len() || next(2) == 0 {
                        continue;
                    }
                    let end = (cursor[p] + 1 + usize::try_from(next(3)).unwrap())
                        .min(partitions[p].len());
                    records.extend((cursor[p]..end).map(|offset| record(p, offset)));
                    cursor[p] = end;
                }
                if records.is_empty() {
                    continue;
                }
                let event = parse_event(&Batch::from_records(records).event_json(&source));
                let (response, summary) = process(&app, event).await;
                assert_eq!(reported(&response), vec![], "{:?}", summary.failure);
            }
            let rows: Vec<(String, i32, i64)> = sqlx::query_as(
                "SELECT order_no, source_partition, source_offset FROM enriched_orders ORDER BY order_no",
            )
            .fetch_all(&db.pool)
            .await
            .unwrap();
            outcomes.push(rows);
        }
        let expected = test_support::ordering::greatest_records(&partitions);
        for rows in &outcomes {
            assert_eq!(rows, &expected, "scenario {scenario}: {partitions:?}");
        }
    }
}

/// `length` characters that PostgreSQL cannot compress (an index entry of a repeated character
/// would be compressed below the B-tree's limit): a pseudo-random walk over letters and digits.
fn incompressible(length: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..length)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let index = usize::try_from(state >> 58).unwrap() % ALPHABET.len();
            char::from(ALPHABET[index])
        })
        .collect()
}

/// An order number longer than the primary key's B-tree entry may be (SQLSTATE 54000) is the
/// refusal of one row: it is dead-lettered and the orders of the other partition, and its own,
/// are written on the first delivery, instead of the whole batch failing on every delivery.
#[tokio::test]
async fn an_order_number_too_long_for_the_index_is_dead_lettered_and_the_rest_written_on_first_delivery(
) {
    let db = fresh_db().await;
    let app = app(&db.url, &[]).await;
    let long = format!("SO-{}", incompressible(3_000));
    let records: [Spec<'_>; 4] = [
        (0, 10, "SO-L1", "Jones", 1),
        (0, 11, "SO-L2", "Gill", 2),
        (1, 20, &long, "Jones", 3),
        (1, 21, "SO-L3", "Jones", 4),
    ];
    let (response, summary) = process(&app, event_of(&records)).await;

    assert_eq!(reported(&response), vec![], "{:?}", summary.failure);
    assert_eq!(
        (summary.orders_written, summary.dead_letters_written),
        (3, 1)
    );
    let written: Vec<String> =
        sqlx::query_scalar("SELECT order_no FROM enriched_orders ORDER BY order_no")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(written, ["SO-L1", "SO-L2", "SO-L3"]);
    let (partition, offset, reason): (i32, i64, String) =
        sqlx::query_as("SELECT source_partition, source_offset, reason FROM dead_letters")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!((partition, offset), (1, 20));
    assert!(
        reason.starts_with("the database refused the order: ") && reason.contains("index row size"),
        "{reason}"
    );

    // The redelivery of the same batch changes nothing.
    let before = orders_snapshot(&db.pool).await;
    let (response, _) = process(&app, event_of(&records)).await;
    assert_eq!(reported(&response), vec![]);
    assert_eq!(orders_snapshot(&db.pool).await, before);
    assert_eq!(count(&db.pool, "dead_letters").await, 1);
}

/// Every attempt writes the batch (one order of an unknown customer) and then fails at
/// `COMMIT` (a deferred trigger raising a serialization failure), until the retry limit: the
/// invocation reports the batch, and its log line and metrics count nothing written.
#[tokio::test]
async fn a_write_that_never_commits_counts_nothing_written() {
    let db = fresh_db().await;
    sqlx::raw_sql(
        "CREATE FUNCTION refuse_commit() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN RAISE EXCEPTION 'refused at commit' USING ERRCODE = '40001'; END $$;
         CREATE CONSTRAINT TRIGGER refuse_commit AFTER INSERT ON enriched_orders
             DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION refuse_commit();",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let app = app(&db.url, &[("DB_RETRY_LIMIT_MS", "1000")]).await;
    let records: [Spec<'_>; 2] = [(0, 10, "SO-C1", "Jones", 1), (0, 11, "SO-C2", "Nobody", 2)];
    let (response, summary) = process(&app, event_of(&records)).await;

    assert_eq!(reported(&response), vec![("orders-0".to_owned(), 10)]);
    assert!(
        matches!(
            &summary.failure,
            Some(msk_order_enricher::postgres::WriteFailure::Database { sqlstate: Some(code), .. })
                if code == "40001"
        ),
        "{:?}",
        summary.failure
    );
    assert!(summary.database_retries > 0, "{summary:?}");
    assert_eq!(
        (
            summary.orders_written,
            summary.write.orders_changed,
            summary.write.customers_not_found
        ),
        (0, 0, 0)
    );
    let config = msk_order_enricher::config::Config::from_lookup(|name| {
        (name == "DATABASE_URL").then(|| db.url.clone())
    })
    .unwrap();
    let document =
        msk_order_enricher::report::metrics::emf_document(&summary, &config.metrics, 0).unwrap();
    let document: serde_json::Value = serde_json::from_str(&document).unwrap();
    assert_eq!(
        (
            document["OrdersEnriched"].as_f64(),
            document["CustomersNotFound"].as_f64(),
            document["WriteFailures"].as_f64()
        ),
        (Some(0.0), Some(0.0), Some(1.0))
    );
    assert_eq!(count(&db.pool, "enriched_orders").await, 0);
}
