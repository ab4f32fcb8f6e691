//! The write: every order and dead letter of an invocation in one SQL statement (one more per
//! extra partition that holds the same order number, which producers keying by `OrderNo`
//! never cause), inside the invocation's transaction, whatever the batch size.
//!
//! Idempotence and order: an order row is replaced only by a record that [`crate::plan::supersedes`]
//! it, the same rule in SQL: same partition, a higher offset; other partition, a later clock
//! (then topic and partition), the clock carrying over within a partition
//! ([`crate::plan::clock_after`]). Replaying a batch, or any suffix of a partition, therefore changes
//! nothing, an older record never overwrites a newer one, and the final row does not depend on
//! the order in which batches commit. Dead letters are keyed by their Kafka position and
//! inserted once.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde_json::json;
use sqlx::{PgConnection, Row};

use crate::event::Header;
use crate::location::Locations;
use crate::plan::{DeadLetter, Plan, PlannedOrder};

/// What the write did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteStats {
    /// Order rows inserted or replaced (a replayed record changes none).
    pub orders_changed: i64,
    /// Dead letters inserted (a replayed one is not inserted again).
    pub dead_letters_inserted: i64,
    /// Orders written without a location (unknown customer).
    pub customers_not_found: usize,
    /// Statements sent.
    pub round_trips: usize,
}

const WRITE: &str = r#"
WITH orders AS (
    INSERT INTO enriched_orders AS current (
        order_no, order_date, region, customer, item, units, unit_cost, total,
        customer_found, address, longitude, latitude,
        source_topic, source_partition, source_offset, source_timestamp, supersede_clock_ms,
        source_timestamp_out_of_range)
    SELECT * FROM UNNEST(
        $1::text[], $2::date[], $3::text[], $4::text[], $5::text[], $6::int4[], $7::numeric[], $8::numeric[],
        $9::bool[], $10::text[], $11::numeric[], $12::numeric[],
        $13::text[], $14::int4[], $15::int8[], $16::timestamptz[], $26::int8[], $27::bool[])
    ON CONFLICT (order_no) DO UPDATE SET
        order_date = EXCLUDED.order_date, region = EXCLUDED.region, customer = EXCLUDED.customer,
        item = EXCLUDED.item, units = EXCLUDED.units, unit_cost = EXCLUDED.unit_cost,
        total = EXCLUDED.total, customer_found = EXCLUDED.customer_found, address = EXCLUDED.address,
        longitude = EXCLUDED.longitude, latitude = EXCLUDED.latitude,
        source_topic = EXCLUDED.source_topic, source_partition = EXCLUDED.source_partition,
        source_offset = EXCLUDED.source_offset, source_timestamp = EXCLUDED.source_timestamp,
        source_timestamp_out_of_range = EXCLUDED.source_timestamp_out_of_range,
        supersede_clock_ms = CASE
            WHEN current.source_topic = EXCLUDED.source_topic AND current.source_partition = EXCLUDED.source_partition
                THEN GREATEST(current.supersede_clock_ms, EXCLUDED.supersede_clock_ms)
            ELSE EXCLUDED.supersede_clock_ms
        END,
        written_at = now()
    WHERE CASE
        WHEN current.source_topic = EXCLUDED.source_topic AND current.source_partition = EXCLUDED.source_partition
            THEN current.source_offset < EXCLUDED.source_offset
        ELSE (COALESCE(current.supersede_clock_ms, -9223372036854775808), current.source_topic COLLATE "C", current.source_partition)
           < (COALESCE(EXCLUDED.supersede_clock_ms, -9223372036854775808), EXCLUDED.source_topic COLLATE "C", EXCLUDED.source_partition)
    END
    RETURNING 1
), dead AS (
    INSERT INTO dead_letters (
        source_topic, source_partition, source_offset, source_timestamp, source_timestamp_out_of_range, partition_key,
        reason, raw_key, raw_value, headers)
    SELECT topic, part, off, ts, bad_ts, pkey, reason, rkey, rvalue, hdrs::jsonb FROM UNNEST(
        $17::text[], $18::int4[], $19::int8[], $20::timestamptz[], $21::text[],
        $22::text[], $23::bytea[], $24::bytea[], $25::text[], $28::bool[])
        AS d(topic, part, off, ts, pkey, reason, rkey, rvalue, hdrs, bad_ts)
    ON CONFLICT (source_topic, source_partition, source_offset) DO NOTHING
    RETURNING 1
)
SELECT (SELECT count(*) FROM orders) AS orders_changed, (SELECT count(*) FROM dead) AS dead_letters_inserted
"#;

/// Column arrays for the statement's `UNNEST`s.
#[derive(Default)]
struct OrderColumns<'a> {
    order_no: Vec<&'a str>,
    order_date: Vec<NaiveDate>,
    region: Vec<&'a str>,
    customer: Vec<&'a str>,
    item: Vec<&'a str>,
    units: Vec<i32>,
    unit_cost: Vec<Decimal>,
    total: Vec<Decimal>,
    customer_found: Vec<bool>,
    address: Vec<Option<&'a str>>,
    longitude: Vec<Option<Decimal>>,
    latitude: Vec<Option<Decimal>>,
    topic: Vec<&'a str>,
    partition: Vec<i32>,
    offset: Vec<i64>,
    timestamp: Vec<Option<DateTime<Utc>>>,
    clock_ms: Vec<Option<i64>>,
    timestamp_out_of_range: Vec<bool>,
}

#[derive(Default)]
struct DeadLetterColumns<'a> {
    topic: Vec<&'a str>,
    partition: Vec<i32>,
    offset: Vec<i64>,
    timestamp: Vec<Option<DateTime<Utc>>>,
    partition_key: Vec<&'a str>,
    reason: Vec<String>,
    raw_key: Vec<Option<&'a [u8]>>,
    raw_value: Vec<Option<&'a [u8]>>,
    headers: Vec<String>,
    timestamp_out_of_range: Vec<bool>,
}

/// Writes the plan's orders and dead letters on `conn` (the invocation's transaction): one
/// statement per round of [`Plan::rounds`], the dead letters with the first. Rows are bound in
/// `order_no` order, so that concurrent invocations lock overlapping orders in the same order
/// and never deadlock.
#[tracing::instrument(name = "write", level = "debug", skip_all, fields(orders = plan.orders.len(), dead_letters = plan.dead_letters.len()), err(level = "debug"))]
pub async fn write(
    conn: &mut PgConnection,
    plan: &Plan,
    locations: &Locations,
) -> Result<WriteStats, sqlx::Error> {
    let mut stats = WriteStats::default();
    if !plan.has_writes() {
        return Ok(stats);
    }
    let mut rounds = plan.rounds();
    if rounds.is_empty() {
        rounds.push(Vec::new()); // dead letters only
    }
    for (index, mut orders) in rounds.into_iter().enumerate() {
        orders.sort_unstable_by(|a, b| a.order.order_no().cmp(b.order.order_no()));
        let dead_letters: &[DeadLetter] = if index == 0 { &plan.dead_letters } else { &[] };
        let (changed, inserted) =
            write_statement(&mut *conn, &orders, dead_letters, locations, &mut stats).await?;
        stats.round_trips += 1;
        stats.orders_changed += changed;
        stats.dead_letters_inserted += inserted;
    }
    Ok(stats)
}

async fn write_statement(
    conn: &mut PgConnection,
    orders: &[&PlannedOrder],
    dead_letters: &[DeadLetter],
    locations: &Locations,
    stats: &mut WriteStats,
) -> Result<(i64, i64), sqlx::Error> {
    let mut o = OrderColumns::default();
    for planned in orders {
        let order = &planned.order;
        let location = locations.get(order.customer()).and_then(Option::as_ref);
        if location.is_none() {
            stats.customers_not_found += 1;
        }
        o.order_no.push(order.order_no());
        o.order_date.push(order.order_date());
        o.region.push(order.region());
        o.customer.push(order.customer());
        o.item.push(order.item());
        o.units.push(order.units());
        o.unit_cost.push(order.unit_cost());
        o.total.push(order.total());
        o.customer_found.push(location.is_some());
        o.address.push(location.and_then(|l| l.address.as_deref()));
        o.longitude.push(location.and_then(|l| l.longitude));
        o.latitude.push(location.and_then(|l| l.latitude));
        o.topic.push(&planned.source.topic);
        o.partition.push(planned.source.partition);
        o.offset.push(planned.source.offset);
        o.timestamp.push(
            planned
                .source
                .timestamp_ms
                .and_then(DateTime::from_timestamp_millis),
        );
        o.clock_ms.push(planned.clock_ms);
        o.timestamp_out_of_range
            .push(planned.source.timestamp_out_of_range);
    }
    let mut d = DeadLetterColumns::default();
    for dead in dead_letters {
        d.topic.push(&dead.source.topic);
        d.partition.push(dead.source.partition);
        d.offset.push(dead.source.offset);
        d.timestamp.push(
            dead.source
                .timestamp_ms
                .and_then(DateTime::from_timestamp_millis),
        );
        d.partition_key.push(dead.partition_key.as_str());
        d.reason.push(storable_text(&dead.poison.reason));
        d.raw_key.push(dead.poison.raw_key.as_deref());
        d.raw_value.push(dead.poison.raw_value.as_deref());
        d.headers.push(headers_json(&dead.poison.headers));
        d.timestamp_out_of_range
            .push(dead.source.timestamp_out_of_range);
    }

    let row = sqlx::query(WRITE)
        .bind(o.order_no)
        .bind(o.order_date)
        .bind(o.region)
        .bind(o.customer)
        .bind(o.item)
        .bind(o.units)
        .bind(o.unit_cost)
        .bind(o.total)
        .bind(o.customer_found)
        .bind(o.address)
        .bind(o.longitude)
        .bind(o.latitude)
        .bind(o.topic)
        .bind(o.partition)
        .bind(o.offset)
        .bind(o.timestamp)
        .bind(d.topic)
        .bind(d.partition)
        .bind(d.offset)
        .bind(d.timestamp)
        .bind(d.partition_key)
        .bind(d.reason)
        .bind(d.raw_key)
        .bind(d.raw_value)
        .bind(d.headers)
        .bind(o.clock_ms)
        .bind(o.timestamp_out_of_range)
        .bind(d.timestamp_out_of_range)
        .fetch_one(conn)
        .await?;
    Ok((
        row.try_get("orders_changed")?,
        row.try_get("dead_letters_inserted")?,
    ))
}

/// PostgreSQL text cannot hold NUL; a reason quoting input must still be storable.
fn storable_text(text: &str) -> String {
    text.replace('\0', "\\0")
}

/// Headers as operators can read them: UTF-8 values as text, anything else as base64.
fn headers_json(headers: &[Header]) -> String {
    let entries: Vec<serde_json::Value> = headers
        .iter()
        .map(|header| {
            let name = storable_text(&header.name);
            match header.value.as_deref() {
                None => json!({ "name": name, "value": null }),
                Some(bytes) => match std::str::from_utf8(bytes) {
                    Ok(text) if !text.contains('\0') => json!({ "name": name, "value": text }),
                    _ => json!({ "name": name, "value_base64": BASE64.encode(bytes) }),
                },
            }
        })
        .collect();
    serde_json::Value::Array(entries).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_readable_json() {
        let headers = vec![
            Header {
                name: "city".into(),
                value: Some("Montréal".as_bytes().to_vec()),
            },
            Header {
                name: "bin".into(),
                value: Some(vec![0xff, 0x00]),
            },
            Header {
                name: "empty".into(),
                value: None,
            },
        ];
        assert_eq!(
            headers_json(&headers),
            r#"[{"name":"city","value":"Montréal"},{"name":"bin","value_base64":"/wA="},{"name":"empty","value":null}]"#
        );
    }
}
