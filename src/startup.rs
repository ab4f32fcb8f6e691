//! Start-up: what every invocation of an execution environment shares, built once before the
//! runtime starts serving (credentials, the connection pool, the location cache).

use std::sync::Mutex;
use std::time::Duration;

use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;

use crate::cache::LocationCache;
use crate::config::{Config, MetricsConfig};
use crate::credentials::{CredentialError, Credentials};
use crate::plan::PoisonPolicy;

pub const APPLICATION_NAME: &str = "msk-order-enricher";

/// What lives for the whole execution environment and is reused by every invocation.
pub struct App {
    pub(crate) pool: PgPool,
    pub(crate) credentials: Credentials,
    pub(crate) cache: Mutex<LocationCache>,
    pub(crate) poison_policy: PoisonPolicy,
    pub(crate) deadline_margin: Duration,
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
            // Named, so operators can tell the function's sessions apart in pg_stat_activity.
            .connect_lazy_with(options.application_name(APPLICATION_NAME));
        Ok(Self {
            pool,
            credentials,
            cache: Mutex::new(LocationCache::new(config.cache_capacity, config.cache_ttl)),
            poison_policy: config.poison_policy,
            deadline_margin: config.deadline_margin,
            metrics: config.metrics.clone(),
        })
    }
}
