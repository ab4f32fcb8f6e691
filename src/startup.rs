//! Start-up: what every invocation of an execution environment shares, built once before the
//! runtime starts serving (credentials, the connection pool, the location cache, the output
//! topic's producer).

use std::sync::Mutex;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

use crate::cache::LocationCache;
use crate::config::{Config, MetricsConfig};
use crate::credentials::{self, CredentialError, Credentials};
use crate::plan::PoisonPolicy;
use crate::producer::{OutputProducer, ProducerError};

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
    /// Whether the orders are written to PostgreSQL (`SINKS` has `postgres`).
    pub(crate) writes_to_postgres: bool,
    /// The output topic's producer (`SINKS` has `kafka`).
    pub(crate) producer: Option<OutputProducer>,
}

/// Why the execution environment cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// A secret could not be read or used.
    #[error(transparent)]
    Credentials(#[from] CredentialError),
    /// librdkafka refused the producer's settings.
    #[error(transparent)]
    Producer(#[from] ProducerError),
}

impl StartupError {
    /// The `errorType` of Lambda's init error report.
    pub fn error_type(&self) -> &'static str {
        match self {
            Self::Credentials(_) => "Runtime.CredentialsError",
            Self::Producer(_) => "Runtime.ConfigurationError",
        }
    }
}

impl App {
    /// Resolves the credentials (reading the secret, if one is configured) and builds the pool
    /// without connecting: init must not fail or hang because the database is briefly
    /// unreachable; the first invocation connects, waiting at most `connect_timeout`.
    pub async fn new(config: &Config) -> Result<Self, StartupError> {
        let (credentials, options) = Credentials::resolve(config).await?;
        let producer = match &config.sinks.kafka {
            None => None,
            Some(sink) => {
                let user = match &sink.secret_arn {
                    Some(arn) => Some(credentials::read_kafka_user(arn).await?),
                    None => None,
                };
                Some(OutputProducer::new(sink.clone(), user)?)
            }
        };
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
            writes_to_postgres: config.sinks.postgres,
            producer,
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
