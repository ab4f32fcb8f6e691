//! Test helpers shared by the unit tests: decoded records and partitions of topic `orders`.

use crate::decode::event::{
    DecodedPartition, DecodedRecord, Header, PartitionKey, Payload, Poison, SourcePosition,
};
use crate::decode::order::Order;

/// An order of `customer` numbered `order_no`, parsed as a record value would be.
pub(crate) fn order(order_no: &str, customer: &str) -> Payload {
    let json = format!(
        r#"{{"OrderNo":"{order_no}","OrderDate":"1/6/19","Region":"East","Customer":"{customer}","Item":"Pencil","Units":95,"Unit Cost":1.99,"Total":189.05}}"#
    );
    Payload::Order(Order::parse(json.as_bytes()).unwrap())
}

/// A record of partition `partition` of topic `orders` at `offset`.
pub(crate) fn record(partition: i32, offset: i64, payload: Payload) -> DecodedRecord {
    DecodedRecord {
        source: SourcePosition {
            topic: "orders".into(),
            partition,
            offset,
            timestamp_ms: Some(1_700_000_000_000 + offset),
            timestamp_out_of_range: false,
        },
        payload,
    }
}

/// Partition `number` of topic `orders` with `records`.
pub(crate) fn partition(number: i32, records: Vec<DecodedRecord>) -> DecodedPartition {
    DecodedPartition {
        key: PartitionKey::new(format!("orders-{number}")),
        records,
    }
}

/// A value that is not JSON, with a key and a header.
pub(crate) fn poison() -> Payload {
    Payload::Poison(Poison {
        reason: "the value is not JSON".into(),
        raw_key: Some(b"k".to_vec()),
        raw_value: Some(b"{oops".to_vec()),
        headers: vec![Header {
            name: "trace".into(),
            value: Some(b"abc".to_vec()),
        }],
    })
}
