//! One invocation: event in, decode, plan, enrich, write, response out.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lambda_runtime::{Error, LambdaEvent};
use serde_json::value::RawValue;

use crate::enrich::{self, LookupStats};
use crate::event::{self, KafkaEvent};
use crate::metrics;
use crate::plan::{self, Plan, WriteOutcome};
use crate::response::BatchResponse;
use crate::startup::{App, APPLICATION_NAME};
use crate::store::{self, WriteStats};
use crate::summary::{log_summary, millis, Summary, WriteFailure};

/// The Lambda handler.
///
/// The runtime hands over the event as raw JSON, parsed here: lambda_runtime's own typed
/// deserialization tracks the path of every field (for its error messages), which made it about
/// a third slower on a 6 MB batch (see BENCHMARKS.md). An event that is not a Kafka event fails
/// the invocation, so Lambda retries the batch rather than this function dropping it.
pub async fn handle(app: &App, event: LambdaEvent<Box<RawValue>>) -> Result<BatchResponse, Error> {
    tracing::debug!(
        deadline_ms = event.context.deadline,
        now_ms = epoch_ms(),
        "invocation received"
    );
    let deadline = deadline_from_epoch_ms(event.context.deadline, app.deadline_margin);
    let payload: KafkaEvent = serde_json::from_str(event.payload.get())
        .map_err(|error| format!("the event is not a Kafka event: {error}"))?;
    let (response, summary) = process(app, payload, deadline).await;
    log_summary(&event.context.request_id, &summary);
    if let Some(document) = metrics::emf_document(&summary, &app.metrics, epoch_ms()) {
        // EMF goes to stdout as its own line; CloudWatch Logs extracts the metrics.
        println!("{document}");
    }
    Ok(response)
}

/// Converts Lambda's deadline (epoch milliseconds) into the instant by which the write must
/// have finished, `margin` earlier. `None` when the runtime gave no deadline.
pub fn deadline_from_epoch_ms(deadline_ms: u64, margin: Duration) -> Option<Instant> {
    deadline_at(
        deadline_ms,
        margin,
        u64::try_from(epoch_ms()).unwrap_or(0),
        Instant::now(),
    )
}

/// Below this a "deadline" cannot be an epoch time (it is September 2001): `cargo lambda watch`
/// sends the remaining milliseconds instead (600000), and taking that as a date in 1970 would
/// report every batch as out of time.
const EARLIEST_EPOCH_DEADLINE_MS: u64 = 1_000_000_000_000;

fn deadline_at(deadline_ms: u64, margin: Duration, now_ms: u64, now: Instant) -> Option<Instant> {
    if deadline_ms == 0 {
        return None;
    }
    let remaining_ms = if deadline_ms < EARLIEST_EPOCH_DEADLINE_MS {
        deadline_ms
    } else {
        deadline_ms.saturating_sub(now_ms)
    };
    Some(now + Duration::from_millis(remaining_ms).saturating_sub(margin))
}

fn epoch_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or_default()
}

/// Processes one event. Never fails: what could not be written is in the response.
pub async fn process(
    app: &App,
    event: KafkaEvent,
    deadline: Option<Instant>,
) -> (BatchResponse, Summary) {
    let started = Instant::now();
    let plan = plan::plan(event::decode(event), app.poison_policy);
    let decode_ms = millis(started.elapsed());

    let mut io = IoStats::default();
    let failure = if !plan.has_writes() {
        None
    } else {
        let work = enrich_and_write(app, &plan, &mut io);
        let result = match deadline {
            Some(deadline) if deadline <= Instant::now() => Err(WriteFailure::Deadline),
            Some(deadline) => match tokio::time::timeout_at(deadline.into(), work).await {
                Ok(result) => result,
                Err(_) => Err(WriteFailure::Deadline),
            },
            None => work.await,
        };
        result.err()
    };
    let outcome = if failure.is_some() {
        WriteOutcome::NotWritten
    } else {
        WriteOutcome::Committed
    };
    let response = plan.response(outcome);
    let committed = failure.is_none();
    let summary = Summary {
        counts: plan.counts.clone(),
        lookup: io.lookup,
        write: io.write,
        failure,
        orders_written: if committed { plan.orders.len() } else { 0 },
        dead_letters_written: if committed {
            plan.dead_letters.len()
        } else {
            0
        },
        reported: response.batch_item_failures.len(),
        redelivered_records: plan.redelivered_records(outcome),
        oldest_timestamp_ms: plan.oldest_timestamp_ms,
        decode_ms,
        lookup_ms: io.lookup_ms,
        write_ms: io.write_ms,
        total_ms: millis(started.elapsed()),
    };
    (response, summary)
}

#[derive(Default)]
struct IoStats {
    lookup: LookupStats,
    write: WriteStats,
    lookup_ms: u64,
    write_ms: u64,
}

/// The I/O of an invocation. When the database rejects the credentials and they come from a
/// secret, the secret is read again once (it may have been rotated), the pool is given the new
/// credentials, and the work is tried once more.
async fn enrich_and_write(app: &App, plan: &Plan, stats: &mut IoStats) -> Result<(), WriteFailure> {
    match try_enrich_and_write(app, plan, stats).await {
        Err(error) if is_authentication_failure(&error) && app.credentials.rotates() => {
            tracing::warn!(
                "the database rejected the credentials from {}; reading the secret again",
                app.credentials.describe()
            );
            let options = app
                .credentials
                .refresh()
                .await
                .map_err(|error| WriteFailure::Database(error.to_string()))?;
            // New connections use the new credentials; open ones stay valid (PostgreSQL checks a
            // password only when a session starts).
            app.pool
                .set_connect_options(options.application_name(APPLICATION_NAME));
            try_enrich_and_write(app, plan, stats)
                .await
                .map_err(|error| {
                    WriteFailure::Database(format!(
                        "{} (credentials re-read from {})",
                        describe(&error),
                        app.credentials.describe()
                    ))
                })
        }
        other => other.map_err(|error| WriteFailure::Database(describe(&error))),
    }
}

async fn try_enrich_and_write(
    app: &App,
    plan: &Plan,
    stats: &mut IoStats,
) -> Result<(), sqlx::Error> {
    let started = Instant::now();
    let (locations, lookup) =
        enrich::locate(&app.pool, &app.cache, &plan.distinct_customers()).await?;
    stats.lookup = lookup;
    stats.lookup_ms = millis(started.elapsed());
    let started = Instant::now();
    stats.write = store::write(&app.pool, plan, &locations).await?;
    stats.write_ms = millis(started.elapsed());
    Ok(())
}

/// SQLSTATE 28P01 (invalid_password) and 28000 (invalid_authorization_specification).
fn is_authentication_failure(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(error) => {
            matches!(error.code().as_deref(), Some("28P01") | Some("28000"))
        }
        _ => false,
    }
}

/// The error with a hint where the cause is usually configuration.
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
        _ => error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW_MS: u64 = 1_795_314_843_596;

    fn budget(deadline_ms: u64, margin_ms: u64) -> Option<Duration> {
        let now = Instant::now();
        deadline_at(deadline_ms, Duration::from_millis(margin_ms), NOW_MS, now).map(|d| d - now)
    }

    #[test]
    fn the_write_must_finish_a_margin_before_the_deadline() {
        assert_eq!(
            budget(NOW_MS + 5_000, 1_000),
            Some(Duration::from_millis(4_000))
        );
        assert_eq!(
            budget(NOW_MS + 500, 1_000),
            Some(Duration::ZERO),
            "inside the margin: no time left"
        );
        assert_eq!(budget(NOW_MS - 10, 0), Some(Duration::ZERO), "already past");
        assert_eq!(budget(0, 1_000), None, "no deadline given");
    }

    #[test]
    fn a_relative_deadline_from_cargo_lambda_is_taken_as_remaining_time() {
        assert_eq!(budget(600_000, 1_000), Some(Duration::from_millis(599_000)));
    }
}
