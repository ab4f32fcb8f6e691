//! Start-up: what every invocation of an execution environment shares, built once before the
//! runtime starts serving (credentials, the connection pool, the location cache).

use std::sync::Mutex;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

use crate::cache::LocationCache;
use crate::config::{Config, MetricsConfig};
use crate::credentials::{CredentialError, Credentials};
use crate::plan::PoisonPolicy;

/// The `application_name` of the function's sessions, so that operators can tell them apart
/// in `pg_stat_activity`.
pub const APPLICATION_NAME: &str = "msk-order-enricher";

/// What lives for the whole execution environment and is reused by every invocation.
pub struct App {
    pub(crate) pool: PgPool,
    pub(crate) credentials: Credentials,
    pub(crate) cache: Mutex<LocationCache>,
    pub(crate) poison_policy: PoisonPolicy,
    pub(crate) deadline_margin: Duration,
    pub(crate) retry_limit: Duration,
    statement_timeout: Duration,
    pub(crate) metrics: MetricsConfig,
}

impl App {
    /// Resolves the credentials (reading the secret, if one is configured) and builds the pool
    /// without connecting: init must not fail or hang because the database is briefly
    /// unreachable; the first invocation connects, waiting at most `connect_timeout`.
    pub async fn new(config: &Config) -> Result<Self, CredentialError> {
        let (credentials, options) = Credentials::resolve(config).await?;
        let pool = PgPoolOptions::new()
            .max_connections(config.pool_size)
            .min_connections(0)
            .acquire_timeout(config.connect_timeout)
            // No ping before each use: the invocation's BEGIN is the first round trip and
            // finds a dead connection just as well, and its failure is retried.
            .test_before_acquire(false)
            .connect_lazy_with(session_options(options, config.statement_timeout));
        Ok(Self {
            pool,
            credentials,
            cache: Mutex::new(LocationCache::new(config.cache_capacity, config.cache_ttl)),
            poison_policy: config.poison_policy,
            deadline_margin: config.deadline_margin,
            retry_limit: config.retry_limit,
            statement_timeout: config.statement_timeout,
            metrics: config.metrics.clone(),
        })
    }

    /// Gives new connections `options` (re-read credentials), with this function's session
    /// settings.
    pub(crate) fn set_connect_options(&self, options: PgConnectOptions) {
        self.pool
            .set_connect_options(session_options(options, self.statement_timeout));
    }
}

/// The function's session settings: its name, and a connection-level `statement_timeout` and
/// `idle_in_transaction_session_timeout`, so that no statement or abandoned transaction of a
/// session outlives a Lambda invocation even if the per-transaction limits were never set.
fn session_options(options: PgConnectOptions, statement_timeout: Duration) -> PgConnectOptions {
    let ms = statement_timeout.as_millis().to_string();
    options.application_name(APPLICATION_NAME).options([
        ("statement_timeout", ms.as_str()),
        ("idle_in_transaction_session_timeout", ms.as_str()),
    ])
}
