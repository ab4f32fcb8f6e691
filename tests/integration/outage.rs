//! Database outages and deadlines: the right identifiers are reported, nothing of the
//! affected partitions is written past them, and nothing is lost once the database is back.

use std::time::{Duration, Instant};

use crate::pg::PgServer;
use crate::support::*;

#[tokio::test]
async fn database_stopped_mid_run_reports_each_partition_and_loses_nothing() {
    let reference = fresh_db().await;
    let reference_app = app(&reference.url, &[]).await;
    process(&reference_app, event("sample-orders.json")).await;
    process(&reference_app, event("poison.json")).await;
    let expected = orders_content(&reference.pool).await;

    let server = PgServer::start();
    let db = fresh_db_on(&server.url("postgres")).await;
    let app = app(&db.url, &[("DB_CONNECT_TIMEOUT_MS", "500")]).await;
    let (response, _) = process(&app, event("sample-orders.json")).await;
    assert_eq!(reported(&response), vec![]);

    db.pool.close().await;
    server.stop();
    let (response, summary) = process(&app, event("poison.json")).await;
    assert_eq!(reported(&response), poison_json_reported_whole());
    assert!(
        matches!(
            summary.failure,
            Some(msk_order_enricher::postgres::WriteFailure::Database {
                class: msk_order_enricher::postgres::errors::ErrorClass::Transient,
                ..
            })
        ),
        "{:?}",
        summary.failure
    );

    server.start_again();
    // Lambda redelivers the reported partitions from the reported offsets: the whole batch.
    let (response, summary) = process(&app, event("poison.json")).await;
    assert_eq!(reported(&response), vec![]);
    assert_eq!(summary.failure, None);
    let db = fresh_pool(&db.url).await;
    assert_eq!(orders_content(&db).await, expected);
    assert_eq!(count(&db, "dead_letters").await, 3);
}

async fn fresh_pool(url: &str) -> sqlx::PgPool {
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await
        .unwrap()
}

#[tokio::test]
async fn deadline_already_reached_reports_every_partition_with_work() {
    let db = fresh_db().await;
    let app = app(&db.url, &[]).await;
    let (response, summary) = process_by(&app, event("multi-topic.json"), Instant::now()).await;
    assert_eq!(
        reported(&response),
        vec![
            ("eu.orders-v2-3".into(), 7),
            ("orders-0".into(), 15),
            ("orders.retry-1".into(), 0)
        ]
    );
    assert_eq!(
        summary.failure,
        Some(msk_order_enricher::postgres::WriteFailure::Deadline)
    );
    assert_eq!(count(&db.pool, "enriched_orders").await, 0);
}

#[tokio::test]
async fn deadline_reached_during_a_blocked_write_reports_and_writes_nothing() {
    let db = fresh_db().await;
    let app = app(&db.url, &[]).await;
    // Warm the cache so the lookup does not touch the locked table's neighbours.
    let mut blocker = db.pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE enriched_orders IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *blocker)
        .await
        .unwrap();

    let started = Instant::now();
    let (response, summary) = process_by(
        &app,
        event("sample-orders.json"),
        Instant::now() + Duration::from_millis(400),
    )
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the deadline was not honoured: {:?}",
        started.elapsed()
    );
    assert_eq!(
        summary.failure,
        Some(msk_order_enricher::postgres::WriteFailure::Deadline)
    );
    assert_eq!(reported(&response), sample_orders_reported_whole());
    blocker.rollback().await.unwrap();
    assert_eq!(count(&db.pool, "enriched_orders").await, 0);

    let (response, _) = process(&app, event("sample-orders.json")).await;
    assert_eq!(reported(&response), vec![]);
    assert_eq!(count(&db.pool, "enriched_orders").await, 10);
}
