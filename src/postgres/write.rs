//! The invocation's database work: one connection, one transaction, limits derived from the
//! deadline, and transient failures waited out inside the invocation. In a warm execution
//! environment the first attempt consumes the [`PlanStream`] a partition at a time, so that
//! the write starts on the first partitions while the later ones are decoded ([`write_batch`]).
//!
//! The promise this module keeps: when it returns an error, nothing of the batch is or will
//! ever be committed. The transaction's `statement_timeout`, `lock_timeout` and
//! `idle_in_transaction_session_timeout` end before the deadline on the server itself, so a
//! statement the client stopped waiting for cannot commit later; only a `COMMIT` whose answer
//! is lost leaves the outcome open, and that is the one case reported as
//! [`WriteFailure::CommitOutcomeUnknown`] (the handler then fails the invocation, so Lambda
//! retries the batch; the write is idempotent).

use std::hash::{BuildHasher as _, Hasher as _};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::AssertSqlSafe;

use sqlx::pool::PoolConnection;
use sqlx::{Connection as _, PgTransaction, Postgres};

use crate::decode::event::{PartitionKey, Poison};
use crate::enrich::cache::LocationCache;
use crate::enrich::location::Locations;
use crate::enrich::{self, LookupStats};
use crate::lambda::deadline::millis;
use crate::plan::stream::PlanStream;
use crate::plan::{DeadLetter, Plan, PlannedOrder};
use crate::postgres::database::Database;
use crate::postgres::errors::{self, ErrorClass};
use crate::postgres::statements::{self, WriteStats};

/// Why nothing was written in an invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteFailure {
    /// The deadline (minus the margin) came first; the transaction was rolled back.
    Deadline,
    /// The database failed in a way waiting did not cure within the time left.
    Database {
        /// What kind of failure it was (what was tried about it).
        class: ErrorClass,
        /// The server's SQLSTATE, when it sent one.
        sqlstate: Option<String>,
        /// The error, with a hint where the cause is usually configuration.
        message: String,
    },
    /// `COMMIT` was sent but its answer never came: the batch may or may not be written.
    CommitOutcomeUnknown(String),
}

/// What the database work did, for the summary.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct DatabaseStats {
    /// The customer lookup.
    pub lookup: LookupStats,
    /// The write.
    pub write: WriteStats,
    /// Milliseconds in the lookup and in the write (of the attempt that finished).
    pub lookup_ms: u64,
    /// See `lookup_ms`.
    pub write_ms: u64,
    /// Attempts made again after a transient failure.
    pub retries: u32,
    /// Milliseconds spent waiting between attempts.
    pub waited_ms: u64,
    /// Orders the database refused (a data error): written as dead letters instead.
    pub orders_refused: usize,
    /// Their indices in the plan's orders, ascending.
    pub refused: Vec<usize>,
}

/// At most this much of the time left is kept for the `COMMIT` (a quarter when less is left).
const COMMIT_RESERVE: Duration = Duration::from_millis(500);

/// When the write must be done: the deadline, or the configured retry limit if earlier.
fn budget_end(db: &Database, started: Instant, deadline: Option<Instant>) -> Instant {
    let limit = started + db.retry_limit;
    deadline.map_or(limit, |deadline| deadline.min(limit))
}

/// Looks up the plan's customers and writes the plan in one transaction (only looks up when
/// the database is not a sink), retrying transient failures until `budget_end`. `Ok` holds the
/// locations the lookup found. `Err` means nothing of the plan was committed, except for
/// [`WriteFailure::CommitOutcomeUnknown`]. `first` is the outcome of a first attempt made
/// already (by [`streamed_attempt`]).
async fn write_retrying(
    db: &Database,
    cache: &Mutex<LocationCache>,
    plan: &Plan,
    budget_end: Instant,
    mut stats: DatabaseStats,
    mut first: Option<Result<Locations, AttemptFailure>>,
) -> (DatabaseStats, Result<Locations, WriteFailure>) {
    let mut credentials_reread = false;
    let mut last_transient: Option<WriteFailure> = None;
    // After a data error the next attempt finds the refused orders and sets them aside.
    let mut set_aside_refused = false;
    loop {
        if first.is_none() && Instant::now() >= budget_end {
            // Out of time while the database was still failing: say why, not just when.
            return (stats, Err(last_transient.unwrap_or(WriteFailure::Deadline)));
        }
        let result = match first.take() {
            Some(result) => result,
            None => attempt(db, cache, plan, budget_end, set_aside_refused, &mut stats).await,
        };
        let error = match result {
            Ok(locations) => return (stats, Ok(locations)),
            Err(AttemptFailure::OutOfTime) => {
                return (stats, Err(last_transient.unwrap_or(WriteFailure::Deadline)))
            }
            Err(AttemptFailure::CommitOutcomeUnknown(why)) => {
                return (stats, Err(WriteFailure::CommitOutcomeUnknown(why)))
            }
            Err(AttemptFailure::Failed(error)) => error,
        };
        match errors::classify(&error) {
            ErrorClass::Transient => {
                let wait = errors::backoff(stats.retries + 1, jitter());
                if Instant::now() + wait >= budget_end {
                    let failure = database_failure(db, &error, stats.retries);
                    return (stats, Err(failure));
                }
                last_transient = Some(database_failure(db, &error, stats.retries + 1));
                stats.retries += 1;
                stats.waited_ms += millis(wait);
                tracing::warn!(
                    attempt = stats.retries,
                    sqlstate = errors::sqlstate(&error).unwrap_or_default(),
                    wait_ms = millis(wait),
                    error = %error,
                    "transient database failure; retrying within the invocation"
                );
                tokio::time::sleep(wait).await;
            }
            ErrorClass::Authentication if db.credentials.rotates() && !credentials_reread => {
                credentials_reread = true;
                tracing::warn!(
                    "the database rejected the credentials from {}; reading the secret again",
                    db.credentials.describe()
                );
                match db.credentials.refresh().await {
                    // New connections use the new credentials; open ones stay valid
                    // (PostgreSQL checks a password only when a session starts).
                    Ok(options) => db.set_connect_options(options),
                    Err(refresh) => {
                        let failure = WriteFailure::Database {
                            class: ErrorClass::Authentication,
                            sqlstate: errors::sqlstate(&error),
                            message: refresh.to_string(),
                        };
                        return (stats, Err(failure));
                    }
                }
            }
            ErrorClass::OutOfTime => return (stats, Err(WriteFailure::Deadline)),
            // A value the database refuses would fail the batch on every delivery: try once
            // more, finding the refused orders and keeping them as dead letters.
            ErrorClass::Data if !set_aside_refused => {
                set_aside_refused = true;
                tracing::warn!(
                    sqlstate = errors::sqlstate(&error).unwrap_or_default(),
                    error = %error,
                    "the database refused a value; finding the refused orders"
                );
            }
            _ => {
                let failure = database_failure(db, &error, stats.retries);
                return (stats, Err(failure));
            }
        }
    }
}

/// What [`write_batch`] did.
pub(crate) struct Written {
    /// The batch's plan.
    pub plan: Arc<Plan>,
    /// What the database work did.
    pub io: DatabaseStats,
    /// The locations used, or why nothing was written: nothing of the plan was committed,
    /// except for [`WriteFailure::CommitOutcomeUnknown`].
    pub result: Result<Locations, WriteFailure>,
}

/// Writes the batch `stream` plans: looks up the plan's customers and writes the plan in one
/// transaction (only looks up when the database is not a sink), retrying transient failures
/// until `deadline` (or the configured retry limit). When PostgreSQL is a sink, the first
/// attempt streams the batch into the direct `COPY` a partition at a time: each partition's
/// new orders are sent as soon as the stream has planned it, so that the server stores them
/// while the client decodes the next partition. That attempt gives way to the general write,
/// in the same transaction, when an order exists already, an order number is in several
/// partitions, or a customer is not in the cache. `tap` hears of each partition streamed, and
/// of the plan as soon as it is complete.
pub(crate) async fn write_batch(
    db: &Database,
    cache: &Mutex<LocationCache>,
    stream: &mut PlanStream<'_>,
    deadline: Option<Instant>,
    tap: &mut dyn WriteTap,
) -> Written {
    let started = Instant::now();
    let budget_end = budget_end(db, started, deadline);
    let mut stats = DatabaseStats::default();
    let first = if db.is_sink {
        let mut streaming = Streaming {
            stream: &mut *stream,
            tap: &mut *tap,
        };
        Box::pin(streamed_attempt(
            db,
            cache,
            &mut streaming,
            budget_end,
            &mut stats,
        ))
        .await
    } else {
        None
    };
    let plan = complete(stream, tap);
    let (io, result) = if plan.has_writes() {
        Box::pin(write_retrying(db, cache, &plan, budget_end, stats, first)).await
    } else {
        (DatabaseStats::default(), Ok(Locations::new()))
    };
    Written { plan, io, result }
}

/// What the caller of [`write_batch`] hears while the write is under way.
pub(crate) trait WriteTap {
    /// The plan is complete (once per invocation); the write may still be under way.
    fn planned(&mut self, plan: &Arc<Plan>);
    /// The orders of the input partition `key`, as the plan holds them, went into the streamed
    /// `COPY` with these locations. Whether the streamed write as a whole held is known only
    /// at the end (`WriteStats::streamed`).
    fn streamed(&mut self, key: &PartitionKey, orders: &[PlannedOrder], locations: &Locations);
}

/// The complete plan of `stream`; `tap` hears of it the first time.
fn complete(stream: &mut PlanStream<'_>, tap: &mut dyn WriteTap) -> Arc<Plan> {
    let first = !stream.is_complete();
    let plan = stream.complete();
    if first {
        tap.planned(&plan);
    }
    plan
}

/// The stream the streamed attempt consumes, and who hears of what it streamed.
struct Streaming<'s, 'a, 't> {
    stream: &'s mut PlanStream<'a>,
    tap: &'t mut dyn WriteTap,
}

/// Why a streamed attempt gave way to the general write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GaveWay {
    /// A later partition has an order number of an earlier one: one statement cannot insert
    /// it twice, the upsert's rounds write it.
    OrderInSeveralPartitions,
    /// A customer is not in the cache: the lookup needs the connection the `COPY` holds.
    CustomerNotCached,
    /// An order exists already: the upsert writes the batch.
    OrderExists,
}

/// The first attempt of [`write_batch`]. `None` when it was not made: the batch has
/// nothing for the database (no connection is taken then), or the first partition's customers
/// are not all cached; otherwise the attempt's outcome, as [`write_retrying`] takes it.
/// However it ends, the partitions it did not decode are left in the stream.
#[tracing::instrument(
    name = "database",
    level = "debug",
    skip_all,
    fields(attempt = 1, streamed = true)
)]
async fn streamed_attempt(
    db: &Database,
    cache: &Mutex<LocationCache>,
    streaming: &mut Streaming<'_, '_, '_>,
    budget_end: Instant,
    stats: &mut DatabaseStats,
) -> Option<Result<Locations, AttemptFailure>> {
    // A batch with nothing to write (tombstones only, say) needs no connection.
    while !streaming.stream.plan().has_writes() {
        if !streaming.stream.advance() {
            return None;
        }
    }
    // A cold cache (a new execution environment, an expired entry) shows on the first
    // partition: the general write then looks the whole batch up at once.
    let mut locations = Locations::new();
    if !cache_covers(cache, &streaming.stream.plan().orders, &mut locations) {
        return None;
    }
    let work_end = work_end(budget_end);
    let begin = begin_statement(work_end, &format!(";\n{}", statements::PREPARE_WRITE));
    let mut connection = match connect(db, work_end).await {
        Ok(connection) => connection,
        Err(attempt) => return Some(Err(attempt)),
    };
    let mut tx = match begin_on(&mut connection, begin, work_end).await {
        Ok(tx) => tx,
        Err(attempt) => return Some(Err(attempt)),
    };
    let work = async {
        let tx = &mut tx;
        let started = Instant::now();
        let (gave_way, copied) = stream_copy(tx, cache, streaming, &mut locations).await?;
        let plan = complete(streaming.stream, streaming.tap);
        let locations = match gave_way {
            None => {
                finish_streamed(tx, &plan, copied, &locations, stats).await?;
                locations
            }
            Some(why) => give_way(tx, cache, &plan, why, stats).await?,
        };
        stats.write_ms = millis(started.elapsed());
        Ok::<_, AttemptFailure>(locations)
    };
    let locations = match tokio::time::timeout_at(work_end.into(), work).await {
        Err(_) => {
            drop(tx);
            discard(&mut connection);
            return Some(Err(AttemptFailure::OutOfTime));
        }
        Ok(Err(error)) => return Some(Err(error)),
        Ok(Ok(locations)) => locations,
    };
    let committed = commit(tx, budget_end).await;
    if matches!(committed, Err(AttemptFailure::CommitOutcomeUnknown(_))) {
        discard(&mut connection);
    }
    Some(committed.map(|()| locations))
}

/// Streams the stream's new orders into the direct `COPY` a partition at a time, planning the
/// next partition while the server stores the last; `locations` gains each partition's cached
/// customers. Stops early, aborting the `COPY`, when a partition gives the general write the
/// batch; a `COPY` that meets an existing order gives way too. Returns why it gave way, if it
/// did, and else the rows copied.
async fn stream_copy(
    tx: &mut PgTransaction<'_>,
    cache: &Mutex<LocationCache>,
    streaming: &mut Streaming<'_, '_, '_>,
    locations: &mut Locations,
) -> Result<(Option<GaveWay>, u64), AttemptFailure> {
    let mut copy = statements::OrdersCopy::new_orders(tx).await?;
    // The orders planned so far and not yet sent: the first partition's, whose customers were
    // found cached by the caller (no earlier partition has orders to repeat).
    let mut sent = 0;
    let gave_way = loop {
        let orders = &streaming.stream.plan().orders[sent..];
        if let Err(error) = copy.add(orders, locations).await {
            return Err(AttemptFailure::Failed(copy.fail(error).await));
        }
        // Only the last partition planned has orders not sent yet.
        if let Some(partition) = streaming.stream.plan().partitions.last() {
            streaming.tap.streamed(&partition.key, orders, locations);
        }
        sent += orders.len();
        if !streaming.stream.advance() {
            break None;
        }
        let orders = &streaming.stream.plan().orders[sent..];
        if orders.iter().any(|planned| planned.round > 0) {
            break Some(GaveWay::OrderInSeveralPartitions);
        }
        if !cache_covers(cache, orders, locations) {
            break Some(GaveWay::CustomerNotCached);
        }
    };
    match gave_way {
        None => match copy.finish().await {
            Ok(rows) => Ok((None, rows)),
            Err(error) if statements::met_existing_order(&error) => {
                Ok((Some(GaveWay::OrderExists), 0))
            }
            Err(error) => Err(AttemptFailure::Failed(error)),
        },
        Some(why) => {
            copy.abort(&format!("{why:?}")).await?;
            Ok((Some(why), 0))
        }
    }
}

/// After a streamed `COPY` that held: the counts it stands for, and the dead letters.
async fn finish_streamed(
    tx: &mut PgTransaction<'_>,
    plan: &Plan,
    copied: u64,
    locations: &Locations,
    stats: &mut DatabaseStats,
) -> Result<(), AttemptFailure> {
    stats.lookup = LookupStats {
        cache_hits: locations.len(),
        ..LookupStats::default()
    };
    stats.write = WriteStats {
        orders_changed: i64::try_from(copied).unwrap_or(i64::MAX),
        customers_not_found: statements::customers_not_found(plan, locations),
        round_trips: 1,
        streamed: true,
        ..WriteStats::default()
    };
    stats.write.dead_letters_inserted =
        statements::write_dead_letters(tx, plan, &mut stats.write).await?;
    Ok(())
}

/// The general write, in the transaction of a streamed attempt that gave way `why`: the
/// `COPY`'s rows undone, the whole batch looked up and written (upserted when an order exists
/// already). Returns the locations it used.
async fn give_way(
    tx: &mut PgTransaction<'_>,
    cache: &Mutex<LocationCache>,
    plan: &Plan,
    why: GaveWay,
    stats: &mut DatabaseStats,
) -> Result<Locations, AttemptFailure> {
    tracing::debug!(reason = ?why, "the streamed COPY gives way to the general write");
    statements::undo_direct_copy(tx).await?;
    let lookup_started = Instant::now();
    let (found, lookup) = enrich::lookup(tx, cache, &plan.distinct_customers()).await?;
    stats.lookup = lookup;
    stats.lookup_ms = millis(lookup_started.elapsed());
    stats.write = if why == GaveWay::OrderExists {
        statements::write_upserting(tx, plan, &found).await?
    } else {
        statements::write(tx, plan, &found).await?
    };
    Ok(found)
}

/// Adds to `locations` the cached locations of `orders`' customers it does not have yet;
/// `false` when one of them is not in the cache.
fn cache_covers(
    cache: &Mutex<LocationCache>,
    orders: &[PlannedOrder],
    locations: &mut Locations,
) -> bool {
    let mut missing: Vec<&str> = orders
        .iter()
        .map(|planned| planned.order.customer())
        .filter(|customer| !locations.contains_key(*customer))
        .collect();
    if missing.is_empty() {
        return true;
    }
    missing.sort_unstable();
    missing.dedup();
    match enrich::cached(cache, &missing) {
        Some(found) => {
            locations.extend(found);
            true
        }
        None => false,
    }
}

enum AttemptFailure {
    /// Nothing was committed; the error says whether trying again can help.
    Failed(sqlx::Error),
    /// The time ran out before `COMMIT` was sent: nothing was committed.
    OutOfTime,
    /// `COMMIT` was sent and no answer came: it may or may not have committed.
    CommitOutcomeUnknown(String),
}

impl From<sqlx::Error> for AttemptFailure {
    fn from(error: sqlx::Error) -> Self {
        Self::Failed(error)
    }
}

/// One try: acquire, begin with limits that end before `budget_end`, look up, write, commit.
#[tracing::instrument(
    name = "database",
    level = "debug",
    skip_all,
    fields(attempt = stats.retries + 1, set_aside_refused)
)]
async fn attempt(
    db: &Database,
    cache: &Mutex<LocationCache>,
    plan: &Plan,
    budget_end: Instant,
    set_aside_refused: bool,
    stats: &mut DatabaseStats,
) -> Result<Locations, AttemptFailure> {
    let work_end = work_end(budget_end);
    let begin = begin_statement(work_end, "");
    // One connection for the whole invocation.
    let mut connection = connect(db, work_end).await?;
    let mut tx = begin_on(&mut connection, begin, work_end).await?;
    let work = async {
        let tx = &mut tx;
        let started = Instant::now();
        let (locations, lookup) = enrich::lookup(tx, cache, &plan.distinct_customers()).await?;
        stats.lookup = lookup;
        stats.lookup_ms = millis(started.elapsed());
        let started = Instant::now();
        if !db.is_sink {
            // Nothing to commit: the lookup was all this transaction was for.
            return Ok::<_, AttemptFailure>((locations, false));
        }
        if set_aside_refused {
            write_setting_aside_refused(tx, plan, &locations, stats).await?;
        } else {
            stats.write = statements::write(tx, plan, &locations).await?;
        }
        stats.write_ms = millis(started.elapsed());
        Ok::<_, AttemptFailure>((locations, true))
    };
    let (locations, wrote) = match tokio::time::timeout_at(work_end.into(), work).await {
        Err(_) => {
            drop(tx);
            discard(&mut connection);
            return Err(AttemptFailure::OutOfTime);
        }
        Ok(result) => result?,
    };
    if !wrote {
        // A read-only transaction: however its end goes, nothing depends on it.
        if tokio::time::timeout_at(budget_end.into(), tx.commit())
            .await
            .is_err()
        {
            discard(&mut connection);
        }
        return Ok(locations);
    }
    let committed = commit(tx, budget_end).await;
    if matches!(committed, Err(AttemptFailure::CommitOutcomeUnknown(_))) {
        discard(&mut connection);
    }
    committed.map(|()| locations)
}

/// A connection of the pool, waited for until `work_end`.
async fn connect(
    db: &Database,
    work_end: Instant,
) -> Result<PoolConnection<Postgres>, AttemptFailure> {
    match tokio::time::timeout_at(work_end.into(), db.pool.acquire()).await {
        Err(_) => Err(AttemptFailure::OutOfTime),
        Ok(result) => Ok(result?),
    }
}

/// Begins the transaction on `connection` with `begin` (see [`begin_statement`]), waiting
/// until `work_end`. (A `BEGIN` cut short is a simple query, whose answer sqlx counts: the
/// connection stays in step.)
async fn begin_on(
    connection: &mut PoolConnection<Postgres>,
    begin: String,
    work_end: Instant,
) -> Result<PgTransaction<'_>, AttemptFailure> {
    let begun =
        tokio::time::timeout_at(work_end.into(), connection.begin_with(AssertSqlSafe(begin))).await;
    match begun {
        Ok(Ok(tx)) => Ok(tx),
        Ok(Err(error)) => Err(AttemptFailure::Failed(error)),
        Err(_) => Err(AttemptFailure::OutOfTime),
    }
}

/// Closes `connection` when it is dropped instead of returning it to the pool: its attempt was
/// cut short at the deadline, its future dropped wherever it waited (dropping the transaction
/// rolls it back; the server-side limits cover a rollback that cannot reach the server), or
/// the answer to its `COMMIT` did not arrive. A `COPY` dropped mid-stream sends its `CopyFail`
/// without sqlx counting the answer to it, so the connection would read every later answer
/// one statement late: the next `BEGIN` fails as not begun, and a later statement could be
/// taken for the one before it.
fn discard(connection: &mut PoolConnection<Postgres>) {
    connection.close_on_drop();
}

/// Commits the write, waiting for the answer until `budget_end`.
async fn commit(tx: PgTransaction<'_>, budget_end: Instant) -> Result<(), AttemptFailure> {
    match tokio::time::timeout_at(budget_end.into(), tx.commit()).await {
        Ok(Ok(())) => Ok(()),
        // The server answered: the transaction did not commit.
        Ok(Err(error @ sqlx::Error::Database(_))) => Err(AttemptFailure::Failed(error)),
        Ok(Err(error)) => Err(AttemptFailure::CommitOutcomeUnknown(error.to_string())),
        Err(_) => Err(AttemptFailure::CommitOutcomeUnknown(
            "no answer to COMMIT before the deadline".to_owned(),
        )),
    }
}

/// The transaction's first statement: `BEGIN` with limits that end the transaction on the
/// server by `work_end`, whatever the client does, so that nothing of it can commit after that.
fn begin_statement(work_end: Instant, then: &str) -> String {
    let server_limit_ms = millis(work_end.saturating_duration_since(Instant::now())).max(1);
    format!(
        "BEGIN; SET LOCAL statement_timeout = {server_limit_ms}; \
         SET LOCAL lock_timeout = {server_limit_ms}; \
         SET LOCAL idle_in_transaction_session_timeout = {server_limit_ms}{then}"
    )
}

/// The end of the work inside a transaction: the time left, minus what the `COMMIT` keeps.
fn work_end(budget_end: Instant) -> Instant {
    let left = budget_end.saturating_duration_since(Instant::now());
    budget_end - (left / 4).min(COMMIT_RESERVE)
}

/// Finds the orders the database refuses by bisecting the plan's orders in savepoints (each
/// probe rolled back), then writes the rest with a dead letter for each refused order, its
/// value and the database's reason: a data error costs its own records, never the batch.
async fn write_setting_aside_refused(
    tx: &mut PgTransaction<'_>,
    plan: &Plan,
    locations: &Locations,
    stats: &mut DatabaseStats,
) -> Result<(), sqlx::Error> {
    // A transient failure after this scan retries the whole attempt: count afresh.
    stats.orders_refused = 0;
    stats.refused.clear();
    let mut refused: Vec<(usize, String)> = Vec::new();
    let mut pending: Vec<Vec<usize>> = vec![(0..plan.orders.len()).collect()];
    while let Some(indices) = pending.pop() {
        let probe = Plan {
            orders: indices.iter().map(|&i| plan.orders[i].clone()).collect(),
            ..Plan::default()
        };
        let mut savepoint = tx.begin().await?;
        let result = statements::write(&mut savepoint, &probe, locations).await;
        savepoint.rollback().await?;
        match result {
            Ok(_) => {}
            Err(error) if errors::classify(&error) == ErrorClass::Data => {
                if let [index] = indices[..] {
                    refused.push((index, error.to_string()));
                } else {
                    let (left, right) = indices.split_at(indices.len() / 2);
                    pending.push(right.to_vec());
                    pending.push(left.to_vec());
                }
            }
            Err(error) => return Err(error),
        }
    }
    let mut kept = plan.clone();
    kept.orders.clear();
    let mut refused_reason: Vec<Option<String>> = vec![None; plan.orders.len()];
    for (index, reason) in refused {
        refused_reason[index] = Some(reason);
    }
    for (index, (planned, reason)) in plan.orders.iter().zip(refused_reason).enumerate() {
        let Some(reason) = reason else {
            kept.orders.push(planned.clone());
            continue;
        };
        tracing::warn!(
            partition = format!("{}-{}", planned.source.topic, planned.source.partition),
            offset = planned.source.offset,
            reason = reason.as_str(),
            "order refused by the database; kept as a dead letter"
        );
        stats.orders_refused += 1;
        stats.refused.push(index);
        kept.dead_letters.push(DeadLetter {
            partition_key: PartitionKey::new(format!(
                "{}-{}",
                planned.source.topic, planned.source.partition
            )),
            source: planned.source.clone(),
            poison: Poison {
                reason: format!("the database refused the order: {reason}"),
                raw_key: Some(planned.order.order_no().as_bytes().to_vec()),
                raw_value: Some(planned.order.to_json().into_bytes()),
                headers: Vec::new(),
            },
        });
    }
    stats.write = statements::write(tx, &kept, locations).await?;
    Ok(())
}

/// A number in 0..1 that differs between calls and execution environments.
fn jitter() -> f64 {
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    // The top 53 bits make an exact f64 in 0..1.
    #[allow(clippy::cast_precision_loss)]
    let fraction = (random >> 11) as f64 / (1u64 << 53) as f64;
    fraction
}

/// The failure as the log line and the error report show it, with a hint where the cause is
/// usually configuration.
fn database_failure(db: &Database, error: &sqlx::Error, retries: u32) -> WriteFailure {
    let mut text = describe(error);
    if retries > 0 {
        text.push_str(&format!(" (after {retries} retries)"));
    }
    if matches!(errors::classify(error), ErrorClass::Authentication) && db.credentials.rotates() {
        text.push_str(&format!(
            " (credentials re-read from {})",
            db.credentials.describe()
        ));
    }
    WriteFailure::Database {
        class: errors::classify(error),
        sqlstate: errors::sqlstate(error),
        message: text,
    }
}

fn describe(error: &sqlx::Error) -> String {
    // rustls reports a failed verification as an I/O error during the handshake.
    let tls_failure = match error {
        sqlx::Error::Tls(_) => true,
        sqlx::Error::Io(io) => io
            .get_ref()
            .is_some_and(|inner| inner.to_string().contains("certificate")),
        _ => false,
    };
    if tls_failure {
        return format!(
            "TLS with the database failed: {error} (check DB_SSL_MODE, DB_SSL_ROOT_CERT and that the host name matches the server certificate)"
        );
    }
    match error {
        sqlx::Error::PoolTimedOut => {
            "no database connection within DB_CONNECT_TIMEOUT_MS (database unreachable or too slow to accept connections)".to_owned()
        }
        sqlx::Error::Database(database) if database.code().as_deref() == Some("42501") => format!(
            "{error} (the function's role needs SELECT on customers; SELECT, INSERT, UPDATE on enriched_orders and dead_letters; and TEMPORARY on the database, for the write's staging table)"
        ),
        _ => error.to_string(),
    }
}
