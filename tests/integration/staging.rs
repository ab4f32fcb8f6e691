//! The write's two paths against a real PostgreSQL: new orders copied straight into
//! `enriched_orders`, and the general path through the session's staging table (the temporary
//! `incoming_orders`) when one of them exists already: which path a write takes, that both leave
//! the same rows, concurrent writers of the same orders, several writes in one transaction, the
//! table across commits, and a role that may not create it.

use std::collections::HashMap;

use msk_order_enricher::config::PoisonPolicy;
use msk_order_enricher::decode::event;
use msk_order_enricher::enrich::location::Locations;
use msk_order_enricher::plan::{self, Plan};
use msk_order_enricher::postgres::errors::ErrorClass;
use msk_order_enricher::postgres::statements;
use msk_order_enricher::postgres::WriteFailure;
use sqlx::{Connection as _, Row};
use test_support::events::{build_event, RecordSpec};

use crate::support::*;

/// `SO-1` for Jones with `units`, alone in partition 0 of `orders` at `offset`.
fn one_order_plan(units: u32, offset: i64) -> Plan {
    let line = format!(
        r#"{{"OrderNo":"SO-1","OrderDate":"1/6/19","Region":"East","Customer":"Jones","Item":"Pencil","Units":{units},"Unit Cost":1.99,"Total":1.99}}"#
    );
    let event = parse_event(&build_event(
        "orders",
        1,
        [RecordSpec::from_order_line(&line)],
        offset,
        1_700_000_000_000 + offset,
    ));
    plan::plan(event::decode(event), PoisonPolicy::DeadLetter)
}

/// Orders `SO-<n>` for Jones, one per `(n, units)`, all in partition 0 of `orders` from
/// `offset` on.
fn orders_plan(orders: &[(u32, u32)], offset: i64) -> Plan {
    let records = orders.iter().map(|(n, units)| {
        RecordSpec::from_order_line(&format!(
            r#"{{"OrderNo":"SO-{n}","OrderDate":"1/6/19","Region":"East","Customer":"Jones","Item":"Pencil","Units":{units},"Unit Cost":1.99,"Total":1.99}}"#
        ))
    });
    let event = parse_event(&build_event(
        "orders",
        1,
        records,
        offset,
        1_700_000_000_000 + offset,
    ));
    plan::plan(event::decode(event), PoisonPolicy::DeadLetter)
}

async fn order_rows(pool: &sqlx::PgPool) -> Vec<(String, i32, i64)> {
    sqlx::query_as("SELECT order_no, units, source_offset FROM enriched_orders ORDER BY order_no")
        .fetch_all(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn new_orders_are_copied_straight_in_and_a_batch_with_a_known_order_is_upserted() {
    let db = fresh_db().await;
    let mut conn = db.pool.acquire().await.unwrap();
    let locations: Locations = HashMap::new();

    let mut tx = conn.begin().await.unwrap();
    let first = statements::write(&mut tx, &orders_plan(&[(1, 10), (2, 20)], 0), &locations)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        (first.orders_changed, first.upserted, first.round_trips),
        (2, false, 2),
        "two new orders: prepare, then one COPY into enriched_orders"
    );
    let staged_first: i64 = sqlx::query_scalar(
        "SELECT n_tup_ins FROM pg_stat_xact_user_tables WHERE relname = 'incoming_orders'",
    )
    .fetch_optional(&mut *conn)
    .await
    .unwrap()
    .unwrap_or(0);
    assert_eq!(staged_first, 0, "nothing went through the staging table");

    // SO-2 exists (offset 1): the direct COPY fails on it and is undone; the upsert then
    // replaces SO-2 with the newer record and inserts SO-3.
    let mut tx = conn.begin().await.unwrap();
    let second = statements::write(&mut tx, &orders_plan(&[(2, 21), (3, 30)], 5), &locations)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        (second.orders_changed, second.upserted, second.round_trips),
        (2, true, 5),
        "prepare, the failed COPY, its rollback, the staging COPY, the upsert"
    );
    assert_eq!(second.customers_not_found, 2, "counted once, not per path");

    // The same batch again: every order exists with these offsets, nothing changes.
    let mut tx = conn.begin().await.unwrap();
    let replay = statements::write(&mut tx, &orders_plan(&[(2, 21), (3, 30)], 5), &locations)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!((replay.orders_changed, replay.upserted), (0, true));

    assert_eq!(
        order_rows(&db.pool).await,
        vec![
            ("SO-1".to_owned(), 10, 0),
            ("SO-2".to_owned(), 21, 5),
            ("SO-3".to_owned(), 30, 6)
        ]
    );
}

#[tokio::test]
async fn concurrent_writers_of_the_same_new_orders_leave_the_newest_records() {
    let db = fresh_db().await;
    let locations: Locations = HashMap::new();
    // The first writer copies SO-1 and SO-2 in and holds its transaction open; the second,
    // with newer records of both, waits on the primary key, meets the committed rows when the
    // first commits, and upserts over them.
    let mut first_conn = db.pool.acquire().await.unwrap();
    let mut first = first_conn.begin().await.unwrap();
    let older = statements::write(&mut first, &orders_plan(&[(1, 1), (2, 2)], 0), &locations)
        .await
        .unwrap();
    assert!(!older.upserted);

    let pool = db.pool.clone();
    let second = tokio::spawn(async move {
        let mut conn = pool.acquire().await.unwrap();
        let mut tx = conn.begin().await.unwrap();
        let stats = statements::write(
            &mut tx,
            &orders_plan(&[(1, 11), (2, 12)], 10),
            &HashMap::new(),
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        stats
    });
    // The second writer is waiting on the first one's rows before the first commits.
    // Its own connection: the two writers hold both of the test pool's.
    let observer = sqlx::PgPool::connect(&db.url).await.unwrap();
    copy_waiting_on_a_lock(&observer).await;
    first.commit().await.unwrap();
    let newer = second.await.unwrap();
    assert_eq!((newer.orders_changed, newer.upserted), (2, true));
    assert_eq!(
        order_rows(&db.pool).await,
        vec![("SO-1".to_owned(), 11, 10), ("SO-2".to_owned(), 12, 11)]
    );
}

#[tokio::test]
async fn a_second_write_in_the_same_transaction_stages_only_its_own_rows() {
    let db = fresh_db().await;
    let mut conn = db.pool.acquire().await.unwrap();
    let locations: Locations = HashMap::new();
    let mut tx = conn.begin().await.unwrap();
    let newer = statements::write(&mut tx, &one_order_plan(7, 5), &locations)
        .await
        .unwrap();
    assert_eq!(newer.orders_changed, 1);
    // The same order, an older record of the same partition: it changes nothing, and its
    // upsert reads its own row only, not the first write's again.
    let older = statements::write(&mut tx, &one_order_plan(3, 2), &locations)
        .await
        .unwrap();
    assert_eq!(older.orders_changed, 0);
    let staged: Vec<(i64, i32)> =
        sqlx::query_as("SELECT source_offset, units FROM pg_temp.incoming_orders")
            .fetch_all(&mut *tx)
            .await
            .unwrap();
    assert_eq!(staged, vec![(2, 3)]);
    tx.commit().await.unwrap();

    let row =
        sqlx::query("SELECT units, source_offset FROM enriched_orders WHERE order_no = 'SO-1'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(
        (row.get::<i32, _>(0), row.get::<i64, _>(1)),
        (7, 5),
        "the newer record stays"
    );
}

#[tokio::test]
async fn the_staging_table_is_empty_after_each_commit_and_reused_by_the_session() {
    let db = fresh_db().await;
    let mut conn = db.pool.acquire().await.unwrap();
    let locations: Locations = HashMap::new();
    for (units, offset) in [(1, 0), (2, 1), (3, 2)] {
        let mut tx = conn.begin().await.unwrap();
        let stats = statements::write(&mut tx, &one_order_plan(units, offset), &locations)
            .await
            .unwrap();
        assert_eq!(stats.orders_changed, 1, "offset {offset} replaces the row");
        tx.commit().await.unwrap();
        let staged: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_temp.incoming_orders")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        assert_eq!(
            staged, 0,
            "nothing stays staged after the commit at offset {offset}"
        );
    }
    let units: i32 =
        sqlx::query_scalar("SELECT units FROM enriched_orders WHERE order_no = 'SO-1'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(units, 3);
    // Written by the three transactions of one session: one staging table, created once.
    let tables: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_class WHERE relname = 'incoming_orders' AND relpersistence = 't'",
    )
    .fetch_one(&mut *conn)
    .await
    .unwrap();
    assert_eq!(tables, 1);
}

#[tokio::test]
async fn a_role_that_may_not_create_temporary_tables_gets_its_batch_reported_with_the_grants_it_needs(
) {
    let db = fresh_db().await;
    let database: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    let role = format!("{database}_writer");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE ROLE {role} LOGIN PASSWORD 'writer';
         GRANT SELECT ON customers TO {role};
         GRANT SELECT, INSERT, UPDATE ON enriched_orders, dead_letters TO {role};
         REVOKE TEMPORARY ON DATABASE {database} FROM PUBLIC"
    )))
    .execute(&db.pool)
    .await
    .unwrap();
    let (_, server) = db.url.split_once('@').unwrap();
    let app = app(&format!("postgres://{role}:writer@{server}"), &[]).await;

    let (response, summary) = process(&app, event("poison.json")).await;
    assert_eq!(reported(&response), poison_json_reported_whole());
    let Some(WriteFailure::Database {
        class,
        sqlstate,
        message,
    }) = summary.failure
    else {
        panic!("expected a database failure, got {:?}", summary.failure)
    };
    assert_eq!(
        (class, sqlstate.as_deref()),
        (ErrorClass::Permanent, Some("42501"))
    );
    assert!(
        message.contains("TEMPORARY on the database, for the write's staging table"),
        "{message}"
    );
    assert_eq!(count(&db.pool, "enriched_orders").await, 0);
    assert_eq!(count(&db.pool, "dead_letters").await, 0);
}
