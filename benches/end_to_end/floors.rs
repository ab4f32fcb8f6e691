//! The floors the function is measured against, and what the server says it ran.

use std::time::{Duration, Instant};

use msk_order_enricher::plan;
use msk_order_enricher::postgres::statements;
use sqlx::{PgPool, Row};

/// Statements run since the last reset, by kind: calls, and milliseconds the server spent
/// executing them (`total_exec_time`), rounded to 0.1 ms.
pub(crate) async fn statements(observer: &PgPool) -> Vec<(String, i64, f64)> {
    sqlx::query(
        "SELECT CASE WHEN query LIKE '%FROM customers%' THEN 'lookup' WHEN query LIKE '%INSERT INTO enriched_orders%' THEN 'write'
                     ELSE left(regexp_replace(query, '\\s+', ' ', 'g'), 40) END AS kind, sum(calls)::int8,
                round(sum(total_exec_time)::numeric, 1)::float8
         FROM pg_stat_statements WHERE query NOT LIKE '%pg_stat_statements%' AND query NOT LIKE '%floor_%' GROUP BY 1 ORDER BY 1",
    )
    .fetch_all(observer)
    .await
    .expect("pg_stat_statements")
    .iter()
    .map(|row| (row.get(0), row.get(1), row.get(2)))
    .collect()
}

pub(crate) async fn reset_statements(observer: &PgPool) {
    sqlx::query("SELECT pg_stat_statements_reset()")
        .execute(observer)
        .await
        .expect("reset");
}

/// The write as it was before the binary `COPY`, kept as the reference the `COPY` is measured
/// against: every column of the batch as one array parameter, and the same upsert from
/// `UNNEST` of them (the benchmark's batches have one round and no dead letters). Returns the
/// rows written.
pub(crate) async fn unnest_write(
    conn: &mut sqlx::PgConnection,
    plan: &plan::Plan,
    locations: &msk_order_enricher::enrich::location::Locations,
) -> u64 {
    let statement = statements::order_upsert(
        "enriched_orders",
        "SELECT * FROM UNNEST($1::text[], $2::date[], $3::text[], $4::text[], $5::text[], $6::int4[],
            $7::numeric[], $8::numeric[], $9::bool[], $10::text[], $11::numeric[], $12::numeric[],
            $13::text[], $14::int4[], $15::int8[], $16::timestamptz[], $17::int8[], $18::bool[])",
    );
    let mut orders: Vec<&plan::PlannedOrder> = plan.orders.iter().collect();
    orders.sort_unstable_by(|a, b| a.order.order_no().cmp(b.order.order_no()));
    let location =
        |o: &plan::PlannedOrder| locations.get(o.order.customer()).and_then(Option::as_ref);
    let column =
        |f: &dyn Fn(&plan::PlannedOrder) -> String| orders.iter().map(|o| f(o)).collect::<Vec<_>>();
    sqlx::query(sqlx::AssertSqlSafe(statement))
        .bind(column(&|o| o.order.order_no().to_owned()))
        .bind(
            orders
                .iter()
                .map(|o| o.order.order_date())
                .collect::<Vec<_>>(),
        )
        .bind(column(&|o| o.order.region().to_owned()))
        .bind(column(&|o| o.order.customer().to_owned()))
        .bind(column(&|o| o.order.item().to_owned()))
        .bind(orders.iter().map(|o| o.order.units()).collect::<Vec<_>>())
        .bind(
            orders
                .iter()
                .map(|o| o.order.unit_cost())
                .collect::<Vec<_>>(),
        )
        .bind(orders.iter().map(|o| o.order.total()).collect::<Vec<_>>())
        .bind(
            orders
                .iter()
                .map(|o| location(o).is_some())
                .collect::<Vec<_>>(),
        )
        .bind(
            orders
                .iter()
                .map(|o| location(o).and_then(|l| l.address.clone()))
                .collect::<Vec<_>>(),
        )
        .bind(
            orders
                .iter()
                .map(|o| location(o).and_then(|l| l.longitude))
                .collect::<Vec<_>>(),
        )
        .bind(
            orders
                .iter()
                .map(|o| location(o).and_then(|l| l.latitude))
                .collect::<Vec<_>>(),
        )
        .bind(column(&|o| o.source.topic.to_string()))
        .bind(
            orders
                .iter()
                .map(|o| o.source.partition)
                .collect::<Vec<_>>(),
        )
        .bind(orders.iter().map(|o| o.source.offset).collect::<Vec<_>>())
        .bind(
            orders
                .iter()
                .map(|o| {
                    o.source
                        .timestamp_ms
                        .and_then(chrono::DateTime::from_timestamp_millis)
                })
                .collect::<Vec<_>>(),
        )
        .bind(orders.iter().map(|o| o.clock_ms).collect::<Vec<_>>())
        .bind(
            orders
                .iter()
                .map(|o| o.source.timestamp_out_of_range)
                .collect::<Vec<_>>(),
        )
        .execute(conn)
        .await
        .expect("the UNNEST write")
        .rows_affected()
}

/// The producer floor: `records` (as the function builds them) sent by a bare librdkafka
/// producer with the function's settings, already connected, from the first send to the last
/// acknowledgement. What the produce step costs on this machine with no function around it.
pub(crate) fn producer_floor(
    producer: &rdkafka::producer::BaseProducer,
    topic: &str,
    records: &[msk_order_enricher::kafka::records::PartitionRecords],
) -> Duration {
    use rdkafka::message::{Header, OwnedHeaders};
    use rdkafka::producer::{BaseRecord, Producer as _};
    let started = Instant::now();
    for record in records.iter().flat_map(|partition| &partition.records) {
        let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
        for (name, value) in &record.headers {
            headers = headers.insert(Header {
                key: name,
                value: value.as_deref(),
            });
        }
        let mut message = BaseRecord::<[u8], [u8]>::to(topic).headers(headers);
        if let Some(key) = &record.key {
            message = message.key(&key[..]);
        }
        if let Some(value) = &record.value {
            message = message.payload(&value[..]);
        }
        producer
            .send(message)
            .map_err(|(error, _)| error)
            .expect("enqueued");
    }
    // Served on this thread as they come (flush() would wait for up to 100 ms between polls).
    let until = started + Duration::from_secs(30);
    while producer.in_flight_count() > 0 {
        assert!(Instant::now() < until, "every record acknowledged");
        producer.poll(Duration::from_millis(1));
    }
    started.elapsed()
}
