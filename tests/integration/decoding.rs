//! Decoding and planning on recorded MSK payloads (no database).

use msk_order_enricher::config::PoisonPolicy;
use msk_order_enricher::decode::event::{self, Payload};
use msk_order_enricher::plan::{self, WriteOutcome};
use msk_order_enricher::report::response;
use test_support::events::{build_event, synthetic_orders};

use crate::support::{event, reported};

fn order_nos(payloads: &[&Payload]) -> Vec<String> {
    payloads
        .iter()
        .map(|payload| match payload {
            Payload::Order(order) => order.order_no().to_owned(),
            Payload::Tombstone => "tombstone".to_owned(),
            Payload::Poison(poison) => format!("poison: {}", poison.reason),
        })
        .collect()
}

#[test]
fn multi_topic_payload_decodes_every_record() {
    let partitions = event::decode(event("multi-topic.json"));
    let keys: Vec<&str> = partitions.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(keys, vec!["eu.orders-v2-3", "orders-0", "orders.retry-1"]);
    let payloads = |i: usize| {
        partitions[i]
            .records
            .iter()
            .map(|r| &r.payload)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        order_nos(&payloads(0)),
        vec!["SO-002", "tombstone", "SO-003"]
    );
    assert_eq!(
        order_nos(&payloads(1)),
        vec!["SO-001", "tombstone", "SO-004"]
    );
    assert_eq!(order_nos(&payloads(2)), vec!["SO-005"]);
    let source = &partitions[0].records[2].source;
    assert_eq!(
        (&*source.topic, source.partition, source.offset),
        ("eu.orders-v2", 3, 9)
    );
    assert_eq!(source.timestamp_ms, Some(1545084651002));
}

#[test]
fn non_ascii_headers_survive_in_dead_letters() {
    let mut event = event("multi-topic.json");
    // Make the record with the "région" header undecodable, so its headers are kept.
    event.records.get_mut("orders-0").unwrap()[2].value = Some("e30=".into());
    let plan = plan::plan(event::decode(event), PoisonPolicy::DeadLetter);
    assert_eq!(plan.dead_letters.len(), 1);
    let header = &plan.dead_letters[0].poison.headers[0];
    assert_eq!(header.name, "région");
    assert_eq!(header.value.as_deref(), Some("Île-de-France".as_bytes()));
}

#[test]
fn self_managed_kafka_event_is_accepted() {
    let event = event("self-managed.json");
    assert_eq!(event.event_source.as_deref(), Some("SelfManagedKafka"));
    assert_eq!(event.event_source_arn, None);
    let plan = plan::plan(event::decode(event), PoisonPolicy::DeadLetter);
    let orders: Vec<(&str, i64)> = plan
        .orders
        .iter()
        .map(|o| (o.order.order_no(), o.source.offset))
        .collect();
    assert_eq!(orders, vec![("SO-006", 100), ("SO-007", 101)]);
}

#[test]
fn poison_fixture_plans_under_both_policies() {
    let dead_letter = plan::plan(
        event::decode(event("poison.json")),
        PoisonPolicy::DeadLetter,
    );
    let reasons: Vec<(i64, &str)> = dead_letter
        .dead_letters
        .iter()
        .map(|d| (d.source.offset, d.poison.reason.as_str()))
        .collect();
    assert_eq!(
        reasons,
        vec![
            (
                41,
                "value is not a valid order: EOF while parsing a value at line 1 column 20"
            ),
            (
                11,
                "value is not valid base64 (Invalid symbol 37, offset 0.); stored as received"
            ),
            (
                12,
                "value is not a valid order: missing field `Customer` at line 1 column 116"
            ),
        ]
    );
    assert_eq!(
        reported(&response::for_batch(
            &dead_letter,
            WriteOutcome::Committed,
            &[]
        )),
        vec![]
    );

    let report = plan::plan(event::decode(event("poison.json")), PoisonPolicy::Report);
    assert_eq!(
        reported(&response::for_batch(&report, WriteOutcome::Committed, &[])),
        vec![("orders-0".to_owned(), 41), ("orders-1".to_owned(), 11)]
    );
    let orders: Vec<&str> = report.orders.iter().map(|o| o.order.order_no()).collect();
    assert_eq!(orders, vec!["SO-001", "SO-002", "SO-005"]);
}

/// A batch at the event source mapping's limits: 10,000 records, just under the 6 MB payload cap.
pub(crate) fn large_event() -> msk_order_enricher::decode::event::KafkaEvent<'static> {
    crate::support::parse_event(&build_event(
        "orders",
        4,
        synthetic_orders(10_000, 0, 500),
        1_000_000,
        1_700_000_000_000,
    ))
}

#[test]
fn ten_thousand_record_batch_near_the_6_mb_limit() {
    let event = large_event();
    let size = serde_json::to_vec(&event).unwrap().len();
    assert!(
        (5_500_000..6_000_000).contains(&size),
        "payload is {size} bytes"
    );
    let text = serde_json::to_string(&event).unwrap();
    let reparsed: msk_order_enricher::decode::event::KafkaEvent<'_> =
        serde_json::from_str(&text).unwrap();
    let plan = plan::plan(event::decode(reparsed), PoisonPolicy::DeadLetter);
    assert_eq!(plan.counts.received, 10_000);
    assert_eq!(plan.orders.len(), 10_000);
    assert_eq!(plan.dead_letters.len(), 0);
    assert_eq!(plan.distinct_customers().len(), 500);
    assert_eq!(plan.partitions.len(), 4);
}
