//! Start-up: what every invocation of an execution environment shares, built once before the
//! runtime starts serving (credentials, the connection pool, the location cache, the output
//! topic's producer).

use std::sync::Mutex;
use std::time::Duration;

use crate::config::credentials::{self, CredentialError, Credentials};
use crate::config::{Config, MetricsConfig, PoisonPolicy};
use crate::enrich::cache::LocationCache;
use crate::kafka::producer::{Producer, ProducerError};
use crate::postgres::database::Database;

/// What lives for the whole execution environment and is reused by every invocation.
pub struct App {
    pub(crate) database: Database,
    pub(crate) cache: Mutex<LocationCache>,
    pub(crate) poison_policy: PoisonPolicy,
    pub(crate) deadline_margin: Duration,
    pub(crate) metrics: MetricsConfig,
    /// The output topic's producer (`SINKS` has `kafka`).
    pub(crate) producer: Option<Producer>,
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
    /// Resolves the credentials (reading the secrets, if configured), builds the pool without
    /// connecting, the cache and the producer (no network either).
    pub async fn new(config: &Config) -> Result<Self, StartupError> {
        let (credentials, options) = Credentials::resolve(config).await?;
        let producer = match &config.sinks.kafka {
            None => None,
            Some(sink) => {
                let user = match &sink.secret_arn {
                    Some(arn) => Some(credentials::read_kafka_user(arn).await?),
                    None => None,
                };
                Some(Producer::new(sink.clone(), user)?)
            }
        };
        Ok(Self {
            database: Database::new(config, credentials, options),
            cache: Mutex::new(LocationCache::new(config.cache_capacity, config.cache_ttl)),
            poison_policy: config.poison_policy,
            deadline_margin: config.deadline_margin,
            metrics: config.metrics.clone(),
            producer,
        })
    }
}
