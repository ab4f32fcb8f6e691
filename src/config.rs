//! Configuration from environment variables, validated once at start. Every error names the
//! variable and what is wrong with it, and never echoes a secret.

use std::fmt;
use std::num::NonZeroUsize;
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::PgConnectOptions;

use crate::plan::PoisonPolicy;

#[derive(Clone)]
pub struct Config {
    pub database: PgConnectOptions,
    pub pool_size: u32,
    pub connect_timeout: Duration,
    pub cache_ttl: Duration,
    pub cache_capacity: NonZeroUsize,
    pub poison_policy: PoisonPolicy,
    pub deadline_margin: Duration,
}

impl fmt::Debug for Config {
    // PgConnectOptions holds the password: never print it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("database_host", &self.database.get_host())
            .field("database_port", &self.database.get_port())
            .field("database_name", &self.database.get_database())
            .field("pool_size", &self.pool_size)
            .field("connect_timeout", &self.connect_timeout)
            .field("cache_ttl", &self.cache_ttl)
            .field("cache_capacity", &self.cache_capacity)
            .field("poison_policy", &self.poison_policy)
            .field("deadline_margin", &self.deadline_margin)
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub variable: &'static str,
    pub problem: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "configuration error: {} {}", self.variable, self.problem)
    }
}

impl std::error::Error for ConfigError {}

/// The variables and their defaults; the README's configuration table mirrors this.
pub const DATABASE_URL: &str = "DATABASE_URL";
pub const DB_POOL_SIZE: &str = "DB_POOL_SIZE";
pub const DB_CONNECT_TIMEOUT_MS: &str = "DB_CONNECT_TIMEOUT_MS";
pub const CACHE_TTL_SECONDS: &str = "CACHE_TTL_SECONDS";
pub const CACHE_MAX_ENTRIES: &str = "CACHE_MAX_ENTRIES";
pub const POISON_RECORD_POLICY: &str = "POISON_RECORD_POLICY";
pub const DEADLINE_MARGIN_MS: &str = "DEADLINE_MARGIN_MS";

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the configuration through `lookup` (the environment in production, a map in tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let database_url = lookup(DATABASE_URL)
            .filter(|url| !url.trim().is_empty())
            .ok_or_else(|| {
                problem(
                    DATABASE_URL,
                    "is not set: give a postgres:// connection URL",
                )
            })?;
        let scheme_ok =
            database_url.starts_with("postgres://") || database_url.starts_with("postgresql://");
        let parsed = PgConnectOptions::from_str(&database_url)
            .ok()
            .filter(|_| scheme_ok);
        let database = parsed.ok_or_else(|| {
            problem(
                DATABASE_URL,
                "is not a valid PostgreSQL URL (expected postgres://user:password@host:port/dbname)",
            )
        })?;
        let pool_size = number(&lookup, DB_POOL_SIZE, 2, 1..=50)?;
        let connect_timeout =
            Duration::from_millis(number(&lookup, DB_CONNECT_TIMEOUT_MS, 3000, 100..=60_000)?);
        let cache_ttl = Duration::from_secs(number(&lookup, CACHE_TTL_SECONDS, 60, 0..=86_400)?);
        let cache_capacity =
            NonZeroUsize::new(number(&lookup, CACHE_MAX_ENTRIES, 10_000, 1..=10_000_000)?)
                .ok_or_else(|| problem(CACHE_MAX_ENTRIES, "must be at least 1"))?;
        let poison_policy = match lookup(POISON_RECORD_POLICY).as_deref().map(str::trim) {
            None | Some("") | Some("dead-letter") => PoisonPolicy::DeadLetter,
            Some("report") => PoisonPolicy::Report,
            Some(other) => {
                return Err(problem(
                    POISON_RECORD_POLICY,
                    &format!("is {other:?}: expected \"dead-letter\" or \"report\""),
                ))
            }
        };
        let deadline_margin =
            Duration::from_millis(number(&lookup, DEADLINE_MARGIN_MS, 1000, 0..=600_000)?);
        Ok(Self {
            database,
            pool_size,
            connect_timeout,
            cache_ttl,
            cache_capacity,
            poison_policy,
            deadline_margin,
        })
    }
}

fn problem(variable: &'static str, problem: &str) -> ConfigError {
    ConfigError {
        variable,
        problem: problem.to_owned(),
    }
}

fn number<T>(
    lookup: &impl Fn(&str) -> Option<String>,
    variable: &'static str,
    default: T,
    range: std::ops::RangeInclusive<T>,
) -> Result<T, ConfigError>
where
    T: FromStr + PartialOrd + fmt::Display + Copy,
{
    let Some(text) = lookup(variable).filter(|text| !text.trim().is_empty()) else {
        return Ok(default);
    };
    let value: T = text
        .trim()
        .parse()
        .map_err(|_| problem(variable, &format!("is {text:?}: expected a whole number")))?;
    if !range.contains(&value) {
        return Err(problem(
            variable,
            &format!("is {value}: expected {} to {}", range.start(), range.end()),
        ));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|name| vars.get(name).cloned())
    }

    const URL: (&str, &str) = (
        "DATABASE_URL",
        "postgres://app:s3cret@db.internal:5432/orders",
    );

    #[test]
    fn defaults() {
        let c = config(&[URL]).unwrap();
        assert_eq!(c.pool_size, 2);
        assert_eq!(c.connect_timeout, Duration::from_secs(3));
        assert_eq!(c.cache_ttl, Duration::from_secs(60));
        assert_eq!(c.cache_capacity.get(), 10_000);
        assert_eq!(c.poison_policy, PoisonPolicy::DeadLetter);
        assert_eq!(c.deadline_margin, Duration::from_secs(1));
        assert_eq!(c.database.get_host(), "db.internal");
        assert_eq!(c.database.get_database(), Some("orders"));
    }

    #[test]
    fn overrides() {
        let c = config(&[
            URL,
            ("DB_POOL_SIZE", "4"),
            ("CACHE_TTL_SECONDS", "0"),
            ("POISON_RECORD_POLICY", "report"),
            ("DEADLINE_MARGIN_MS", "2500"),
        ])
        .unwrap();
        assert_eq!(c.pool_size, 4);
        assert_eq!(c.cache_ttl, Duration::ZERO);
        assert_eq!(c.poison_policy, PoisonPolicy::Report);
        assert_eq!(c.deadline_margin, Duration::from_millis(2500));
    }

    #[test]
    fn errors_name_the_variable_and_the_problem() {
        let message = |vars: &[(&str, &str)]| config(vars).unwrap_err().to_string();
        assert_eq!(
            message(&[]),
            "configuration error: DATABASE_URL is not set: give a postgres:// connection URL"
        );
        assert_eq!(
            message(&[URL, ("DB_POOL_SIZE", "many")]),
            "configuration error: DB_POOL_SIZE is \"many\": expected a whole number"
        );
        assert_eq!(
            message(&[URL, ("DB_POOL_SIZE", "0")]),
            "configuration error: DB_POOL_SIZE is 0: expected 1 to 50"
        );
        assert_eq!(
            message(&[URL, ("POISON_RECORD_POLICY", "drop")]),
            "configuration error: POISON_RECORD_POLICY is \"drop\": expected \"dead-letter\" or \"report\""
        );
    }

    #[test]
    fn a_bad_url_is_rejected_without_echoing_it() {
        let error = config(&[("DATABASE_URL", "mysql://u:topsecret@host/db")])
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("configuration error: DATABASE_URL is not a valid PostgreSQL URL"),
            "{error}"
        );
        assert!(!error.contains("topsecret"));
        let debug = format!("{:?}", config(&[URL]).unwrap());
        assert!(!debug.contains("s3cret"), "{debug}");
    }
}
