//! The invocation's database work: one connection, one transaction, limits derived from the
//! deadline, and transient failures waited out inside the invocation.
//!
//! The promise this module keeps: when it returns an error, nothing of the batch is or will
//! ever be committed. The transaction's `statement_timeout`, `lock_timeout` and
//! `idle_in_transaction_session_timeout` end before the deadline on the server itself, so a
//! statement the client stopped waiting for cannot commit later; only a `COMMIT` whose answer
//! is lost leaves the outcome open, and that is the one case reported as
//! [`WriteFailure::CommitOutcomeUnknown`] (the handler then fails the invocation, so Lambda
//! retries the batch; the write is idempotent).

use std::hash::{BuildHasher as _, Hasher as _};
use std::time::{Duration, Instant};

use sqlx::AssertSqlSafe;

use sqlx::{Connection as _, PgTransaction};

use crate::db_error::{self, ErrorClass};
use crate::enrich::{self, LookupStats};
use crate::event::{PartitionKey, Poison};
use crate::location::Locations;
use crate::plan::{DeadLetter, Plan};
use crate::startup::App;
use crate::store::{self, WriteStats};
use crate::summary::{millis, WriteFailure};

/// What the database work did, for the summary.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IoStats {
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

/// Looks up the plan's customers and writes the plan in one transaction (only looks up when
/// the database is not a sink), retrying transient failures until `deadline` (or the
/// configured retry limit). `Ok` holds the locations the lookup found. `Err` means nothing of
/// the plan was committed, except for [`WriteFailure::CommitOutcomeUnknown`].
pub async fn enrich_and_write(
    app: &App,
    plan: &Plan,
    deadline: Option<Instant>,
) -> (IoStats, Result<Locations, WriteFailure>) {
    let mut stats = IoStats::default();
    let started = Instant::now();
    let limit = started + app.retry_limit;
    let budget_end = deadline.map_or(limit, |deadline| deadline.min(limit));
    let mut credentials_reread = false;
    let mut last_transient: Option<WriteFailure> = None;
    // After a data error the next attempt finds the refused orders and sets them aside.
    let mut set_aside_refused = false;
    loop {
        if Instant::now() >= budget_end {
            // Out of time while the database was still failing: say why, not just when.
            return (stats, Err(last_transient.unwrap_or(WriteFailure::Deadline)));
        }
        let error = match attempt(app, plan, budget_end, set_aside_refused, &mut stats).await {
            Ok(locations) => return (stats, Ok(locations)),
            Err(Attempt::OutOfTime) => {
                return (stats, Err(last_transient.unwrap_or(WriteFailure::Deadline)))
            }
            Err(Attempt::CommitOutcomeUnknown(why)) => {
                return (stats, Err(WriteFailure::CommitOutcomeUnknown(why)))
            }
            Err(Attempt::Failed(error)) => error,
        };
        match db_error::classify(&error) {
            ErrorClass::Transient => {
                let wait = db_error::backoff(stats.retries + 1, jitter());
                if Instant::now() + wait >= budget_end {
                    let failure = database_failure(app, &error, stats.retries);
                    return (stats, Err(failure));
                }
                last_transient = Some(database_failure(app, &error, stats.retries + 1));
                stats.retries += 1;
                stats.waited_ms += millis(wait);
                tracing::warn!(
                    attempt = stats.retries,
                    sqlstate = db_error::sqlstate(&error).unwrap_or_default(),
                    wait_ms = millis(wait),
                    error = %error,
                    "transient database failure; retrying within the invocation"
                );
                tokio::time::sleep(wait).await;
            }
            ErrorClass::Authentication if app.credentials.rotates() && !credentials_reread => {
                credentials_reread = true;
                tracing::warn!(
                    "the database rejected the credentials from {}; reading the secret again",
                    app.credentials.describe()
                );
                match app.credentials.refresh().await {
                    // New connections use the new credentials; open ones stay valid
                    // (PostgreSQL checks a password only when a session starts).
                    Ok(options) => app.set_connect_options(options),
                    Err(refresh) => {
                        let failure = WriteFailure::Database {
                            class: ErrorClass::Authentication,
                            sqlstate: db_error::sqlstate(&error),
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
                    sqlstate = db_error::sqlstate(&error).unwrap_or_default(),
                    error = %error,
                    "the database refused a value; finding the refused orders"
                );
            }
            _ => {
                let failure = database_failure(app, &error, stats.retries);
                return (stats, Err(failure));
            }
        }
    }
}

enum Attempt {
    /// Nothing was committed; the error says whether trying again can help.
    Failed(sqlx::Error),
    /// The time ran out before `COMMIT` was sent: nothing was committed.
    OutOfTime,
    /// `COMMIT` was sent and no answer came: it may or may not have committed.
    CommitOutcomeUnknown(String),
}

impl From<sqlx::Error> for Attempt {
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
    app: &App,
    plan: &Plan,
    budget_end: Instant,
    set_aside_refused: bool,
    stats: &mut IoStats,
) -> Result<Locations, Attempt> {
    let left = budget_end.saturating_duration_since(Instant::now());
    let work_end = budget_end - (left / 4).min(COMMIT_RESERVE);
    // The server stops the transaction's statements, lock waits and idleness by `work_end`
    // on its own clock: whatever the client does, nothing of it can commit after that.
    let server_limit_ms = millis(work_end.saturating_duration_since(Instant::now())).max(1);
    let work = async {
        // One connection for the whole invocation, owned by the transaction.
        let mut tx = app
            .pool
            .begin_with(AssertSqlSafe(format!(
                "BEGIN; SET LOCAL statement_timeout = {server_limit_ms}; \
                 SET LOCAL lock_timeout = {server_limit_ms}; \
                 SET LOCAL idle_in_transaction_session_timeout = {server_limit_ms}"
            )))
            .await?;
        let started = Instant::now();
        let (locations, lookup) =
            enrich::locate(&mut tx, &app.cache, &plan.distinct_customers()).await?;
        stats.lookup = lookup;
        stats.lookup_ms = millis(started.elapsed());
        let started = Instant::now();
        if !app.writes_to_postgres {
            // Nothing to commit: the lookup was all this transaction was for.
            return Ok::<_, Attempt>((tx, locations, false));
        }
        if set_aside_refused {
            write_setting_aside_refused(&mut tx, plan, &locations, stats).await?;
        } else {
            stats.write = store::write(&mut tx, plan, &locations).await?;
        }
        stats.write_ms = millis(started.elapsed());
        Ok::<_, Attempt>((tx, locations, true))
    };
    let (tx, locations, wrote) = match tokio::time::timeout_at(work_end.into(), work).await {
        // Dropping the transaction rolls it back; the server-side limits cover the case where
        // the rollback cannot reach the server.
        Err(_) => return Err(Attempt::OutOfTime),
        Ok(result) => result?,
    };
    if !wrote {
        // A read-only transaction: however its end goes, nothing depends on it.
        let _ = tokio::time::timeout_at(budget_end.into(), tx.commit()).await;
        return Ok(locations);
    }
    match tokio::time::timeout_at(budget_end.into(), tx.commit()).await {
        Ok(Ok(())) => Ok(locations),
        // The server answered: the transaction did not commit.
        Ok(Err(error @ sqlx::Error::Database(_))) => Err(Attempt::Failed(error)),
        Ok(Err(error)) => Err(Attempt::CommitOutcomeUnknown(error.to_string())),
        Err(_) => Err(Attempt::CommitOutcomeUnknown(
            "no answer to COMMIT before the deadline".to_owned(),
        )),
    }
}

/// Finds the orders the database refuses by bisecting the plan's orders in savepoints (each
/// probe rolled back), then writes the rest with a dead letter for each refused order, its
/// value and the database's reason: a data error costs its own records, never the batch.
async fn write_setting_aside_refused(
    tx: &mut PgTransaction<'_>,
    plan: &Plan,
    locations: &Locations,
    stats: &mut IoStats,
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
        let result = store::write(&mut savepoint, &probe, locations).await;
        savepoint.rollback().await?;
        match result {
            Ok(_) => {}
            Err(error) if db_error::classify(&error) == ErrorClass::Data => {
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
    stats.write = store::write(tx, &kept, locations).await?;
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
fn database_failure(app: &App, error: &sqlx::Error, retries: u32) -> WriteFailure {
    let mut text = describe(error);
    if retries > 0 {
        text.push_str(&format!(" (after {retries} retries)"));
    }
    if matches!(db_error::classify(error), ErrorClass::Authentication) && app.credentials.rotates()
    {
        text.push_str(&format!(
            " (credentials re-read from {})",
            app.credentials.describe()
        ));
    }
    WriteFailure::Database {
        class: db_error::classify(error),
        sqlstate: db_error::sqlstate(error),
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
