//! Retries never duplicate or reorder: replays of batches and partition suffixes change
//! nothing, and an older record never overwrites a newer one.

use msk_order_enricher::decode::event::KafkaEvent;
use test_support::events::{build_event, RecordSpec};

use crate::support::*;

#[tokio::test]
async fn replaying_a_batch_changes_nothing() {
    let db = fresh_db().await;
    let app = app(&db.url, &[]).await;
    process(&app, event("sample-orders.json")).await;
    let first = orders_snapshot(&db.pool).await;
    assert_eq!(first.len(), 10);
    for _ in 0..3 {
        let (response, summary) = process(&app, event("sample-orders.json")).await;
        assert_eq!(reported(&response), vec![]);
        assert_eq!(summary.write.orders_changed, 0);
    }
    assert_eq!(orders_snapshot(&db.pool).await, first);
}

#[tokio::test]
async fn replaying_a_partition_suffix_changes_nothing() {
    let db = fresh_db().await;
    let app = app(&db.url, &[]).await;
    process(&app, event("sample-orders.json")).await;
    let first = orders_snapshot(&db.pool).await;
    let mut suffix = event("sample-orders.json");
    suffix.records.retain(|key, _| key == "orders-1");
    suffix
        .records
        .get_mut("orders-1")
        .unwrap()
        .retain(|r| r.offset >= 2);
    assert_eq!(suffix.records["orders-1"].len(), 3);
    let (response, summary) = process(&app, suffix).await;
    assert_eq!(reported(&response), vec![]);
    assert_eq!(summary.write.orders_changed, 0);
    assert_eq!(orders_snapshot(&db.pool).await, first);
}

fn order_line(order_no: &str, customer: &str, units: u32) -> String {
    format!(
        r#"{{"OrderNo":"{order_no}","OrderDate":"1/6/19","Region":"East","Customer":"{customer}","Item":"Pencil","Units":{units},"Unit Cost":1.99,"Total":1.99}}"#
    )
}

/// A one-record event at `offset` of partition 0.
fn one_order(
    order_no: &str,
    customer: &str,
    units: u32,
    offset: i64,
    timestamp_ms: i64,
) -> KafkaEvent<'static> {
    let record = RecordSpec::from_order_line(&order_line(order_no, customer, units));
    parse_event(&build_event("orders", 1, [record], offset, timestamp_ms))
}

/// A stream of 300 records on one topic with 3 partitions, many of them updates of earlier
/// orders (same key, so same partition, later offset).
fn stream() -> KafkaEvent<'static> {
    let customers = ["Jones", "Kivell", "Gill", "Nobody"];
    let specs = (0..300u32).map(|i| {
        let order_no = format!("SO-{:03}", (i * 7) % 90);
        RecordSpec::from_order_line(&order_line(&order_no, customers[(i % 4) as usize], i))
    });
    parse_event(&build_event("orders", 3, specs, 0, 1_700_000_000_000))
}

/// Deterministic pseudo-random numbers (xorshift), so a failure can be reproduced.
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        usize::try_from(self.0 % n as u64).unwrap()
    }
}

#[tokio::test]
async fn any_interleaving_of_batches_and_redeliveries_equals_one_pass_in_order() {
    let reference = fresh_db().await;
    process(&app(&reference.url, &[]).await, stream()).await;
    let expected = orders_content(&reference.pool).await;
    assert_eq!(expected.len(), 90);

    let db = fresh_db().await;
    let app = app(&db.url, &[]).await;
    let full = stream();
    let mut rng = Rng(0x5eed_1234_abcd_0042);
    // Per partition, the position up to which records were delivered once.
    let mut delivered: Vec<(String, usize)> =
        full.records.keys().map(|k| (k.to_string(), 0)).collect();
    while delivered
        .iter()
        .any(|(key, done)| *done < full.records[key.as_str()].len())
    {
        let mut batch = full.clone();
        for (key, done) in delivered.iter_mut() {
            let records = batch.records.get_mut(key.as_str()).unwrap();
            let total = records.len();
            if *done > 0 && rng.below(3) == 0 {
                // A stale replay of records already written (a batch delivered again later).
                let end = 1 + rng.below(*done);
                let start = end.saturating_sub(1 + rng.below(30));
                *records = records[start..end].to_vec();
                continue;
            }
            // A redelivery starts at or before the first new record (a suffix replay), and a
            // batch ends anywhere after it, as Lambda's batching does.
            let start = done.saturating_sub(rng.below(20));
            let end = (*done + 1 + rng.below(40)).min(total);
            *records = records[start.min(end)..end].to_vec();
            *done = end.max(*done);
        }
        batch.records.retain(|_, records| !records.is_empty());
        let (response, _) = process(&app, batch).await;
        assert_eq!(reported(&response), vec![]);
    }
    // And a replay of the first half of every partition at the end, as after an offset reset.
    let mut first_half = stream();
    for records in first_half.records.values_mut() {
        records.truncate(records.len() / 2);
    }
    process(&app, first_half).await;
    assert_eq!(orders_content(&db.pool).await, expected);
}

#[tokio::test]
async fn an_older_record_never_overwrites_a_newer_one() {
    let db = fresh_db().await;
    let app = app(&db.url, &[]).await;
    let newer = one_order("SO-500", "Gill", 2, 20, 2_000);
    let older = one_order("SO-500", "Jones", 1, 10, 1_000);
    process(&app, newer).await;
    let (_, summary) = process(&app, older).await;
    assert_eq!(summary.write.orders_changed, 0);
    let row: (String, i64, String) = sqlx::query_as(
        "SELECT customer, source_offset, address FROM enriched_orders WHERE order_no = 'SO-500'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(row, ("Gill".into(), 20, "150 Carter Street".into()));

    let newest = one_order("SO-500", "Kivell", 3, 30, 3_000);
    let (_, summary) = process(&app, newest).await;
    assert_eq!(summary.write.orders_changed, 1);
    let customer: String =
        sqlx::query_scalar("SELECT customer FROM enriched_orders WHERE order_no = 'SO-500'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(customer, "Kivell");
}
