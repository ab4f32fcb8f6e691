//! One invocation: event in, decode, plan, enrich, write, response out.

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lambda_runtime::{Error, LambdaEvent};
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;

use crate::cache::LocationCache;
use crate::config::Config;
use crate::enrich::{self, LookupStats};
use crate::event::{self, KafkaEvent};
use crate::plan::{self, Counts, PoisonPolicy, WriteOutcome};
use crate::response::BatchResponse;
use crate::store::{self, WriteStats};

pub const APPLICATION_NAME: &str = "msk-order-enricher";

/// What lives for the whole execution environment and is reused by every invocation.
pub struct App {
    pool: PgPool,
    cache: Mutex<LocationCache>,
    poison_policy: PoisonPolicy,
    deadline_margin: Duration,
}

impl App {
    /// Builds the pool without connecting: init must not fail or hang because the database is
    /// briefly unreachable; the first invocation connects (bounded by `connect_timeout`).
    pub fn new(config: &Config) -> Self {
        let pool = PgPoolOptions::new()
            .max_connections(config.pool_size)
            .min_connections(0)
            .acquire_timeout(config.connect_timeout)
            // Named, so operators can tell the function's sessions apart in pg_stat_activity.
            .connect_lazy_with(config.database.clone().application_name(APPLICATION_NAME));
        Self::with_pool(pool, config)
    }

    pub fn with_pool(pool: PgPool, config: &Config) -> Self {
        Self {
            pool,
            cache: Mutex::new(LocationCache::new(config.cache_capacity, config.cache_ttl)),
            poison_policy: config.poison_policy,
            deadline_margin: config.deadline_margin,
        }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

/// Why nothing was written in an invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteFailure {
    Deadline,
    Database(String),
}

impl WriteFailure {
    fn database(error: sqlx::Error) -> Self {
        Self::Database(error.to_string())
    }
}

/// Everything an invocation did; logged as one line and asserted on in tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub counts: Counts,
    pub lookup: LookupStats,
    pub write: WriteStats,
    pub failure: Option<WriteFailure>,
    pub reported: usize,
    pub decode_ms: u128,
    pub lookup_ms: u128,
    pub write_ms: u128,
}

/// The Lambda handler.
pub async fn handle(app: &App, event: LambdaEvent<KafkaEvent>) -> Result<BatchResponse, Error> {
    let deadline = deadline_from_epoch_ms(event.context.deadline, app.deadline_margin);
    let (response, summary) = process(app, event.payload, deadline).await;
    log_summary(&event.context.request_id, &summary);
    Ok(response)
}

/// Converts Lambda's deadline (epoch milliseconds) into the instant by which the write must
/// have finished, `margin` earlier. `None` when the runtime gave no deadline.
pub fn deadline_from_epoch_ms(deadline_ms: u64, margin: Duration) -> Option<Instant> {
    if deadline_ms == 0 {
        return None;
    }
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();
    let remaining = Duration::from_millis(
        u64::try_from(u128::from(deadline_ms).saturating_sub(now_ms)).unwrap_or(0),
    );
    Some(Instant::now() + remaining.saturating_sub(margin))
}

/// Processes one event. Never fails: what could not be written is in the response.
pub async fn process(
    app: &App,
    event: KafkaEvent,
    deadline: Option<Instant>,
) -> (BatchResponse, Summary) {
    let started = Instant::now();
    let plan = plan::plan(event::decode(event), app.poison_policy);
    let decode_ms = started.elapsed().as_millis();

    let mut io = IoStats::default();
    let failure = if !plan.has_writes() {
        None
    } else {
        let work = enrich_and_write(app, &plan, &mut io);
        let result = match deadline {
            Some(deadline) if deadline <= Instant::now() => Err(WriteFailure::Deadline),
            Some(deadline) => match tokio::time::timeout_at(deadline.into(), work).await {
                Ok(result) => result.map_err(WriteFailure::database),
                Err(_) => Err(WriteFailure::Deadline),
            },
            None => work.await.map_err(WriteFailure::database),
        };
        result.err()
    };
    let outcome = if failure.is_some() {
        WriteOutcome::NotWritten
    } else {
        WriteOutcome::Committed
    };
    let response = plan.response(outcome);
    let summary = Summary {
        counts: plan.counts.clone(),
        lookup: io.lookup,
        write: io.write,
        failure,
        reported: response.batch_item_failures.len(),
        decode_ms,
        lookup_ms: io.lookup_ms,
        write_ms: io.write_ms,
    };
    (response, summary)
}

#[derive(Default)]
struct IoStats {
    lookup: LookupStats,
    write: WriteStats,
    lookup_ms: u128,
    write_ms: u128,
}

/// The I/O of an invocation; `stats` keeps what was measured even when a step fails.
async fn enrich_and_write(
    app: &App,
    plan: &plan::Plan,
    stats: &mut IoStats,
) -> Result<(), sqlx::Error> {
    let started = Instant::now();
    let (locations, lookup) =
        enrich::locate(&app.pool, &app.cache, &plan.distinct_customers()).await?;
    stats.lookup = lookup;
    stats.lookup_ms = started.elapsed().as_millis();
    let started = Instant::now();
    stats.write = store::write(&app.pool, plan, &locations).await?;
    stats.write_ms = started.elapsed().as_millis();
    Ok(())
}

fn log_summary(request_id: &str, summary: &Summary) {
    let counts = &summary.counts;
    let failure = match &summary.failure {
        None => String::new(),
        Some(WriteFailure::Deadline) => "deadline reached before the write finished".to_owned(),
        Some(WriteFailure::Database(error)) => format!("database: {error}"),
    };
    let fields = (
        counts.received,
        counts.orders,
        counts.superseded,
        summary.write.customers_not_found,
        counts.dead_lettered,
        counts.tombstones,
    );
    macro_rules! summary_event {
        ($level:ident, $message:literal) => {
            tracing::$level!(
                request_id,
                received = fields.0,
                orders = fields.1,
                superseded_in_batch = fields.2,
                customers_not_found = fields.3,
                dead_lettered = fields.4,
                tombstones = fields.5,
                poison_reported = counts.poison_reported,
                held_back = counts.held_back,
                reported_partitions = summary.reported,
                orders_changed = summary.write.orders_changed,
                cache_hits = summary.lookup.cache_hits,
                customers_looked_up = summary.lookup.looked_up,
                lookup_round_trips = summary.lookup.round_trips,
                decode_ms = summary.decode_ms as u64,
                lookup_ms = summary.lookup_ms as u64,
                write_ms = summary.write_ms as u64,
                failure = failure.as_str(),
                $message
            )
        };
    }
    if summary.failure.is_some() {
        summary_event!(
            warn,
            "batch not written; partitions reported for redelivery"
        );
    } else {
        summary_event!(info, "batch processed");
    }
}
