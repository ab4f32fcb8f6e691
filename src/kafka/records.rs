//! Pure: the records the output topic gets for a plan, and the batch response once their
//! deliveries are known. No I/O here; [`crate::kafka::producer`] sends what this module builds.
//!
//! Each order of the plan becomes one record keyed by its order number, with the order, its
//! customer's location and the source position (as headers, so that consumers can drop the
//! duplicates that at-least-once delivery brings). With Kafka as the only sink, each dead letter
//! becomes a record of the dead-letter topic with the original key, value and headers, and the
//! reason in a header. Records of one input partition stay in offset order.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::Write as _;

use crate::decode::event::{PartitionKey, SourcePosition};
use crate::decode::order::Order;
use crate::enrich::location::{Location, Locations};
use crate::plan::{Plan, PlannedOrder};

/// Header naming the record's source topic.
pub const SOURCE_TOPIC: &str = "source-topic";
/// Header with the source partition (decimal text).
pub const SOURCE_PARTITION: &str = "source-partition";
/// Header with the source offset (decimal text).
pub const SOURCE_OFFSET: &str = "source-offset";
/// Header with the source record's timestamp (epoch milliseconds, decimal text), when it had one.
pub const SOURCE_TIMESTAMP: &str = "source-timestamp";
/// Header of a dead-letter record: why it could not be processed.
pub const DEAD_LETTER_REASON: &str = "dead-letter-reason";

/// Which topic a record goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topic {
    /// `OUTPUT_TOPIC`: an enriched order.
    Orders,
    /// `DEAD_LETTER_TOPIC`: a record set aside, as it arrived.
    DeadLetters,
}

/// One record to produce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The input record's offset: what is reported when this record is not delivered.
    pub offset: i64,
    /// Its topic.
    pub destination: Topic,
    /// The record key (the order number for orders).
    pub key: Option<Vec<u8>>,
    /// The record value.
    pub value: Option<Vec<u8>>,
    /// The headers, in order (the names of this module's own headers are static).
    pub headers: Vec<(Cow<'static, str>, Option<Vec<u8>>)>,
}

/// The records of one input partition, in offset order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionRecords {
    /// The `records` key of the input partition.
    pub key: PartitionKey,
    /// Its records to produce.
    pub records: Vec<Record>,
}

/// The records to produce for `plan`, per input partition, in offset order. `refused[i]` is
/// whether the database refused `plan.orders[i]` (it is a dead letter in the database then, not
/// an order); orders past the end of `refused` were not refused. Dead letters are included
/// only when `dead_letters_to_kafka` (Kafka is the only sink).
pub fn build(
    plan: &Plan,
    locations: &Locations,
    refused: &[bool],
    dead_letters_to_kafka: bool,
) -> Vec<PartitionRecords> {
    let mut partitions: Vec<PartitionRecords> = plan
        .partitions
        .iter()
        .map(|progress| PartitionRecords {
            key: progress.key.clone(),
            records: Vec::new(),
        })
        .collect();
    let index_of = |key: &str| plan.partitions.iter().position(|p| p.key.as_str() == key);
    let mut orders_by_partition: Vec<Vec<Record>> = plan
        .partitions
        .iter()
        .map(|_| Vec::with_capacity(plan.orders.len() / plan.partitions.len().max(1) + 1))
        .collect();
    // A batch has far fewer customers than orders: each location is written out once.
    let mut location_json = LocationJson::new();
    let mut key_text = String::new();
    // The plan's orders come partition by partition: look a partition up when it changes.
    let mut current: Option<(&str, i32, Option<usize>)> = None;
    for (index, planned) in plan.orders.iter().enumerate() {
        if refused.get(index).copied().unwrap_or(false) {
            continue;
        }
        let source = &planned.source;
        let at = match current {
            Some((topic, partition, at))
                if topic == &*source.topic && partition == source.partition =>
            {
                at
            }
            _ => {
                key_text.clear();
                let _ = write!(key_text, "{}-{}", source.topic, source.partition);
                let at = index_of(&key_text);
                current = Some((&source.topic, source.partition, at));
                at
            }
        };
        let Some(at) = at else {
            continue;
        };
        orders_by_partition[at].push(order_record(planned, locations, &mut location_json));
    }
    for (partition, orders) in partitions.iter_mut().zip(orders_by_partition) {
        partition.records = orders;
    }
    if dead_letters_to_kafka {
        for dead in &plan.dead_letters {
            let Some(at) = index_of(dead.partition_key.as_str()) else {
                continue;
            };
            let mut headers: Vec<(Cow<'static, str>, Option<Vec<u8>>)> = dead
                .poison
                .headers
                .iter()
                .map(|header| (Cow::Owned(header.name.clone()), header.value.clone()))
                .collect();
            headers.extend(source_headers(&dead.source));
            headers.push((
                Cow::Borrowed(DEAD_LETTER_REASON),
                Some(dead.poison.reason.clone().into_bytes()),
            ));
            partitions[at].records.push(Record {
                offset: dead.source.offset,
                destination: Topic::DeadLetters,
                key: dead.poison.raw_key.clone(),
                value: dead.poison.raw_value.clone(),
                headers,
            });
        }
    }
    for partition in &mut partitions {
        // Stable: a record never shares its offset with another of its partition anyway.
        partition.records.sort_by_key(|record| record.offset);
    }
    partitions.retain(|partition| !partition.records.is_empty());
    partitions
}

/// Each customer's location as [`location_fields`] writes it, written once per batch.
type LocationJson = std::collections::HashMap<String, Vec<u8>>;

/// The record of one planned order.
fn order_record(
    planned: &PlannedOrder,
    locations: &Locations,
    location_json: &mut LocationJson,
) -> Record {
    let order = &planned.order;
    let location = match location_json.get(order.customer()) {
        Some(location) => location,
        None => location_json
            .entry(order.customer().to_owned())
            .or_insert_with(|| {
                location_fields(locations.get(order.customer()).and_then(Option::as_ref))
            }),
    };
    Record {
        offset: planned.source.offset,
        destination: Topic::Orders,
        key: Some(order.order_no().as_bytes().to_vec()),
        value: Some(order_json(order, location)),
        headers: source_headers(&planned.source),
    }
}

/// The records of a batch's orders built a partition at a time, while the database write
/// streams them: for both sinks (the dead letters go to the database) and before the database
/// has refused any order. Adding every partition's orders as the plan holds them gives what
/// [`build`] gives with nothing refused and no dead letters to Kafka.
#[derive(Debug, Default)]
pub struct OrderRecords {
    /// The location each customer's records were built with.
    location_json: LocationJson,
    partitions: Vec<PartitionRecords>,
}

impl OrderRecords {
    /// Builds the records of `orders`, the planned orders of the input partition `key`.
    pub fn add(&mut self, key: &PartitionKey, orders: &[PlannedOrder], locations: &Locations) {
        if orders.is_empty() {
            return;
        }
        let mut records: Vec<Record> = orders
            .iter()
            .map(|planned| order_record(planned, locations, &mut self.location_json))
            .collect();
        records.sort_by_key(|record| record.offset);
        self.partitions.push(PartitionRecords {
            key: key.clone(),
            records,
        });
    }

    /// Whether every order of `plan` has its record here (one record per planned order).
    pub fn covers(&self, plan: &Plan) -> bool {
        let records: usize = self.partitions.iter().map(|p| p.records.len()).sum();
        records == plan.orders.len()
    }

    /// The records of every partition added, in the order they were added; `None` when a
    /// customer's location in `locations` is not the one its records were built with (an
    /// entry of the cache expired before the write looked the customers up again).
    pub fn finish(self, locations: &Locations) -> Option<Vec<PartitionRecords>> {
        let same = self.location_json.iter().all(|(customer, built_with)| {
            locations
                .get(customer.as_str())
                .is_some_and(|location| *built_with == location_fields(location.as_ref()))
        });
        same.then_some(self.partitions)
    }
}

/// The output value: the order with the input topic's field names (the date as ISO 8601),
/// ending with `location`, its customer's location as [`location_fields`] writes it. Decimals
/// are written exactly as they are held, never through a float. Written straight into one
/// buffer: this runs for every order of a batch between the commit and the first record
/// produced.
fn order_json(order: &Order, location: &[u8]) -> Vec<u8> {
    let mut value = Vec::with_capacity(200 + location.len());
    value.extend_from_slice(br#"{"OrderNo":"#);
    json_string(&mut value, order.order_no());
    let _ = write!(value, r#","OrderDate":"{}","Region":"#, order.order_date());
    json_string(&mut value, order.region());
    value.extend_from_slice(br#","Customer":"#);
    json_string(&mut value, order.customer());
    value.extend_from_slice(br#","Item":"#);
    json_string(&mut value, order.item());
    let _ = write!(
        value,
        r#","Units":{},"Unit Cost":{},"Total":{},"#,
        order.units(),
        order.unit_cost(),
        order.total()
    );
    value.extend_from_slice(location);
    value.push(b'}');
    value
}

/// `"Address":...,"Longitude":...,"Latitude":...` of `location`, each `null` when unknown.
fn location_fields(location: Option<&Location>) -> Vec<u8> {
    let mut fields = Vec::with_capacity(96);
    fields.extend_from_slice(br#""Address":"#);
    match location.and_then(|l| l.address.as_deref()) {
        Some(address) => json_string(&mut fields, address),
        None => fields.extend_from_slice(b"null"),
    }
    fields.extend_from_slice(br#","Longitude":"#);
    json_decimal(&mut fields, location.and_then(|l| l.longitude));
    fields.extend_from_slice(br#","Latitude":"#);
    json_decimal(&mut fields, location.and_then(|l| l.latitude));
    fields
}

/// `text` as a JSON string, escaped by serde_json (writing to a vector cannot fail).
fn json_string(out: &mut Vec<u8>, text: &str) {
    let _ = serde_json::to_writer(&mut *out, text);
}

fn json_decimal(out: &mut Vec<u8>, decimal: Option<rust_decimal::Decimal>) {
    match decimal {
        Some(decimal) => {
            let _ = write!(out, "{decimal}");
        }
        None => out.extend_from_slice(b"null"),
    }
}

fn source_headers(source: &SourcePosition) -> Vec<(Cow<'static, str>, Option<Vec<u8>>)> {
    let mut headers = Vec::with_capacity(4);
    headers.push((
        Cow::Borrowed(SOURCE_TOPIC),
        Some(source.topic.as_bytes().to_vec()),
    ));
    headers.push((
        Cow::Borrowed(SOURCE_PARTITION),
        Some(source.partition.to_string().into_bytes()),
    ));
    headers.push((
        Cow::Borrowed(SOURCE_OFFSET),
        Some(source.offset.to_string().into_bytes()),
    ));
    if let Some(timestamp) = source.timestamp_ms {
        headers.push((
            Cow::Borrowed(SOURCE_TIMESTAMP),
            Some(timestamp.to_string().into_bytes()),
        ));
    }
    headers
}

/// A record of a partition that was not delivered: the partition is redelivered from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Undelivered {
    /// The input partition.
    pub partition: PartitionKey,
    /// The offset of its first record that was not delivered.
    pub offset: i64,
    /// Why (the broker's or the client's error, with the setting to check).
    pub reason: String,
}

#[cfg(test)]
mod tests {
    use std::str::FromStr as _;

    use rust_decimal::Decimal;

    use super::*;
    use crate::config::PoisonPolicy;
    use crate::decode::event::{DecodedPartition, Payload};
    use crate::enrich::location::Location;
    use crate::plan::plan;
    use crate::testing::{order, partition, poison, record};

    fn jones() -> Locations {
        let mut locations = Locations::new();
        locations.insert(
            "Jones".into(),
            Some(Location {
                address: Some("1745 T Street Southeast".into()),
                longitude: Some(Decimal::from_str("-76.979235").unwrap()),
                latitude: Some(Decimal::from_str("38.867033").unwrap()),
            }),
        );
        locations.insert("Nobody".into(), None);
        locations
    }

    fn text(bytes: &Option<Vec<u8>>) -> &str {
        std::str::from_utf8(bytes.as_deref().unwrap()).unwrap()
    }

    /// The records built a partition at a time, as the streamed write hands the orders over.
    fn streamed(partitions: Vec<DecodedPartition>, locations: &Locations) -> OrderRecords {
        let mut planner = crate::plan::Planner::new(6, PoisonPolicy::DeadLetter);
        let mut records = OrderRecords::default();
        for decoded in partitions {
            let sent = planner.plan().orders.len();
            planner.add(decoded);
            let plan = planner.plan();
            let key = &plan.partitions[plan.partitions.len() - 1].key;
            records.add(key, &plan.orders[sent..], locations);
        }
        records
    }

    #[test]
    fn records_built_a_partition_at_a_time_are_those_of_the_whole_plan() {
        let partitions = vec![
            partition(
                0,
                vec![
                    record(0, 1, order("SO-2", "Jones")),
                    record(0, 2, order("SO-1", "Nobody")),
                    record(0, 3, order("SO-2", "Jones")),
                ],
            ),
            partition(1, vec![record(1, 5, poison())]),
            partition(
                2,
                vec![
                    record(2, 9, order("SO-3", "Jones")),
                    record(2, 10, Payload::Tombstone),
                ],
            ),
        ];
        let whole_plan = plan(partitions.clone(), PoisonPolicy::DeadLetter);
        let whole = build(&whole_plan, &jones(), &[], false);

        let records = streamed(partitions.clone(), &jones());
        assert!(records.covers(&whole_plan));
        let records = records.finish(&jones()).unwrap();
        assert_eq!(records, whole);
        let offsets: Vec<(&str, Vec<i64>)> = records
            .iter()
            .map(|p| (p.key.as_str(), p.records.iter().map(|r| r.offset).collect()))
            .collect();
        // SO-2's later record replaced its first (offset 1) and goes out after SO-1.
        assert_eq!(
            offsets,
            vec![("orders-0", vec![2, 3]), ("orders-2", vec![9])]
        );

        // Had the write found another location for a customer, these records would not do.
        let mut moved = jones();
        moved.insert("Nobody".into(), jones()["Jones"].clone());
        assert_eq!(streamed(partitions.clone(), &jones()).finish(&moved), None);
        // Nor would they, had the write stopped streaming before the last partition.
        let first_only = streamed(partitions[..1].to_vec(), &jones());
        assert!(!first_only.covers(&whole_plan));
    }

    #[test]
    fn an_order_becomes_a_record_keyed_by_its_number_with_location_and_source() {
        let plan = plan(
            vec![partition(0, vec![record(0, 7, order("SO-001", "Jones"))])],
            PoisonPolicy::DeadLetter,
        );
        let out = build(&plan, &jones(), &[false], false);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].key.as_str(), "orders-0");
        let record = &out[0].records[0];
        assert_eq!(record.destination, Topic::Orders);
        assert_eq!(record.offset, 7);
        assert_eq!(text(&record.key), "SO-001");
        assert_eq!(
            text(&record.value),
            r#"{"OrderNo":"SO-001","OrderDate":"2019-01-06","Region":"East","Customer":"Jones","Item":"Pencil","Units":95,"Unit Cost":1.99,"Total":189.05,"Address":"1745 T Street Southeast","Longitude":-76.979235,"Latitude":38.867033}"#
        );
        let headers: Vec<(&str, &str)> = record
            .headers
            .iter()
            .map(|(name, value)| (name.as_ref(), text(value)))
            .collect();
        assert_eq!(
            headers,
            [
                ("source-topic", "orders"),
                ("source-partition", "0"),
                ("source-offset", "7"),
                ("source-timestamp", "1700000000007"),
            ]
        );
    }

    #[test]
    fn an_unknown_customer_gets_null_location_fields() {
        let plan = plan(
            vec![partition(0, vec![record(0, 1, order("SO-9", "Nobody"))])],
            PoisonPolicy::DeadLetter,
        );
        let out = build(&plan, &jones(), &[false], false);
        assert!(text(&out[0].records[0].value)
            .ends_with(r#""Total":189.05,"Address":null,"Longitude":null,"Latitude":null}"#));
    }

    #[test]
    fn records_keep_offset_order_and_dead_letters_go_to_kafka_only_when_asked() {
        let plan = plan(
            vec![
                partition(
                    0,
                    vec![
                        record(0, 1, order("SO-1", "Jones")),
                        record(0, 2, poison()),
                        record(0, 3, order("SO-2", "Jones")),
                    ],
                ),
                partition(1, vec![record(1, 5, order("SO-3", "Jones"))]),
            ],
            PoisonPolicy::DeadLetter,
        );
        let positions = |out: &[PartitionRecords]| -> Vec<(String, i64, Topic)> {
            out.iter()
                .flat_map(|p| {
                    p.records
                        .iter()
                        .map(|r| (p.key.as_str().to_owned(), r.offset, r.destination))
                })
                .collect()
        };
        use Topic::*;
        assert_eq!(
            positions(&build(&plan, &jones(), &[false; 3], false)),
            [
                ("orders-0".into(), 1, Orders),
                ("orders-0".into(), 3, Orders),
                ("orders-1".into(), 5, Orders)
            ]
        );
        let with_dead_letters = build(&plan, &jones(), &[false; 3], true);
        assert_eq!(
            positions(&with_dead_letters),
            [
                ("orders-0".into(), 1, Orders),
                ("orders-0".into(), 2, DeadLetters),
                ("orders-0".into(), 3, Orders),
                ("orders-1".into(), 5, Orders)
            ]
        );
        let dead = &with_dead_letters[0].records[1];
        assert_eq!(text(&dead.key), "k");
        assert_eq!(text(&dead.value), "{oops");
        let names: Vec<&str> = dead.headers.iter().map(|(n, _)| n.as_ref()).collect();
        assert_eq!(
            names,
            [
                "trace",
                "source-topic",
                "source-partition",
                "source-offset",
                "source-timestamp",
                "dead-letter-reason"
            ]
        );
        assert_eq!(
            text(&dead.headers[5].1),
            "the value is not JSON",
            "the reason travels with the record"
        );
    }

    #[test]
    fn an_order_the_database_refused_is_not_produced() {
        let plan = plan(
            vec![partition(
                0,
                vec![
                    record(0, 1, order("SO-1", "Jones")),
                    record(0, 2, order("SO-2", "Jones")),
                ],
            )],
            PoisonPolicy::DeadLetter,
        );
        let out = build(&plan, &jones(), &[true, false], false);
        let keys: Vec<&str> = out[0].records.iter().map(|r| text(&r.key)).collect();
        assert_eq!(keys, ["SO-2"]);
    }
}
