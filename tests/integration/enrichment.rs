//! Enrichment of orders with customer locations, against a real PostgreSQL.

use crate::support::*;

#[tokio::test]
async fn every_sample_order_gets_its_customer_location() {
    let db = fresh_db().await;
    let app = app(&db.url, &[]).await;
    let (response, summary) = process(&app, event("sample-orders.json")).await;
    assert_eq!(reported(&response), vec![]);
    assert_eq!(summary.failure, None);
    assert_eq!(summary.counts.orders, 10);
    assert_eq!(summary.write.orders_changed, 10);
    assert_eq!(summary.write.customers_not_found, 0);

    assert_eq!(
        location_of(&db.pool, "SO-001").await,
        (
            Some("1745 T Street Southeast".into()),
            Some("-76.979235".into()),
            Some("38.867033".into()),
            true
        )
    );
    // Every order carries exactly its customer's row, digits and all.
    let mismatches: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM enriched_orders o JOIN customers c ON c.customer_name = o.customer
         WHERE o.address IS DISTINCT FROM c.address OR o.longitude::text IS DISTINCT FROM c.longitude::text
            OR o.latitude::text IS DISTINCT FROM c.latitude::text",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(mismatches, 0);
    assert_eq!(
        location_of(&db.pool, "SO-009").await,
        (
            Some("637 Britannia Drive".into()),
            Some("-122.193849".into()),
            Some("38.1047699999999".into()),
            true
        )
    );
    let so1: (String, String, String, String, i32) = sqlx::query_as(
        "SELECT order_date::text, unit_cost::text, total::text, source_topic, units FROM enriched_orders WHERE order_no = 'SO-001'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(
        so1,
        (
            "2019-01-06".into(),
            "1.99".into(),
            "189.05".into(),
            "orders".into(),
            95
        )
    );
}

#[tokio::test]
async fn unknown_customer_is_written_without_location_and_counted() {
    let db = fresh_db().await;
    let app = app(&db.url, &[]).await;
    let (response, summary) = process(&app, event("unknown-customer.json")).await;
    assert_eq!(reported(&response), vec![]);
    assert_eq!(summary.write.customers_not_found, 1);
    assert_eq!(
        location_of(&db.pool, "SO-011").await,
        (None, None, None, false)
    );
}

#[tokio::test]
async fn one_lookup_for_all_customers_then_the_cache_answers() {
    let db = fresh_db().await;
    let app = app(&db.url, &[]).await;
    let (_, first) = process(&app, event("sample-orders.json")).await;
    // Ten orders, seven distinct customers, one query.
    assert_eq!(
        (
            first.lookup.cache_hits,
            first.lookup.looked_up,
            first.lookup.round_trips
        ),
        (0, 7, 1)
    );
    let (_, second) = process(&app, event("sample-orders.json")).await;
    assert_eq!(
        (
            second.lookup.cache_hits,
            second.lookup.looked_up,
            second.lookup.round_trips
        ),
        (7, 0, 0)
    );
    // An unknown customer is remembered too: it costs one lookup, not one per batch.
    let (_, third) = process(&app, event("unknown-customer.json")).await;
    assert_eq!(third.lookup.round_trips, 1);
    let (_, fourth) = process(&app, event("unknown-customer.json")).await;
    assert_eq!(
        (fourth.lookup.cache_hits, fourth.lookup.round_trips),
        (1, 0)
    );
}

#[tokio::test]
async fn with_the_cache_off_a_changed_address_is_seen_at_once() {
    let db = fresh_db().await;
    let app = app(&db.url, &[("CACHE_TTL_SECONDS", "0")]).await;
    process(&app, event("sample-orders.json")).await;
    sqlx::query("UPDATE customers SET address = '1 New Street' WHERE customer_name = 'Jones'")
        .execute(&db.pool)
        .await
        .unwrap();
    let mut newer = event("sample-orders.json");
    for records in newer.records.values_mut() {
        for record in records {
            record.offset += 100;
        }
    }
    let (_, summary) = process(&app, newer).await;
    assert_eq!(summary.lookup.round_trips, 1);
    assert_eq!(
        location_of(&db.pool, "SO-001").await.0.as_deref(),
        Some("1 New Street")
    );
}

#[tokio::test]
async fn multi_topic_and_self_managed_events_are_written_with_their_sources() {
    let db = fresh_db().await;
    let app = app(&db.url, &[]).await;
    let (response, summary) = process(&app, event("multi-topic.json")).await;
    assert_eq!(reported(&response), vec![]);
    assert_eq!((summary.counts.orders, summary.counts.tombstones), (5, 2));
    let (response, _) = process(&app, event("self-managed.json")).await;
    assert_eq!(reported(&response), vec![]);
    let sources: Vec<(String, String, i32, i64)> =
        sqlx::query_as("SELECT order_no, source_topic, source_partition, source_offset FROM enriched_orders ORDER BY order_no")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(
        sources,
        vec![
            ("SO-001".into(), "orders".into(), 0, 15),
            ("SO-002".into(), "eu.orders-v2".into(), 3, 7),
            ("SO-003".into(), "eu.orders-v2".into(), 3, 9),
            ("SO-004".into(), "orders".into(), 0, 17),
            ("SO-005".into(), "orders.retry".into(), 1, 0),
            ("SO-006".into(), "orders".into(), 2, 100),
            ("SO-007".into(), "orders".into(), 2, 101),
        ]
    );
}

/// A `customers` row the function cannot read (a `NaN` coordinate, which `numeric` accepts)
/// degrades the orders of that customer to "not found" and fails nothing: the batch, its other
/// partition included, is written on the first delivery, and the row is counted.
#[tokio::test]
async fn an_unreadable_customer_row_is_written_without_a_location_and_blocks_nothing() {
    let db = fresh_db().await;
    sqlx::query(
        "INSERT INTO customers (customer_name, address, longitude, latitude) VALUES ('NaNCo', '1 Odd Street', 'NaN', 'NaN')",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let app = app(&db.url, &[]).await;
    let records: [Spec<'_>; 2] = [(0, 1, "SO-N1", "Jones", 1), (1, 1, "SO-N2", "NaNCo", 2)];
    let (response, summary) = process(&app, event_of(&records)).await;

    assert_eq!(reported(&response), vec![], "{:?}", summary.failure);
    assert_eq!(
        (
            summary.orders_written,
            summary.lookup.unreadable,
            summary.write.customers_not_found
        ),
        (2, 1, 1)
    );
    let found: Vec<(String, bool, Option<String>)> = sqlx::query_as(
        "SELECT order_no, customer_found, address FROM enriched_orders ORDER BY order_no",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(
        found,
        [
            (
                "SO-N1".to_owned(),
                true,
                Some("1745 T Street Southeast".to_owned())
            ),
            ("SO-N2".to_owned(), false, None),
        ]
    );
}
