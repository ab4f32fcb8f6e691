//! The streamed write against a real PostgreSQL: with every customer in the cache, each
//! partition's new orders go into the direct `COPY` as soon as the partition is planned, and the
//! write gives way to the general path, in the same transaction, when that cannot hold (a
//! customer not cached, an order number in two partitions, an order that exists already). Each
//! case must leave exactly the rows the general path leaves.

use std::time::Duration;

use crate::support::*;

/// `(order_no, customer, units, source_partition, source_offset, address)` of every row.
async fn rows(pool: &sqlx::PgPool) -> Vec<(String, String, i32, i32, i64, Option<String>)> {
    sqlx::query_as(
        "SELECT order_no, customer, units, source_partition, source_offset, address
         FROM enriched_orders ORDER BY order_no",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

fn row(
    no: &str,
    customer: &str,
    units: i32,
    partition: i32,
    offset: i64,
    address: Option<&str>,
) -> (String, String, i32, i32, i64, Option<String>) {
    (
        no.into(),
        customer.into(),
        units,
        partition,
        offset,
        address.map(Into::into),
    )
}

const JONES: Option<&str> = Some("1745 T Street Southeast");
const KIVELL: Option<&str> = Some("6007 Applegate Lane");

#[tokio::test]
async fn a_warm_batch_over_three_partitions_is_streamed_and_a_cold_one_is_not() {
    let db = fresh_db().await;
    let app = app(&db.url, &[]).await;

    // Cold cache: the first partition's customer is not cached, so the batch is looked up
    // and written by the general write.
    let (response, summary) = process(&app, event_of(&[(0, 0, "SO-A1", "Jones", 1)])).await;
    assert_eq!(reported(&response), vec![]);
    assert_eq!(
        (summary.write.streamed, summary.lookup.round_trips),
        (false, 1)
    );

    // Warm: three partitions, each streamed as soon as it is planned.
    let (response, summary) = process(
        &app,
        event_of(&[
            (0, 1, "SO-A3", "Jones", 3),
            (0, 2, "SO-A2", "Jones", 2),
            (1, 0, "SO-B1", "Jones", 4),
            (2, 7, "SO-C1", "Jones", 5),
            (2, 8, "SO-C1", "Jones", 6),
        ]),
    )
    .await;
    assert_eq!(reported(&response), vec![], "{:?}", summary.failure);
    assert_eq!(summary.failure, None);
    assert_eq!(
        (
            summary.write.streamed,
            summary.write.upserted,
            summary.write.orders_changed,
            summary.orders_written,
        ),
        (true, false, 4, 4)
    );
    assert_eq!(
        (summary.lookup.cache_hits, summary.lookup.round_trips),
        (1, 0)
    );
    assert_eq!(summary.counts.superseded, 1);
    assert_eq!(
        rows(&db.pool).await,
        vec![
            row("SO-A1", "Jones", 1, 0, 0, JONES),
            row("SO-A2", "Jones", 2, 0, 2, JONES),
            row("SO-A3", "Jones", 3, 0, 1, JONES),
            row("SO-B1", "Jones", 4, 1, 0, JONES),
            row("SO-C1", "Jones", 6, 2, 8, JONES),
        ]
    );

    // The same batch again: every order exists, the streamed COPY gives way to the upsert,
    // which changes nothing.
    let before = orders_snapshot(&db.pool).await;
    let (response, summary) = process(
        &app,
        event_of(&[(0, 1, "SO-A3", "Jones", 3), (1, 0, "SO-B1", "Jones", 4)]),
    )
    .await;
    assert_eq!(reported(&response), vec![]);
    assert_eq!(
        (
            summary.write.streamed,
            summary.write.upserted,
            summary.write.orders_changed
        ),
        (false, true, 0)
    );
    assert_eq!(orders_snapshot(&db.pool).await, before);
}

#[tokio::test]
async fn a_customer_first_seen_in_a_later_partition_is_looked_up_and_the_batch_written_once() {
    let db = fresh_db().await;
    let app = app(&db.url, &[]).await;
    process(&app, event_of(&[(0, 0, "SO-W", "Jones", 1)])).await;

    // Partition 0 is streamed from the cache; partition 1 has Kivell, whom the cache does not
    // hold: the COPY is abandoned and undone, and the general write looks Kivell up.
    let (response, summary) = process(
        &app,
        event_of(&[
            (0, 1, "SO-1", "Jones", 2),
            (1, 0, "SO-2", "Kivell", 3),
            (1, 1, "SO-3", "Nobody", 4),
        ]),
    )
    .await;
    assert_eq!(reported(&response), vec![], "{:?}", summary.failure);
    assert_eq!(
        (
            summary.write.streamed,
            summary.write.orders_changed,
            summary.write.customers_not_found
        ),
        (false, 3, 1)
    );
    assert_eq!(
        (
            summary.lookup.cache_hits,
            summary.lookup.looked_up,
            summary.lookup.round_trips
        ),
        (1, 2, 1)
    );
    assert_eq!(
        rows(&db.pool).await,
        vec![
            row("SO-1", "Jones", 2, 0, 1, JONES),
            row("SO-2", "Kivell", 3, 1, 0, KIVELL),
            row("SO-3", "Nobody", 4, 1, 1, None),
            row("SO-W", "Jones", 1, 0, 0, JONES),
        ]
    );

    // Now Kivell and the unknown customer are cached too: the next such batch is streamed.
    let (_, summary) = process(
        &app,
        event_of(&[(0, 2, "SO-4", "Jones", 1), (1, 2, "SO-5", "Nobody", 1)]),
    )
    .await;
    assert_eq!(
        (
            summary.write.streamed,
            summary.write.customers_not_found,
            summary.lookup.round_trips
        ),
        (true, 1, 0)
    );
    assert_eq!(
        location_of(&db.pool, "SO-5").await,
        (None, None, None, false)
    );
}

#[tokio::test]
async fn an_order_number_in_two_partitions_or_already_written_gives_way_to_the_upsert() {
    let db = fresh_db().await;
    let app = app(&db.url, &[]).await;
    process(&app, event_of(&[(3, 0, "SO-OLD", "Jones", 1)])).await;

    // SO-X is in partitions 0 and 1: the record with the later clock (partition 1, offset 9)
    // wins. SO-OLD exists from partition 3, offset 0; its record at offset 5 replaces it.
    let (response, summary) = process(
        &app,
        event_of(&[
            (0, 1, "SO-X", "Jones", 2),
            (0, 2, "SO-Y", "Jones", 3),
            (1, 9, "SO-X", "Jones", 4),
            (3, 5, "SO-OLD", "Jones", 5),
        ]),
    )
    .await;
    assert_eq!(reported(&response), vec![], "{:?}", summary.failure);
    assert_eq!(
        (summary.write.streamed, summary.write.upserted),
        (false, true)
    );
    assert_eq!(
        rows(&db.pool).await,
        vec![
            row("SO-OLD", "Jones", 5, 3, 5, JONES),
            row("SO-X", "Jones", 4, 1, 9, JONES),
            row("SO-Y", "Jones", 3, 0, 2, JONES),
        ]
    );

    // Only a later partition meets an existing order: the COPY already holds the first
    // partition's rows when it fails, and the upsert writes the whole batch instead.
    let (response, summary) = process(
        &app,
        event_of(&[(0, 3, "SO-Z", "Jones", 6), (3, 6, "SO-OLD", "Jones", 7)]),
    )
    .await;
    assert_eq!(reported(&response), vec![], "{:?}", summary.failure);
    assert_eq!(
        (
            summary.write.streamed,
            summary.write.upserted,
            summary.write.orders_changed
        ),
        (false, true, 2)
    );
    assert_eq!(
        rows(&db.pool).await,
        vec![
            row("SO-OLD", "Jones", 7, 3, 6, JONES),
            row("SO-X", "Jones", 4, 1, 9, JONES),
            row("SO-Y", "Jones", 3, 0, 2, JONES),
            row("SO-Z", "Jones", 6, 0, 3, JONES),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_killed_while_its_copy_waits_on_a_row_lock_commits_nothing_and_is_retried() {
    let db = fresh_db().await;
    let app = app(&db.url, &[]).await;
    process(&app, event_of(&[(0, 0, "SO-WARM", "Jones", 1)])).await;

    // Another transaction holds SO-K2, not yet committed: the streamed COPY stops on it.
    let blocker = insert_uncommitted(&db.pool, "SO-K2").await;

    let invocation = process(
        &app,
        event_of(&[
            (0, 1, "SO-K1", "Jones", 2),
            (1, 0, "SO-K2", "Jones", 3),
            (1, 1, "SO-K3", "Jones", 4),
        ]),
    );
    let kill_then_release = async {
        let waiting = copy_waiting_on_a_lock(&db.pool).await;
        let killed: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
            .bind(waiting)
            .fetch_one(&db.pool)
            .await
            .unwrap();
        assert!(killed);
        // The killed session's rows of partition 0 were never committed: nothing but the
        // warm-up order is visible, however long the retry waits on the lock.
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(count(&db.pool, "enriched_orders").await, 1);
        blocker.rollback().await.unwrap();
    };
    let ((response, summary), ()) = tokio::join!(invocation, kill_then_release);
    assert_eq!(reported(&response), vec![], "{:?}", summary.failure);
    assert_eq!(summary.database_retries, 1);
    assert_eq!(
        rows(&db.pool).await,
        vec![
            row("SO-K1", "Jones", 2, 0, 1, JONES),
            row("SO-K2", "Jones", 3, 1, 0, JONES),
            row("SO-K3", "Jones", 4, 1, 1, JONES),
            row("SO-WARM", "Jones", 1, 0, 0, JONES),
        ]
    );
}

#[tokio::test]
async fn a_streamed_copy_stopped_by_a_row_lock_past_the_deadline_is_reported_and_never_commits() {
    let db = fresh_db().await;
    let app = app(&db.url, &[]).await;
    process(&app, event_of(&[(0, 0, "SO-WARM", "Jones", 1)])).await;

    let blocker = insert_uncommitted(&db.pool, "SO-L2").await;
    let batch = || {
        event_of(&[
            (0, 1, "SO-L1", "Jones", 2),
            (1, 0, "SO-L2", "Jones", 3),
            (1, 1, "SO-L3", "Jones", 4),
        ])
    };
    let started = std::time::Instant::now();
    let (response, summary) = process_by(
        &app,
        batch(),
        std::time::Instant::now() + Duration::from_millis(1500),
    )
    .await;
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        summary.failure,
        Some(msk_order_enricher::postgres::WriteFailure::Deadline)
    );
    assert_eq!(
        reported(&response),
        vec![("orders-0".into(), 1), ("orders-1".into(), 0)]
    );

    // The lock goes after the deadline: nothing of the reported batch commits, then or later.
    tokio::time::sleep(Duration::from_millis(500)).await;
    blocker.rollback().await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(count(&db.pool, "enriched_orders").await, 1);

    // The redelivery writes the batch, streamed.
    let (response, summary) = process(&app, batch()).await;
    assert_eq!(reported(&response), vec![], "{:?}", summary.failure);
    assert!(summary.write.streamed);
    assert_eq!(count(&db.pool, "enriched_orders").await, 4);
}

/// The backend of the function's one pooled connection.
async fn function_backend(pool: &sqlx::PgPool) -> Vec<i32> {
    sqlx::query_scalar(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'msk-order-enricher'",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_stopped_mid_copy_is_cut_at_the_deadline_and_the_next_batch_gets_a_new_connection(
) {
    let db = fresh_db().await;
    // One connection: the pool must replace it, not hand it out again.
    let app = app(&db.url, &[("DB_POOL_SIZE", "1")]).await;
    process(&app, event_of(&[(0, 0, "SO-WARM", "Jones", 1)])).await;
    let before = function_backend(&db.pool).await;
    assert_eq!(before.len(), 1);

    let blocker = insert_uncommitted(&db.pool, "SO-X2").await;
    let write = process_by(
        &app,
        event_of(&[(0, 1, "SO-X1", "Jones", 2), (1, 0, "SO-X2", "Jones", 3)]),
        std::time::Instant::now() + Duration::from_millis(1500),
    );
    let stop_the_server_side = async {
        // The COPY waits on the row lock; its backend is stopped, so that its own limits
        // cannot end the COPY first: the function's deadline cuts it short mid-COPY.
        let backend = copy_waiting_on_a_lock(&db.pool).await;
        // SAFETY: a plain signal to a process of the test server.
        assert_eq!(unsafe { libc::kill(backend, libc::SIGSTOP) }, 0);
        backend
    };
    let ((response, summary), backend) = tokio::join!(write, stop_the_server_side);
    assert_eq!(
        (summary.failure, reported(&response).len()),
        (
            Some(msk_order_enricher::postgres::WriteFailure::Deadline),
            2
        )
    );
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(backend, libc::SIGCONT) }, 0);
    blocker.rollback().await.unwrap();

    // The next batch is written, on a new connection.
    let (response, summary) = process(&app, event_of(&[(2, 0, "SO-X3", "Jones", 4)])).await;
    assert_eq!(reported(&response), vec![], "{:?}", summary.failure);
    let after = function_backend(&db.pool).await;
    assert_eq!(after.len(), 1);
    assert_ne!(after, before, "the cut connection was used again");
    assert_eq!(
        rows(&db.pool)
            .await
            .into_iter()
            .map(|row| row.0)
            .collect::<Vec<_>>(),
        ["SO-WARM", "SO-X3"],
        "nothing of the cut batch committed"
    );
}
