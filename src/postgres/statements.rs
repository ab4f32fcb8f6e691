//! The write, inside the invocation's transaction, in a constant number of round trips
//! whatever the batch size. Orders whose numbers are all new (the common case: a first
//! delivery) are streamed straight into `enriched_orders` by one binary `COPY`, the cheapest
//! way PostgreSQL has to insert rows, cheaper than any `INSERT`. When one of them already
//! exists (a redelivery, a correction) that `COPY` fails on the primary key, is rolled back to a
//! savepoint, and the orders take the general path: streamed into the session's staging table by
//! one binary `COPY`, then one upsert from it (one more per extra partition that holds the same
//! order number, which producers keying by `OrderNo` never cause). The dead letters follow in
//! one statement. Both paths write the same rows: an order whose number is new is inserted as
//! it is by either.
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
use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::error::BoxDynError;
use sqlx::{PgConnection, PgTransaction, Row};

use crate::decode::event::Header;
use crate::enrich::location::{Location, Locations};
use crate::plan::{DeadLetter, Plan, PlannedOrder};
use crate::postgres::copy::CopyRows;

/// What the write did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteStats {
    /// Order rows inserted or replaced (a replayed record changes none).
    pub orders_changed: i64,
    /// Dead letters inserted (a replayed one is not inserted again).
    pub dead_letters_inserted: i64,
    /// Orders written without a location (unknown customer).
    pub customers_not_found: usize,
    /// Statements and `COPY`s sent.
    pub round_trips: usize,
    /// Whether the orders took the general path (staging table and upsert) because one of
    /// them already existed or an order number was in several partitions.
    pub upserted: bool,
    /// Whether the orders were streamed into the direct `COPY` a partition at a time while the
    /// batch was still being decoded ([`OrdersCopy::new_orders`]).
    pub streamed: bool,
}

/// The order columns the upsert writes, in the order of the statement's rows.
pub const ORDER_COLUMNS: &str =
    "order_no, order_date, region, customer, item, units, unit_cost, total, \
    customer_found, address, longitude, latitude, \
    source_topic, source_partition, source_offset, source_timestamp, supersede_clock_ms, \
    source_timestamp_out_of_range";

/// The idempotent, order-preserving upsert of the rows `rows` yields (in [`ORDER_COLUMNS`]
/// order) into `target` (`enriched_orders`, or a table created `LIKE` it), returning one row per
/// order inserted or replaced. The benchmark's server-side floor runs the same text.
pub fn order_upsert(target: &str, rows: &str) -> String {
    format!(
        r#"INSERT INTO {target} AS current ({ORDER_COLUMNS})
    {rows}
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
    RETURNING 1"#
    )
}

/// The staging table the general path copies the orders into: the session's own (`pg_temp`),
/// shaped like `enriched_orders` (its columns, types, `NOT NULL`s and defaults, so it follows
/// the migrations; no indexes, no other constraints) plus the round, emptied at every commit.
/// It is emptied at the start of every write too, so that a write reads only its own rows even
/// after an earlier write of the same transaction (the data-error search runs several; rows left
/// over would be no-ops under the ordering rule, but work). `client_min_messages` keeps the
/// "already exists" notice of every later invocation off the wire.
///
/// It is prepared on every write, also when the direct `COPY` will not need it, so that a role
/// without `TEMPORARY` fails on its first batch and not on its first redelivery. The savepoint
/// is what a failed direct `COPY` rolls back to; it is never released (the `COMMIT` ends it),
/// which saves a round trip.
pub const PREPARE_WRITE: &str = "SET LOCAL client_min_messages = warning;
CREATE TEMP TABLE IF NOT EXISTS incoming_orders (
    round int4 NOT NULL,
    LIKE enriched_orders INCLUDING DEFAULTS
) ON COMMIT DELETE ROWS;
DELETE FROM pg_temp.incoming_orders;
SAVEPOINT new_orders";

/// Undoes a direct `COPY` that met an existing order.
const UNDO_DIRECT_COPY: &str = "ROLLBACK TO SAVEPOINT new_orders";

/// The primary key violation a direct `COPY` fails with when an order already exists.
const UNIQUE_VIOLATION: &str = "23505";

/// Fields per row of the direct `COPY`: the 18 order columns.
const ORDER_FIELDS: i16 = 18;

static COPY_NEW_ORDERS: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!("COPY enriched_orders ({ORDER_COLUMNS}) FROM STDIN (FORMAT binary)")
});

/// Fields per staged row: the round and the 18 order columns.
const STAGED_FIELDS: i16 = 19;

static COPY_STAGING: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!("COPY pg_temp.incoming_orders (round, {ORDER_COLUMNS}) FROM STDIN (FORMAT binary)")
});

/// Rows are sent in chunks of about this size, so that the server parses the first while the
/// later ones are encoded.
const COPY_CHUNK_BYTES: usize = 256 * 1024;

/// One round's upsert from the staging table. The rows come out in the order they were copied
/// in (`order_no` within the round): a heap emptied by the last commit is scanned in insertion
/// order.
static UPSERT_ROUND: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let orders = order_upsert(
        "enriched_orders",
        &format!("SELECT {ORDER_COLUMNS} FROM pg_temp.incoming_orders WHERE round = $1"),
    );
    format!("WITH orders AS ({orders}) SELECT count(*) AS orders_changed FROM orders")
});

const INSERT_DEAD_LETTERS: &str = r#"
WITH dead AS (
    INSERT INTO dead_letters (
        source_topic, source_partition, source_offset, source_timestamp, source_timestamp_out_of_range, partition_key,
        reason, raw_key, raw_value, headers)
    SELECT topic, part, off, ts, bad_ts, pkey, reason, rkey, rvalue, hdrs::jsonb FROM UNNEST(
        $1::text[], $2::int4[], $3::int8[], $4::timestamptz[], $5::text[],
        $6::text[], $7::bytea[], $8::bytea[], $9::text[], $10::bool[])
        AS d(topic, part, off, ts, pkey, reason, rkey, rvalue, hdrs, bad_ts)
    ON CONFLICT (source_topic, source_partition, source_offset) DO NOTHING
    RETURNING 1
)
SELECT count(*) AS dead_letters_inserted FROM dead
"#;

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

/// Writes the plan's orders and dead letters in `tx`, the invocation's transaction (a
/// transaction is required: the staging table is emptied at every commit, and the direct
/// `COPY` is undone to a savepoint). When every order number is in one partition only (one
/// round of [`Plan::rounds`]), the orders are first copied straight into `enriched_orders`; if
/// one of them exists already, that is undone and every round is streamed into the session's
/// staging table by one binary `COPY` (the server parses no text and no arrays), then upserted
/// by one statement per round. The dead letters follow in one statement. Rows are copied in
/// `order_no` order within a round, so that concurrent invocations lock overlapping orders in
/// the same order and never deadlock ([`OrdersCopy::new_orders`], which sorts within a partition only,
/// is retried by this write when its transaction is ended as a deadlock victim).
#[tracing::instrument(name = "write", level = "debug", skip_all, fields(orders = plan.orders.len(), dead_letters = plan.dead_letters.len()), err(level = "debug"))]
pub async fn write(
    tx: &mut PgTransaction<'_>,
    plan: &Plan,
    locations: &Locations,
) -> Result<WriteStats, sqlx::Error> {
    write_orders_and_dead_letters(tx, plan, locations, true).await
}

/// [`write()`] without the direct `COPY` and its set-up: for a transaction that ran
/// [`PREPARE_WRITE`] and whose direct `COPY` of these orders met an existing order
/// ([`OrdersCopy::new_orders`]) and was undone.
pub async fn write_upserting(
    tx: &mut PgTransaction<'_>,
    plan: &Plan,
    locations: &Locations,
) -> Result<WriteStats, sqlx::Error> {
    write_orders_and_dead_letters(tx, plan, locations, false).await
}

/// `direct`: whether to set the write up and try the direct `COPY` first.
async fn write_orders_and_dead_letters(
    tx: &mut PgTransaction<'_>,
    plan: &Plan,
    locations: &Locations,
    direct: bool,
) -> Result<WriteStats, sqlx::Error> {
    let conn: &mut PgConnection = tx;
    let mut stats = WriteStats::default();
    let mut rounds = plan.rounds();
    for orders in &mut rounds {
        // A stable sort: it merges runs that are already in order, which each partition's
        // orders usually are (order numbers grow with time), in far fewer comparisons.
        orders.sort_by(|a, b| a.order.order_no().cmp(b.order.order_no()));
    }
    stats.customers_not_found = customers_not_found(plan, locations);
    if !rounds.is_empty() {
        if direct {
            sqlx::raw_sql(PREPARE_WRITE).execute(&mut *conn).await?;
            stats.round_trips += 1;
        }
        let copied = match &rounds[..] {
            [orders] if direct => {
                copy_new_orders(&mut *conn, orders, locations, &mut stats).await?
            }
            _ => None,
        };
        match copied {
            Some(inserted) => stats.orders_changed = inserted,
            None => upsert_orders(&mut *conn, &rounds, locations, &mut stats).await?,
        }
    }
    stats.dead_letters_inserted = write_dead_letters(&mut *conn, plan, &mut stats).await?;
    Ok(stats)
}

/// The plan's orders whose customer has no location.
pub fn customers_not_found(plan: &Plan, locations: &Locations) -> usize {
    plan.orders
        .iter()
        .filter(|planned| {
            locations
                .get(planned.order.customer())
                .and_then(Option::as_ref)
                .is_none()
        })
        .count()
}

/// Inserts the plan's dead letters (no round trip when there are none); returns how many were
/// new.
pub async fn write_dead_letters(
    conn: &mut PgConnection,
    plan: &Plan,
    stats: &mut WriteStats,
) -> Result<i64, sqlx::Error> {
    if plan.dead_letters.is_empty() {
        return Ok(0);
    }
    stats.round_trips += 1;
    insert_dead_letters(conn, &plan.dead_letters).await
}

/// Orders streamed into a binary `COPY`, in chunks, so that the server parses the first rows
/// while later ones are still being encoded (or, in a streamed write, decoded).
pub struct OrdersCopy<'c> {
    copy: sqlx::postgres::PgCopyIn<&'c mut PgConnection>,
    rows: CopyRows,
}

impl<'c> OrdersCopy<'c> {
    /// Starts `copy_statement` for rows of `fields_per_row` fields (one round trip).
    async fn start(
        conn: &'c mut PgConnection,
        copy_statement: &str,
        fields_per_row: i16,
    ) -> Result<Self, sqlx::Error> {
        Ok(Self {
            copy: conn.copy_in_raw(copy_statement).await?,
            rows: CopyRows::new(fields_per_row),
        })
    }

    /// The direct `COPY` of new orders into `enriched_orders`, fed a partition at a time by a
    /// streamed write ([`Self::add`]). It needs [`PREPARE_WRITE`] run first in the transaction
    /// (the savepoint that [`undo_direct_copy`] rolls back to).
    pub async fn new_orders(conn: &'c mut PgConnection) -> Result<Self, sqlx::Error> {
        Self::start(conn, &COPY_NEW_ORDERS, ORDER_FIELDS).await
    }

    /// Encodes one partition's orders (each order number once), in `order_no` order, and
    /// sends every full chunk. On an error the `COPY` needs [`Self::fail`].
    pub async fn add(
        &mut self,
        orders: &[PlannedOrder],
        locations: &Locations,
    ) -> Result<(), sqlx::Error> {
        let mut sorted: Vec<&PlannedOrder> = orders.iter().collect();
        sorted.sort_by(|a, b| a.order.order_no().cmp(b.order.order_no()));
        self.send(None, &sorted, locations).await
    }

    /// Encodes `orders`, each row led by `round` when there is one (the staging table has that
    /// column, `enriched_orders` does not), and sends every full chunk.
    async fn send(
        &mut self,
        round: Option<i32>,
        orders: &[&PlannedOrder],
        locations: &Locations,
    ) -> Result<(), sqlx::Error> {
        for planned in orders {
            let location = locations
                .get(planned.order.customer())
                .and_then(Option::as_ref);
            encode_order(&mut self.rows, round, planned, location).map_err(sqlx::Error::Encode)?;
            if self.rows.pending() >= COPY_CHUNK_BYTES {
                self.copy.send(self.rows.take_chunk()).await?;
            }
        }
        Ok(())
    }

    /// Ends the `COPY`; returns the rows the server took. In the direct `COPY` an order that
    /// exists already fails it ([`met_existing_order`]); the transaction then needs
    /// [`undo_direct_copy`].
    pub async fn finish(mut self) -> Result<u64, sqlx::Error> {
        let last = self.rows.finish().map_err(sqlx::Error::Encode)?;
        self.copy.send(last).await?;
        self.copy.finish().await
    }

    /// Abandons the `COPY` (the direct one then needs [`undo_direct_copy`]).
    pub async fn abort(self, why: &str) -> Result<(), sqlx::Error> {
        self.copy.abort(why).await
    }

    /// Ends the `COPY` after `error` from [`Self::add`]: a value that could not be encoded
    /// abandons it (the server is still reading rows); anything else has ended it already.
    pub async fn fail(self, error: sqlx::Error) -> sqlx::Error {
        if matches!(error, sqlx::Error::Encode(_)) {
            if let Err(abort) = self.abort(&error.to_string()).await {
                return abort;
            }
        }
        error
    }
}

/// Whether a direct `COPY` failed because one of its orders exists already.
pub fn met_existing_order(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(error) if error.code().as_deref() == Some(UNIQUE_VIOLATION))
}

/// Rolls back a direct `COPY` that failed or was abandoned (one round trip).
pub async fn undo_direct_copy(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::raw_sql(UNDO_DIRECT_COPY).execute(conn).await?;
    Ok(())
}

/// Copies `orders` straight into `enriched_orders`: `Some` with the rows inserted, or `None`
/// when one of them already existed and the copy was undone.
async fn copy_new_orders(
    conn: &mut PgConnection,
    orders: &[&PlannedOrder],
    locations: &Locations,
    stats: &mut WriteStats,
) -> Result<Option<i64>, sqlx::Error> {
    let copied = copy_orders(
        &mut *conn,
        &COPY_NEW_ORDERS,
        ORDER_FIELDS,
        std::iter::once((None, orders)),
        locations,
    )
    .await;
    stats.round_trips += 1;
    match copied {
        Ok(rows) => Ok(Some(i64::try_from(rows).unwrap_or(i64::MAX))),
        Err(error) if met_existing_order(&error) => {
            undo_direct_copy(&mut *conn).await?;
            stats.round_trips += 1;
            Ok(None)
        }
        Err(error) => Err(error),
    }
}

/// The general path: every round staged by one `COPY`, then one upsert per round.
async fn upsert_orders(
    conn: &mut PgConnection,
    rounds: &[Vec<&PlannedOrder>],
    locations: &Locations,
    stats: &mut WriteStats,
) -> Result<(), sqlx::Error> {
    stats.upserted = true;
    let numbered = rounds
        .iter()
        .enumerate()
        .map(|(round, orders)| round_number(round).map(|round| (Some(round), &orders[..])))
        .collect::<Result<Vec<_>, _>>()?;
    copy_orders(
        &mut *conn,
        &COPY_STAGING,
        STAGED_FIELDS,
        numbered,
        locations,
    )
    .await?;
    stats.round_trips += 1;
    for round in 0..rounds.len() {
        let changed: i64 = sqlx::query(UPSERT_ROUND.as_str())
            .bind(round_number(round)?)
            .fetch_one(&mut *conn)
            .await?
            .try_get("orders_changed")?;
        stats.round_trips += 1;
        stats.orders_changed += changed;
    }
    Ok(())
}

fn round_number(round: usize) -> Result<i32, sqlx::Error> {
    i32::try_from(round).map_err(|error| sqlx::Error::Encode(error.into()))
}

/// Streams `batches` of orders into `copy_statement`'s table, each row led by its batch's
/// round when there is one. Returns the rows the server took.
async fn copy_orders<'p>(
    conn: &mut PgConnection,
    copy_statement: &str,
    fields_per_row: i16,
    batches: impl IntoIterator<Item = (Option<i32>, &'p [&'p PlannedOrder])>,
    locations: &Locations,
) -> Result<u64, sqlx::Error> {
    let mut copy = OrdersCopy::start(conn, copy_statement, fields_per_row).await?;
    for (round, orders) in batches {
        if let Err(error) = copy.send(round, orders, locations).await {
            return Err(copy.fail(error).await);
        }
    }
    copy.finish().await
}

fn encode_order(
    rows: &mut CopyRows,
    round: Option<i32>,
    planned: &PlannedOrder,
    location: Option<&Location>,
) -> Result<(), BoxDynError> {
    let order = &planned.order;
    rows.row()?;
    if let Some(round) = round {
        rows.field(&round)?;
    }
    rows.field(&order.order_no())?;
    rows.field(&order.order_date())?;
    rows.field(&order.region())?;
    rows.field(&order.customer())?;
    rows.field(&order.item())?;
    rows.field(&order.units())?;
    rows.field(&order.unit_cost())?;
    rows.field(&order.total())?;
    rows.field(&location.is_some())?;
    rows.field(&location.and_then(|l| l.address.as_deref()))?;
    rows.field(&location.and_then(|l| l.longitude))?;
    rows.field(&location.and_then(|l| l.latitude))?;
    rows.field(&&*planned.source.topic)?;
    rows.field(&planned.source.partition)?;
    rows.field(&planned.source.offset)?;
    rows.field(
        &planned
            .source
            .timestamp_ms
            .and_then(DateTime::from_timestamp_millis),
    )?;
    rows.field(&planned.clock_ms)?;
    rows.field(&planned.source.timestamp_out_of_range)?;
    Ok(())
}

async fn insert_dead_letters(
    conn: &mut PgConnection,
    dead_letters: &[DeadLetter],
) -> Result<i64, sqlx::Error> {
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
    sqlx::query(INSERT_DEAD_LETTERS)
        .bind(d.topic)
        .bind(d.partition)
        .bind(d.offset)
        .bind(d.timestamp)
        .bind(d.partition_key)
        .bind(d.reason)
        .bind(d.raw_key)
        .bind(d.raw_value)
        .bind(d.headers)
        .bind(d.timestamp_out_of_range)
        .fetch_one(conn)
        .await?
        .try_get("dead_letters_inserted")
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
