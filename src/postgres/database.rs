//! The database as every invocation of an execution environment shares it: the connection
//! pool, the credentials it connects with (read again after a rotation), and the limits of
//! one invocation's write.

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

use crate::config::credentials::Credentials;
use crate::config::Config;

/// The `application_name` of the function's sessions, so that operators can tell them apart
/// in `pg_stat_activity`.
pub(crate) const APPLICATION_NAME: &str = "msk-order-enricher";

/// The pool and what the write needs to know about the database.
pub(crate) struct Database {
    pub(crate) pool: PgPool,
    pub(crate) credentials: Credentials,
    /// How long one invocation's write may retry, at most (`DB_RETRY_LIMIT_MS`).
    pub(crate) retry_limit: Duration,
    /// Whether the orders are written to PostgreSQL (`SINKS` has `postgres`); otherwise the
    /// database only answers the customer lookup.
    pub(crate) is_sink: bool,
    statement_timeout: Duration,
}

impl Database {
    /// Builds the pool without connecting: init must not fail or hang because the database is
    /// briefly unreachable; the first invocation connects, waiting at most `connect_timeout`.
    pub(crate) fn new(
        config: &Config,
        credentials: Credentials,
        options: PgConnectOptions,
    ) -> Self {
        let pool = PgPoolOptions::new()
            .max_connections(config.pool_size)
            .min_connections(0)
            .acquire_timeout(config.connect_timeout)
            // No ping before each use: the invocation's BEGIN is the first round trip and
            // finds a dead connection just as well, and its failure is retried.
            .test_before_acquire(false)
            .connect_lazy_with(session_options(options, config.statement_timeout));
        Self {
            pool,
            credentials,
            retry_limit: config.retry_limit,
            is_sink: config.sinks.postgres,
            statement_timeout: config.statement_timeout,
        }
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
