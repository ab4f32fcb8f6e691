//! Configuration from environment variables, validated once at start. Every error names the
//! variable and what is wrong with it, and never echoes a secret.

pub mod credentials;

use std::fmt;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgSslMode};

/// What happens to a record that cannot be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoisonPolicy {
    /// Keep it in `dead_letters` (same transaction as the orders) and go on: the partition is
    /// never blocked.
    DeadLetter,
    /// Report it for redelivery: its partition stops at it until the event source mapping's
    /// retry limit sends the batch to the on-failure destination.
    Report,
}

/// The function's configuration, read from the environment once at start.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where the database credentials come from.
    pub database: DatabaseSource,
    /// TLS to the database.
    pub tls: TlsSettings,
    /// Connections per execution environment (`DB_POOL_SIZE`).
    pub pool_size: u32,
    /// How long an attempt waits for a connection (`DB_CONNECT_TIMEOUT_MS`).
    pub connect_timeout: Duration,
    /// How long a customer location is reused (`CACHE_TTL_SECONDS`).
    pub cache_ttl: Duration,
    /// Customers kept in the cache (`CACHE_MAX_ENTRIES`).
    pub cache_capacity: NonZeroUsize,
    /// What happens to undecodable records (`POISON_RECORD_POLICY`).
    pub poison_policy: PoisonPolicy,
    /// How long before the deadline the write must be done (`DEADLINE_MARGIN_MS`).
    pub deadline_margin: Duration,
    /// The longest one invocation keeps retrying transient database failures; the deadline
    /// (minus the margin) stops it sooner.
    pub retry_limit: Duration,
    /// Connection-level `statement_timeout` and `idle_in_transaction_session_timeout`: a
    /// backstop for the per-transaction limits set from the deadline.
    pub statement_timeout: Duration,
    /// The EMF metrics (`METRICS_NAMESPACE`, `METRICS_DIMENSIONS`).
    pub metrics: MetricsConfig,
    /// Where the enriched orders go (`SINKS`).
    pub sinks: Sinks,
}

/// Where the enriched orders go. At least one of the two.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sinks {
    /// `postgres`: the `enriched_orders` and `dead_letters` tables.
    pub postgres: bool,
    /// `kafka`: the output topic.
    pub kafka: Option<KafkaSink>,
}

/// The output topic and how to reach it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KafkaSink {
    /// `KAFKA_BOOTSTRAP_SERVERS`: host:port pairs, comma-separated.
    pub bootstrap_servers: String,
    /// `OUTPUT_TOPIC`: where the enriched orders go.
    pub topic: String,
    /// `DEAD_LETTER_TOPIC`: where dead letters go when Kafka is the only sink.
    pub dead_letter_topic: Option<String>,
    /// `KAFKA_SECURITY_PROTOCOL`.
    pub protocol: KafkaProtocol,
    /// `KAFKA_SASL_MECHANISM`, when the protocol uses SASL.
    pub sasl: Option<SaslMechanism>,
    /// `KAFKA_SECRET_ARN`: the SCRAM or PLAIN user, as MSK's secrets hold it.
    pub secret_arn: Option<String>,
    /// `KAFKA_SSL_CA_LOCATION`: CA bundle for the brokers' certificates (system roots without it).
    pub ca_location: Option<PathBuf>,
    /// `KAFKA_DELIVERY_TIMEOUT_MS`: how long the producer keeps trying a record (librdkafka's
    /// `message.timeout.ms`); an invocation stops waiting at its deadline in any case.
    pub delivery_timeout: Duration,
}

/// `KAFKA_SECURITY_PROTOCOL`, as librdkafka names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KafkaProtocol {
    /// No TLS, no authentication (local brokers).
    Plaintext,
    /// TLS without SASL (MSK's TLS listener, port 9094).
    Ssl,
    /// SASL without TLS (local brokers only).
    SaslPlaintext,
    /// SASL over TLS (MSK IAM on 9098, SCRAM on 9096).
    SaslSsl,
}

impl KafkaProtocol {
    /// librdkafka's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Plaintext => "plaintext",
            Self::Ssl => "ssl",
            Self::SaslPlaintext => "sasl_plaintext",
            Self::SaslSsl => "sasl_ssl",
        }
    }

    /// Whether the connection is TLS.
    pub fn uses_tls(self) -> bool {
        matches!(self, Self::Ssl | Self::SaslSsl)
    }
}

/// `KAFKA_SASL_MECHANISM`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SaslMechanism {
    /// MSK IAM: OAUTHBEARER with a SigV4 token signed with the function's role.
    AwsMskIam,
    /// SCRAM-SHA-512 (MSK's SCRAM), the user from `KAFKA_SECRET_ARN`.
    ScramSha512,
    /// SCRAM-SHA-256, the user from `KAFKA_SECRET_ARN`.
    ScramSha256,
    /// PLAIN, the user from `KAFKA_SECRET_ARN` (not offered by MSK; other brokers).
    Plain,
}

impl SaslMechanism {
    /// The name this variable takes.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AwsMskIam => "AWS_MSK_IAM",
            Self::ScramSha512 => "SCRAM-SHA-512",
            Self::ScramSha256 => "SCRAM-SHA-256",
            Self::Plain => "PLAIN",
        }
    }
}

/// Where the connection details come from.
#[derive(Clone)]
pub enum DatabaseSource {
    /// `DATABASE_URL`, credentials included.
    Url(Box<PgConnectOptions>),
    /// `DB_SECRET_ARN`: an RDS-style Secrets Manager secret, read at init and again when the
    /// database rejects the password (rotation).
    Secret(SecretRef),
}

impl fmt::Debug for DatabaseSource {
    // PgConnectOptions holds the password: never print it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Url(options) => f
                .debug_struct("Url")
                .field("host", &options.get_host())
                .field("port", &options.get_port())
                .field("database", &options.get_database())
                .finish_non_exhaustive(),
            Self::Secret(reference) => f.debug_tuple("Secret").field(reference).finish(),
        }
    }
}

/// A secret and the connection details that override the secret's (e.g. an RDS Proxy endpoint).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretRef {
    /// The secret's ARN.
    pub arn: String,
    /// Overrides the secret's host (`DB_HOST`).
    pub host: Option<String>,
    /// Overrides the secret's port (`DB_PORT`).
    pub port: Option<u16>,
    /// Overrides the secret's database (`DB_NAME`).
    pub dbname: Option<String>,
}

/// `DB_SSL_MODE`: the subset of libpq's modes that make sense for this function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SslMode {
    /// No TLS.
    Disable,
    /// Encrypted, the server not verified.
    Require,
    /// Encrypted, the certificate chain verified.
    VerifyCa,
    /// Encrypted, the chain and the host name verified.
    VerifyFull,
}

/// TLS to the database: the mode and the roots to verify with.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsSettings {
    /// `None`: what the URL says (sqlx's default, `prefer`, when it says nothing).
    pub mode: Option<SslMode>,
    /// CA bundle to verify the server with; without it, the Mozilla roots built into the binary
    /// (which include Amazon Trust Services, RDS Proxy's chain; not the RDS CA).
    pub root_cert: Option<PathBuf>,
}

impl TlsSettings {
    /// These settings on connection options (unset ones leave the options as they are).
    pub fn apply(&self, mut options: PgConnectOptions) -> PgConnectOptions {
        if let Some(mode) = self.mode {
            options = options.ssl_mode(match mode {
                SslMode::Disable => PgSslMode::Disable,
                SslMode::Require => PgSslMode::Require,
                SslMode::VerifyCa => PgSslMode::VerifyCa,
                SslMode::VerifyFull => PgSslMode::VerifyFull,
            });
        }
        if let Some(root_cert) = &self.root_cert {
            options = options.ssl_root_cert(root_cert);
        }
        options
    }
}

/// CloudWatch Embedded Metric Format settings; no namespace means no metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MetricsConfig {
    /// The CloudWatch namespace; `None` turns metrics off.
    pub namespace: Option<String>,
    /// Dimensions attached to every metric.
    pub dimensions: Vec<(String, String)>,
}

/// A variable with a value the function cannot run with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The environment variable.
    pub variable: &'static str,
    /// What is wrong with its value (never the value of a secret).
    pub problem: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "configuration error: {} {}", self.variable, self.problem)
    }
}

impl std::error::Error for ConfigError {}

/// The variables; the README's configuration table lists them with their defaults.
pub const DATABASE_URL: &str = "DATABASE_URL";
/// Environment variable names, as the README's configuration table lists them.
pub const DB_SECRET_ARN: &str = "DB_SECRET_ARN";
/// See the README's configuration table.
pub const DB_HOST: &str = "DB_HOST";
/// See the README's configuration table.
pub const DB_PORT: &str = "DB_PORT";
/// See the README's configuration table.
pub const DB_NAME: &str = "DB_NAME";
/// See the README's configuration table.
pub const DB_SSL_MODE: &str = "DB_SSL_MODE";
/// See the README's configuration table.
pub const DB_SSL_ROOT_CERT: &str = "DB_SSL_ROOT_CERT";
/// See the README's configuration table.
pub const DB_POOL_SIZE: &str = "DB_POOL_SIZE";
/// See the README's configuration table.
pub const DB_CONNECT_TIMEOUT_MS: &str = "DB_CONNECT_TIMEOUT_MS";
/// See the README's configuration table.
pub const CACHE_TTL_SECONDS: &str = "CACHE_TTL_SECONDS";
/// See the README's configuration table.
pub const CACHE_MAX_ENTRIES: &str = "CACHE_MAX_ENTRIES";
/// See the README's configuration table.
pub const POISON_RECORD_POLICY: &str = "POISON_RECORD_POLICY";
/// See the README's configuration table.
pub const DEADLINE_MARGIN_MS: &str = "DEADLINE_MARGIN_MS";
/// See the README's configuration table.
pub const DB_RETRY_LIMIT_MS: &str = "DB_RETRY_LIMIT_MS";
/// See the README's configuration table.
pub const DB_STATEMENT_TIMEOUT_MS: &str = "DB_STATEMENT_TIMEOUT_MS";
/// See the README's configuration table.
pub const METRICS_NAMESPACE: &str = "METRICS_NAMESPACE";
/// See the README's configuration table.
pub const METRICS_DIMENSIONS: &str = "METRICS_DIMENSIONS";
/// See the README's configuration table.
pub const SINKS: &str = "SINKS";
/// See the README's configuration table.
pub const KAFKA_BOOTSTRAP_SERVERS: &str = "KAFKA_BOOTSTRAP_SERVERS";
/// See the README's configuration table.
pub const OUTPUT_TOPIC: &str = "OUTPUT_TOPIC";
/// See the README's configuration table.
pub const DEAD_LETTER_TOPIC: &str = "DEAD_LETTER_TOPIC";
/// See the README's configuration table.
pub const KAFKA_SECURITY_PROTOCOL: &str = "KAFKA_SECURITY_PROTOCOL";
/// See the README's configuration table.
pub const KAFKA_SASL_MECHANISM: &str = "KAFKA_SASL_MECHANISM";
/// See the README's configuration table.
pub const KAFKA_SECRET_ARN: &str = "KAFKA_SECRET_ARN";
/// See the README's configuration table.
pub const KAFKA_SSL_CA_LOCATION: &str = "KAFKA_SSL_CA_LOCATION";
/// See the README's configuration table.
pub const KAFKA_DELIVERY_TIMEOUT_MS: &str = "KAFKA_DELIVERY_TIMEOUT_MS";
/// Every variable the function reads (the template may set no other).
pub const VARIABLES: &[&str] = &[
    DATABASE_URL,
    DB_SECRET_ARN,
    DB_HOST,
    DB_PORT,
    DB_NAME,
    DB_SSL_MODE,
    DB_SSL_ROOT_CERT,
    DB_POOL_SIZE,
    DB_CONNECT_TIMEOUT_MS,
    CACHE_TTL_SECONDS,
    CACHE_MAX_ENTRIES,
    POISON_RECORD_POLICY,
    DEADLINE_MARGIN_MS,
    DB_RETRY_LIMIT_MS,
    DB_STATEMENT_TIMEOUT_MS,
    METRICS_NAMESPACE,
    METRICS_DIMENSIONS,
    SINKS,
    KAFKA_BOOTSTRAP_SERVERS,
    OUTPUT_TOPIC,
    DEAD_LETTER_TOPIC,
    KAFKA_SECURITY_PROTOCOL,
    KAFKA_SASL_MECHANISM,
    KAFKA_SECRET_ARN,
    KAFKA_SSL_CA_LOCATION,
    KAFKA_DELIVERY_TIMEOUT_MS,
];
/// The namespace when `METRICS_NAMESPACE` is not set.
pub const DEFAULT_METRICS_NAMESPACE: &str = "MskOrderEnricher";

impl Config {
    /// The configuration from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the configuration through `lookup` (the environment in production, a map in tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let database = database_source(&lookup)?;
        let tls = tls_settings(&lookup, &database)?;
        let pool_size = number(&lookup, DB_POOL_SIZE, 2, 1..=50)?;
        let connect_timeout =
            Duration::from_millis(number(&lookup, DB_CONNECT_TIMEOUT_MS, 3000, 100..=60_000)?);
        let cache_ttl = Duration::from_secs(number(&lookup, CACHE_TTL_SECONDS, 60, 0..=86_400)?);
        let cache_capacity =
            NonZeroUsize::new(number(&lookup, CACHE_MAX_ENTRIES, 10_000, 1..=10_000_000)?)
                .ok_or_else(|| problem(CACHE_MAX_ENTRIES, "must be at least 1"))?;
        let poison_policy = match value(&lookup, POISON_RECORD_POLICY).as_deref() {
            None | Some("dead-letter") => PoisonPolicy::DeadLetter,
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
        let retry_limit =
            Duration::from_millis(number(&lookup, DB_RETRY_LIMIT_MS, 840_000, 0..=900_000)?);
        let statement_timeout = Duration::from_millis(number(
            &lookup,
            DB_STATEMENT_TIMEOUT_MS,
            840_000,
            1_000..=900_000,
        )?);
        let metrics = metrics_config(&lookup)?;
        let sinks = sinks_config(&lookup, poison_policy)?;
        Ok(Self {
            database,
            tls,
            pool_size,
            connect_timeout,
            cache_ttl,
            cache_capacity,
            poison_policy,
            deadline_margin,
            retry_limit,
            statement_timeout,
            metrics,
            sinks,
        })
    }
}

/// The variable `name`, trimmed; `None` when unset or blank.
fn value(lookup: &impl Fn(&str) -> Option<String>, name: &str) -> Option<String> {
    lookup(name)
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// The variable `name` as a path to a file that exists.
fn existing_file(
    lookup: &impl Fn(&str) -> Option<String>,
    name: &'static str,
) -> Result<Option<PathBuf>, ConfigError> {
    let path = value(lookup, name).map(PathBuf::from);
    if let Some(path) = &path {
        if let Err(error) = std::fs::metadata(path) {
            return Err(problem(name, &format!("is {}: {error}", path.display())));
        }
    }
    Ok(path)
}

/// `DATABASE_URL`, or `DB_SECRET_ARN` with its overrides: exactly one of them.
fn database_source(
    lookup: &impl Fn(&str) -> Option<String>,
) -> Result<DatabaseSource, ConfigError> {
    let get = |name: &str| value(lookup, name);
    match (get(DATABASE_URL), get(DB_SECRET_ARN)) {
        (Some(_), Some(_)) => Err(problem(
            DATABASE_URL,
            "and DB_SECRET_ARN are both set: set one of them",
        )),
        (None, None) => Err(problem(
            DATABASE_URL,
            "is not set: give a postgres:// connection URL, or DB_SECRET_ARN",
        )),
        (Some(url), None) => Ok(DatabaseSource::Url(Box::new(parse_url(&url)?))),
        (None, Some(arn)) => {
            if !arn.starts_with("arn:") {
                return Err(problem(
                    DB_SECRET_ARN,
                    &format!("is {arn:?}: expected a Secrets Manager ARN"),
                ));
            }
            Ok(DatabaseSource::Secret(SecretRef {
                arn,
                host: get(DB_HOST),
                port: get(DB_PORT)
                    .map(|_| number(lookup, DB_PORT, 5432u16, 1..=65535))
                    .transpose()?,
                dbname: get(DB_NAME),
            }))
        }
    }
}

/// `DB_SSL_MODE` (verified by default with a secret) and `DB_SSL_ROOT_CERT`.
fn tls_settings(
    lookup: &impl Fn(&str) -> Option<String>,
    database: &DatabaseSource,
) -> Result<TlsSettings, ConfigError> {
    let mode = match value(lookup, DB_SSL_MODE).as_deref() {
        None => match database {
            // Credentials from a secret mean AWS: encrypted and verified unless told otherwise.
            DatabaseSource::Secret(_) => Some(SslMode::VerifyFull),
            DatabaseSource::Url(_) => None,
        },
        Some("disable") => Some(SslMode::Disable),
        Some("require") => Some(SslMode::Require),
        Some("verify-ca") => Some(SslMode::VerifyCa),
        Some("verify-full") => Some(SslMode::VerifyFull),
        Some(other) => {
            return Err(problem(
                DB_SSL_MODE,
                &format!("is {other:?}: expected disable, require, verify-ca or verify-full"),
            ))
        }
    };
    let root_cert = existing_file(lookup, DB_SSL_ROOT_CERT)?;
    Ok(TlsSettings { mode, root_cert })
}

/// `SINKS`, and with `kafka` in it the output topic's settings.
fn sinks_config(
    lookup: &impl Fn(&str) -> Option<String>,
    poison_policy: PoisonPolicy,
) -> Result<Sinks, ConfigError> {
    let get = |name: &str| value(lookup, name);
    let (mut postgres, mut kafka) = (false, false);
    for sink in get(SINKS).as_deref().unwrap_or("postgres").split(',') {
        match sink.trim() {
            "postgres" => postgres = true,
            "kafka" => kafka = true,
            other => {
                return Err(problem(
                    SINKS,
                    &format!("has {other:?}: expected postgres, kafka or postgres,kafka"),
                ))
            }
        }
    }
    let kafka = if kafka {
        Some(kafka_sink(lookup, postgres, poison_policy)?)
    } else {
        None
    };
    Ok(Sinks { postgres, kafka })
}

/// The output topic's settings, when `SINKS` includes `kafka`.
fn kafka_sink(
    lookup: &impl Fn(&str) -> Option<String>,
    postgres: bool,
    poison_policy: PoisonPolicy,
) -> Result<KafkaSink, ConfigError> {
    let get = |name: &str| value(lookup, name);
    let required = |name: &'static str| {
        get(name).ok_or_else(|| problem(name, "is not set: SINKS includes kafka"))
    };
    let bootstrap_servers = required(KAFKA_BOOTSTRAP_SERVERS)?;
    let topic = required(OUTPUT_TOPIC)?;
    let dead_letter_topic = get(DEAD_LETTER_TOPIC);
    if !postgres && dead_letter_topic.is_none() && poison_policy == PoisonPolicy::DeadLetter {
        return Err(problem(
            DEAD_LETTER_TOPIC,
            "is not set: with SINKS=kafka the dead letters go to a topic (or set POISON_RECORD_POLICY=report)",
        ));
    }
    let protocol = kafka_protocol(lookup)?;
    let sasl = sasl_mechanism(lookup, protocol)?;
    let secret_arn = get(KAFKA_SECRET_ARN);
    match (sasl, &secret_arn) {
        (
            Some(SaslMechanism::ScramSha512 | SaslMechanism::ScramSha256 | SaslMechanism::Plain),
            None,
        ) => {
            return Err(problem(
                KAFKA_SECRET_ARN,
                "is not set: the SASL mechanism needs a secret with username and password",
            ))
        }
        (_, Some(arn)) if !arn.starts_with("arn:") => {
            return Err(problem(
                KAFKA_SECRET_ARN,
                &format!("is {arn:?}: expected a Secrets Manager ARN"),
            ))
        }
        _ => {}
    }
    let ca_location = existing_file(lookup, KAFKA_SSL_CA_LOCATION)?;
    let delivery_timeout = Duration::from_millis(number(
        lookup,
        KAFKA_DELIVERY_TIMEOUT_MS,
        120_000,
        1_000..=900_000,
    )?);
    Ok(KafkaSink {
        bootstrap_servers,
        topic,
        dead_letter_topic,
        protocol,
        sasl,
        secret_arn,
        ca_location,
        delivery_timeout,
    })
}

/// `KAFKA_SECURITY_PROTOCOL`, `sasl_ssl` by default.
fn kafka_protocol(lookup: &impl Fn(&str) -> Option<String>) -> Result<KafkaProtocol, ConfigError> {
    match value(lookup, KAFKA_SECURITY_PROTOCOL)
        .map(|v| v.to_ascii_lowercase())
        .as_deref()
    {
        None | Some("sasl_ssl") => Ok(KafkaProtocol::SaslSsl),
        Some("ssl") => Ok(KafkaProtocol::Ssl),
        Some("sasl_plaintext") => Ok(KafkaProtocol::SaslPlaintext),
        Some("plaintext") => Ok(KafkaProtocol::Plaintext),
        Some(other) => Err(problem(
            KAFKA_SECURITY_PROTOCOL,
            &format!("is {other:?}: expected sasl_ssl, ssl, sasl_plaintext or plaintext"),
        )),
    }
}

/// `KAFKA_SASL_MECHANISM` (MSK IAM by default) when the protocol has SASL.
fn sasl_mechanism(
    lookup: &impl Fn(&str) -> Option<String>,
    protocol: KafkaProtocol,
) -> Result<Option<SaslMechanism>, ConfigError> {
    if matches!(protocol, KafkaProtocol::Plaintext | KafkaProtocol::Ssl) {
        return Ok(None);
    }
    let mechanism = match value(lookup, KAFKA_SASL_MECHANISM)
        .map(|v| v.to_ascii_uppercase())
        .as_deref()
    {
        None | Some("AWS_MSK_IAM") => SaslMechanism::AwsMskIam,
        Some("SCRAM-SHA-512") => SaslMechanism::ScramSha512,
        Some("SCRAM-SHA-256") => SaslMechanism::ScramSha256,
        Some("PLAIN") => SaslMechanism::Plain,
        Some(other) => {
            return Err(problem(
                KAFKA_SASL_MECHANISM,
                &format!(
                    "is {other:?}: expected AWS_MSK_IAM, SCRAM-SHA-512, SCRAM-SHA-256 or PLAIN"
                ),
            ))
        }
    };
    Ok(Some(mechanism))
}

fn parse_url(url: &str) -> Result<PgConnectOptions, ConfigError> {
    let scheme_ok = url.starts_with("postgres://") || url.starts_with("postgresql://");
    PgConnectOptions::from_str(url)
        .ok()
        .filter(|_| scheme_ok)
        .ok_or_else(|| {
            problem(
            DATABASE_URL,
            "is not a valid PostgreSQL URL (expected postgres://user:password@host:port/dbname)",
        )
        })
}

fn metrics_config(lookup: &impl Fn(&str) -> Option<String>) -> Result<MetricsConfig, ConfigError> {
    let namespace = match lookup(METRICS_NAMESPACE).map(|v| v.trim().to_owned()) {
        None => Some(DEFAULT_METRICS_NAMESPACE.to_owned()),
        Some(off) if off.is_empty() || off == "off" => None,
        Some(namespace) => Some(namespace),
    };
    let dimensions = match lookup(METRICS_DIMENSIONS).map(|v| v.trim().to_owned()) {
        Some(list) if !list.is_empty() => list
            .split(',')
            .map(|pair| match pair.split_once('=') {
                Some((name, value)) if !name.trim().is_empty() && !value.trim().is_empty() => {
                    Ok((name.trim().to_owned(), value.trim().to_owned()))
                }
                _ => Err(problem(
                    METRICS_DIMENSIONS,
                    &format!("has {pair:?}: expected Name=Value pairs separated by commas"),
                )),
            })
            .collect::<Result<Vec<_>, _>>()?,
        _ => lookup("AWS_LAMBDA_FUNCTION_NAME")
            .map(|name| vec![("FunctionName".to_owned(), name)])
            .unwrap_or_default(),
    };
    if dimensions.len() > 30 {
        return Err(problem(
            METRICS_DIMENSIONS,
            "has more than 30 dimensions (CloudWatch's limit)",
        ));
    }
    Ok(MetricsConfig {
        namespace,
        dimensions,
    })
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
    const ARN: &str = "arn:aws:secretsmanager:us-east-1:123456789012:secret:orders-db-AbCdEf";

    #[test]
    fn defaults() {
        let c = config(&[URL]).unwrap();
        assert_eq!(c.pool_size, 2);
        assert_eq!(c.connect_timeout, Duration::from_secs(3));
        assert_eq!(c.cache_ttl, Duration::from_secs(60));
        assert_eq!(c.cache_capacity.get(), 10_000);
        assert_eq!(c.poison_policy, PoisonPolicy::DeadLetter);
        assert_eq!(c.deadline_margin, Duration::from_secs(1));
        assert_eq!(c.tls, TlsSettings::default());
        let DatabaseSource::Url(options) = &c.database else {
            panic!("expected a URL")
        };
        assert_eq!(options.get_host(), "db.internal");
        assert_eq!(options.get_database(), Some("orders"));
        assert_eq!(
            c.metrics,
            MetricsConfig {
                namespace: Some("MskOrderEnricher".into()),
                dimensions: vec![]
            }
        );
    }

    #[test]
    fn overrides() {
        let c = config(&[
            URL,
            ("DB_POOL_SIZE", "4"),
            ("CACHE_TTL_SECONDS", "0"),
            ("POISON_RECORD_POLICY", "report"),
            ("DEADLINE_MARGIN_MS", "2500"),
            ("DB_SSL_MODE", "require"),
            ("METRICS_NAMESPACE", "Orders/Prod"),
            ("METRICS_DIMENSIONS", "Service=orders, Stage=prod"),
            ("AWS_LAMBDA_FUNCTION_NAME", "enricher-prod"),
        ])
        .unwrap();
        assert_eq!(c.pool_size, 4);
        assert_eq!(c.cache_ttl, Duration::ZERO);
        assert_eq!(c.poison_policy, PoisonPolicy::Report);
        assert_eq!(c.deadline_margin, Duration::from_millis(2500));
        assert_eq!(c.tls.mode, Some(SslMode::Require));
        assert_eq!(
            c.metrics,
            MetricsConfig {
                namespace: Some("Orders/Prod".into()),
                dimensions: vec![
                    ("Service".into(), "orders".into()),
                    ("Stage".into(), "prod".into())
                ]
            }
        );
    }

    #[test]
    fn secret_source_verifies_tls_by_default_and_takes_overrides() {
        let c = config(&[
            ("DB_SECRET_ARN", ARN),
            ("DB_HOST", "proxy.proxy-abc.us-east-1.rds.amazonaws.com"),
            ("DB_PORT", "6432"),
            ("AWS_LAMBDA_FUNCTION_NAME", "enricher-dev"),
        ])
        .unwrap();
        let DatabaseSource::Secret(reference) = &c.database else {
            panic!("expected a secret")
        };
        assert_eq!(
            reference,
            &SecretRef {
                arn: ARN.into(),
                host: Some("proxy.proxy-abc.us-east-1.rds.amazonaws.com".into()),
                port: Some(6432),
                dbname: None
            }
        );
        assert_eq!(c.tls.mode, Some(SslMode::VerifyFull));
        assert_eq!(
            c.metrics.dimensions,
            vec![("FunctionName".into(), "enricher-dev".into())]
        );
    }

    #[test]
    fn errors_name_the_variable_and_the_problem() {
        let message = |vars: &[(&str, &str)]| config(vars).unwrap_err().to_string();
        assert_eq!(
            message(&[]),
            "configuration error: DATABASE_URL is not set: give a postgres:// connection URL, or DB_SECRET_ARN"
        );
        assert_eq!(
            message(&[URL, ("DB_SECRET_ARN", ARN)]),
            "configuration error: DATABASE_URL and DB_SECRET_ARN are both set: set one of them"
        );
        assert_eq!(
            message(&[("DB_SECRET_ARN", "orders-db")]),
            "configuration error: DB_SECRET_ARN is \"orders-db\": expected a Secrets Manager ARN"
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
        assert_eq!(
            message(&[URL, ("DB_SSL_MODE", "on")]),
            "configuration error: DB_SSL_MODE is \"on\": expected disable, require, verify-ca or verify-full"
        );
        assert_eq!(
            message(&[URL, ("DB_SSL_ROOT_CERT", "/nonexistent/ca.pem")]),
            "configuration error: DB_SSL_ROOT_CERT is /nonexistent/ca.pem: No such file or directory (os error 2)"
        );
        assert_eq!(
            message(&[URL, ("METRICS_DIMENSIONS", "Stage")]),
            "configuration error: METRICS_DIMENSIONS has \"Stage\": expected Name=Value pairs separated by commas"
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

    #[test]
    fn the_database_is_the_only_sink_by_default() {
        let sinks = config(&[URL]).unwrap().sinks;
        assert_eq!(
            sinks,
            Sinks {
                postgres: true,
                kafka: None
            }
        );
    }

    const KAFKA: [(&str, &str); 3] = [
        ("SINKS", "postgres,kafka"),
        ("KAFKA_BOOTSTRAP_SERVERS", "b-1.msk:9098,b-2.msk:9098"),
        ("OUTPUT_TOPIC", "enriched-orders"),
    ];

    #[test]
    fn both_sinks_default_to_msk_iam_over_tls() {
        let sinks = config(&[URL, KAFKA[0], KAFKA[1], KAFKA[2]]).unwrap().sinks;
        assert!(sinks.postgres);
        assert_eq!(
            sinks.kafka,
            Some(KafkaSink {
                bootstrap_servers: "b-1.msk:9098,b-2.msk:9098".into(),
                topic: "enriched-orders".into(),
                dead_letter_topic: None,
                protocol: KafkaProtocol::SaslSsl,
                sasl: Some(SaslMechanism::AwsMskIam),
                secret_arn: None,
                ca_location: None,
                delivery_timeout: Duration::from_secs(120),
            })
        );
    }

    #[test]
    fn plaintext_and_scram_are_chosen_by_name() {
        let plain = config(&[
            URL,
            KAFKA[0],
            KAFKA[1],
            KAFKA[2],
            ("KAFKA_SECURITY_PROTOCOL", "PLAINTEXT"),
        ])
        .unwrap();
        let kafka = plain.sinks.kafka.unwrap();
        assert_eq!(
            (kafka.protocol, kafka.sasl),
            (KafkaProtocol::Plaintext, None)
        );
        let scram = config(&[
            URL,
            KAFKA[0],
            KAFKA[1],
            KAFKA[2],
            ("KAFKA_SASL_MECHANISM", "scram-sha-512"),
            (
                "KAFKA_SECRET_ARN",
                "arn:aws:secretsmanager:us-east-1:1:secret:AmazonMSK_x",
            ),
        ])
        .unwrap();
        assert_eq!(
            scram.sinks.kafka.unwrap().sasl,
            Some(SaslMechanism::ScramSha512)
        );
    }

    #[test]
    fn kafka_settings_that_cannot_work_are_named() {
        let message = |vars: &[(&str, &str)]| config(vars).unwrap_err().to_string();
        assert_eq!(
            message(&[URL, ("SINKS", "postgres,s3")]),
            "configuration error: SINKS has \"s3\": expected postgres, kafka or postgres,kafka"
        );
        assert_eq!(
            message(&[URL, ("SINKS", "kafka"), KAFKA[1]]),
            "configuration error: OUTPUT_TOPIC is not set: SINKS includes kafka"
        );
        assert_eq!(
            message(&[URL, ("SINKS", "kafka"), KAFKA[1], KAFKA[2]]),
            "configuration error: DEAD_LETTER_TOPIC is not set: with SINKS=kafka the dead letters go to a topic (or set POISON_RECORD_POLICY=report)"
        );
        assert_eq!(
            message(&[URL, KAFKA[0], KAFKA[1], KAFKA[2], ("KAFKA_SASL_MECHANISM", "SCRAM-SHA-256")]),
            "configuration error: KAFKA_SECRET_ARN is not set: the SASL mechanism needs a secret with username and password"
        );
        assert_eq!(
            message(&[URL, KAFKA[0], KAFKA[1], KAFKA[2], ("KAFKA_SECURITY_PROTOCOL", "tls")]),
            "configuration error: KAFKA_SECURITY_PROTOCOL is \"tls\": expected sasl_ssl, ssl, sasl_plaintext or plaintext"
        );
        let kafka_only = config(&[
            URL,
            ("SINKS", "kafka"),
            KAFKA[1],
            KAFKA[2],
            ("DEAD_LETTER_TOPIC", "orders-dlt"),
        ])
        .unwrap()
        .sinks;
        assert!(!kafka_only.postgres);
        assert_eq!(
            kafka_only.kafka.unwrap().dead_letter_topic.as_deref(),
            Some("orders-dlt")
        );
    }
}
