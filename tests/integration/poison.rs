//! Poison records under both policies: never blocking a partition, never lost.

use crate::support::*;

/// topic, partition, offset, partition key, raw key, raw value, headers, reason
type DeadLetterRow = (
    String,
    i32,
    i64,
    String,
    Option<Vec<u8>>,
    Option<Vec<u8>>,
    String,
    String,
);

#[tokio::test]
async fn dead_letter_policy_keeps_poison_records_and_writes_everything_else() {
    let db = fresh_db().await;
    let app = app(&db.url, &[]).await;
    let (response, summary) = process(&app, event("poison.json")).await;
    assert_eq!(reported(&response), vec![]);
    assert_eq!(
        (
            summary.counts.dead_lettered,
            summary.write.dead_letters_inserted
        ),
        (3, 3)
    );
    let orders: Vec<String> =
        sqlx::query_scalar("SELECT order_no FROM enriched_orders ORDER BY order_no")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(
        orders,
        vec!["SO-001", "SO-002", "SO-003", "SO-004", "SO-005"]
    );

    let dead: Vec<DeadLetterRow> = sqlx::query_as(
        "SELECT source_topic, source_partition, source_offset, partition_key, raw_key, raw_value, headers::text, reason
         FROM dead_letters ORDER BY source_partition, source_offset",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(dead.len(), 3);
    assert_eq!(
        dead[0],
        (
            "orders".into(),
            0,
            41,
            "orders-0".into(),
            Some(b"SO-BAD".to_vec()),
            Some(br#"{"OrderNo":"SO-BAD","#.to_vec()),
            r#"[{"name": "source", "value": "legacy"}]"#.into(),
            "value is not a valid order: EOF while parsing a value at line 1 column 20".into()
        )
    );
    assert_eq!(
        (dead[1].2, dead[1].5.as_deref()),
        (11, Some(&b"%%not-base64%%"[..]))
    );
    assert_eq!(
        dead[1].7,
        "value is not valid base64 (Invalid symbol 37, offset 0.); stored as received"
    );
    assert_eq!(dead[2].2, 12);
    assert!(
        dead[2].7.contains("missing field `Customer`"),
        "{}",
        dead[2].7
    );

    // Redelivery of the same batch adds nothing.
    let (response, summary) = process(&app, event("poison.json")).await;
    assert_eq!(reported(&response), vec![]);
    assert_eq!(
        (
            summary.write.dead_letters_inserted,
            summary.write.orders_changed
        ),
        (0, 0)
    );
    assert_eq!(count(&db.pool, "dead_letters").await, 3);
}

#[tokio::test]
async fn report_policy_stops_each_partition_at_its_poison_record() {
    let db = fresh_db().await;
    let app = app(&db.url, &[("POISON_RECORD_POLICY", "report")]).await;
    let (response, summary) = process(&app, event("poison.json")).await;
    assert_eq!(
        reported(&response),
        vec![("orders-0".into(), 41), ("orders-1".into(), 11)]
    );
    assert_eq!(
        (summary.counts.poison_reported, summary.counts.held_back),
        (2, 3)
    );
    let orders: Vec<String> =
        sqlx::query_scalar("SELECT order_no FROM enriched_orders ORDER BY order_no")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    // SO-004 (after 41) and SO-003 (after 11) wait for the redelivery; other partitions went on.
    assert_eq!(orders, vec!["SO-001", "SO-002", "SO-005"]);
    assert_eq!(count(&db.pool, "dead_letters").await, 0);

    // Lambda redelivers from the reported offsets: the poison record still stops its partition.
    let mut redelivery = event("poison.json");
    redelivery
        .records
        .get_mut("orders-0")
        .unwrap()
        .retain(|r| r.offset >= 41);
    redelivery
        .records
        .get_mut("orders-1")
        .unwrap()
        .retain(|r| r.offset >= 11);
    redelivery.records.remove("orders-2");
    let before = orders_snapshot(&db.pool).await;
    let (response, _) = process(&app, redelivery).await;
    assert_eq!(
        reported(&response),
        vec![("orders-0".into(), 41), ("orders-1".into(), 11)]
    );
    assert_eq!(orders_snapshot(&db.pool).await, before);
}

/// A record whose field holds a long, personal value in the wrong place: its dead letter keeps
/// the value in `raw_value` only; the reason, in the table and in everything the function
/// prints, names the field and the value's length, never the value.
#[tokio::test]
async fn a_dead_letter_reason_never_carries_the_value() {
    use std::path::Path;
    use std::time::Duration;

    let db = fresh_db().await;
    let secret = format!("Jane Doe, 12 Main Street, {}", "x".repeat(10_000));
    let value =
        order_line("SO-P1", "Jones", 1).replace("\"Units\":1", &format!("\"Units\":\"{secret}\""));
    let event = test_support::events::build_event(
        "orders",
        1,
        [test_support::events::RecordSpec::from_order_line(&value)],
        7,
        1_700_000_000_000,
    );
    let api = esm_local::runtime_api::RuntimeApi::start().await.unwrap();
    let mut command = api.function_command(Path::new(env!("CARGO_BIN_EXE_msk-order-enricher")));
    command.env("DATABASE_URL", &db.url);
    let function = Running::spawn(&mut command);
    let answer = api.invoke(event, Duration::from_secs(30)).await.unwrap();
    let printed = function.stop().await;

    assert!(
        matches!(&answer, esm_local::runtime_api::Answer::Response(body) if body.as_ref() == br#"{"batchItemFailures":[]}"#),
        "{answer:?}"
    );
    let (reason, raw_value): (String, Vec<u8>) =
        sqlx::query_as("SELECT reason, raw_value FROM dead_letters")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(
        reason,
        format!(
            "value is not a valid order: invalid type: string ({} characters), expected i32 at line 1 column {}",
            secret.len(),
            value.find("\"Unit Cost\"").unwrap() - 1
        )
    );
    assert_eq!(raw_value, value.as_bytes(), "the value itself is kept");
    assert!(printed.contains("record dead-lettered"), "{printed}");
    assert!(
        !printed.contains("Jane Doe"),
        "the value appeared in the function's output"
    );
}
