//! Database credentials: from `DATABASE_URL`, or from an RDS-style Secrets Manager secret read
//! at init and read again when the database rejects the password (after a rotation).
//! Secret values never reach a log line, an error message or a `Debug` output.

use std::fmt;

use aws_config::timeout::TimeoutConfig;
use aws_config::BehaviorVersion;
use aws_sdk_secretsmanager::error::DisplayErrorContext;
use sqlx::postgres::PgConnectOptions;

use crate::config::{Config, DatabaseSource, SecretRef, TlsSettings};

/// Secrets Manager must answer within this, so that init cannot hang on it (init has 10 s).
const SECRET_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(4);

/// Where the database credentials come from, and how to read them again after a rotation.
pub struct Credentials {
    source: Source,
    tls: TlsSettings,
}

enum Source {
    /// `DATABASE_URL`: fixed.
    Url(Box<PgConnectOptions>),
    /// A Secrets Manager secret: re-read when the database refuses the password.
    Secret {
        reference: SecretRef,
        client: aws_sdk_secretsmanager::Client,
    },
}

/// The secret could not be read or used (the message names the ARN, never a value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialError(String);

impl fmt::Display for CredentialError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CredentialError {}

impl Credentials {
    /// Resolves the connection options, reading the secret when one is configured.
    pub async fn resolve(config: &Config) -> Result<(Self, PgConnectOptions), CredentialError> {
        let source = match &config.database {
            DatabaseSource::Url(options) => Source::Url(options.clone()),
            DatabaseSource::Secret(reference) => Source::Secret {
                reference: reference.clone(),
                client: secrets_client().await,
            },
        };
        let credentials = Self {
            source,
            tls: config.tls.clone(),
        };
        let options = credentials.current().await?;
        Ok((credentials, options))
    }

    /// Whether `refresh` can produce different credentials.
    pub fn rotates(&self) -> bool {
        matches!(self.source, Source::Secret { .. })
    }

    /// Reads the secret again (after the database rejected the password).
    pub async fn refresh(&self) -> Result<PgConnectOptions, CredentialError> {
        self.current().await
    }

    /// Where the credentials come from, for error messages.
    pub fn describe(&self) -> String {
        match &self.source {
            Source::Url(_) => "DATABASE_URL".to_owned(),
            Source::Secret { reference, .. } => format!("secret {}", reference.arn),
        }
    }

    async fn current(&self) -> Result<PgConnectOptions, CredentialError> {
        let options = match &self.source {
            Source::Url(options) => (**options).clone(),
            Source::Secret { reference, client } => {
                let fail = |detail: String| {
                    CredentialError(format!("reading secret {}: {detail}", reference.arn))
                };
                let text = secret_string(client, &reference.arn).await.map_err(fail)?;
                RdsSecret::parse(&text)
                    .and_then(|secret| secret.connect_options(reference))
                    .map_err(fail)?
            }
        };
        Ok(self.tls.apply(options))
    }
}

async fn secrets_client() -> aws_sdk_secretsmanager::Client {
    let sdk = aws_config::defaults(BehaviorVersion::latest())
        .timeout_config(
            TimeoutConfig::builder()
                .operation_timeout(SECRET_READ_TIMEOUT)
                .build(),
        )
        .load()
        .await;
    aws_sdk_secretsmanager::Client::new(&sdk)
}

/// The string value of the secret `arn`; the error says why not, never what it holds.
async fn secret_string(
    client: &aws_sdk_secretsmanager::Client,
    arn: &str,
) -> Result<String, String> {
    let output = client
        .get_secret_value()
        .secret_id(arn)
        .send()
        .await
        .map_err(|error| DisplayErrorContext(&error).to_string())?;
    output
        .secret_string()
        .map(str::to_owned)
        .ok_or_else(|| "the secret has no string value".to_owned())
}

/// A Kafka SASL user (SCRAM or PLAIN), as MSK's SCRAM secrets hold it: `username`, `password`.
#[derive(Clone, PartialEq, Eq)]
pub struct KafkaUser {
    /// The user name.
    pub username: String,
    /// The password.
    pub password: String,
}

impl fmt::Debug for KafkaUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaUser")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Reads the Kafka user from the secret `arn` (`KAFKA_SECRET_ARN`), once at init.
pub async fn read_kafka_user(arn: &str) -> Result<KafkaUser, CredentialError> {
    let fail =
        |detail: String| CredentialError(format!("reading KAFKA_SECRET_ARN {arn}: {detail}"));
    let text = secret_string(&secrets_client().await, arn)
        .await
        .map_err(fail)?;
    let secret = RdsSecret::parse(&text).map_err(fail)?;
    Ok(KafkaUser {
        username: secret.username,
        password: secret.password,
    })
}

/// The JSON of an RDS database secret: `username`, `password`, `host`, `port`, `dbname`.
pub struct RdsSecret {
    username: String,
    password: String,
    host: Option<String>,
    port: Option<u16>,
    dbname: Option<String>,
}

impl fmt::Debug for RdsSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RdsSecret")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("dbname", &self.dbname)
            .finish()
    }
}

impl RdsSecret {
    /// Parses the secret string. Errors say what is wrong, never what the values are.
    pub fn parse(text: &str) -> Result<Self, String> {
        let value: serde_json::Value = serde_json::from_str(text).map_err(|error| {
            format!(
                "the secret is not JSON (line {}, column {})",
                error.line(),
                error.column()
            )
        })?;
        let object = value.as_object().ok_or("the secret is not a JSON object")?;
        let text_field = |name: &str| -> Result<Option<String>, String> {
            match object.get(name) {
                None | Some(serde_json::Value::Null) => Ok(None),
                Some(serde_json::Value::String(text)) => Ok(Some(text.clone())),
                Some(_) => Err(format!("the secret's `{name}` is not a string")),
            }
        };
        let port = match object.get("port") {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::Number(n)) => {
                Some(n.as_u64().and_then(|p| u16::try_from(p).ok()))
            }
            Some(serde_json::Value::String(s)) => Some(s.trim().parse::<u16>().ok()),
            Some(_) => Some(None),
        };
        let port = match port {
            Some(None) => return Err("the secret's `port` is not a port number".to_owned()),
            Some(Some(port)) => Some(port),
            None => None,
        };
        Ok(Self {
            username: text_field("username")?.ok_or("the secret has no `username`")?,
            password: text_field("password")?.ok_or("the secret has no `password`")?,
            host: text_field("host")?,
            port,
            dbname: text_field("dbname")?,
        })
    }

    /// Connection options, with the reference's overrides taking precedence.
    pub fn connect_options(&self, reference: &SecretRef) -> Result<PgConnectOptions, String> {
        let host = reference
            .host
            .as_deref()
            .or(self.host.as_deref())
            .ok_or("the secret has no `host` and DB_HOST is not set")?;
        let options = PgConnectOptions::new_without_pgpass()
            .host(host)
            .port(reference.port.or(self.port).unwrap_or(5432))
            .username(&self.username)
            .password(&self.password)
            .database(
                reference
                    .dbname
                    .as_deref()
                    .or(self.dbname.as_deref())
                    .unwrap_or("postgres"),
            );
        Ok(options)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference() -> SecretRef {
        SecretRef {
            arn: "arn:aws:secretsmanager:us-east-1:1:secret:db".into(),
            host: None,
            port: None,
            dbname: None,
        }
    }

    #[test]
    fn rds_secret_with_port_as_number_or_string() {
        for port in ["5433", "\"5433\""] {
            let secret = RdsSecret::parse(&format!(
                r#"{{"engine":"postgres","username":"app","password":"pw-123","host":"db.internal","port":{port},"dbname":"orders"}}"#
            ))
            .unwrap();
            let options = secret.connect_options(&reference()).unwrap();
            assert_eq!(options.get_host(), "db.internal");
            assert_eq!(options.get_port(), 5433);
            assert_eq!(options.get_username(), "app");
            assert_eq!(options.get_database(), Some("orders"));
        }
    }

    #[test]
    fn overrides_win_over_the_secret() {
        let secret =
            RdsSecret::parse(r#"{"username":"app","password":"pw","host":"db.internal"}"#).unwrap();
        let reference = SecretRef {
            host: Some("proxy.internal".into()),
            port: Some(6432),
            dbname: Some("orders".into()),
            ..reference()
        };
        let options = secret.connect_options(&reference).unwrap();
        assert_eq!(
            (options.get_host(), options.get_port()),
            ("proxy.internal", 6432)
        );
        assert_eq!(options.get_database(), Some("orders"));
    }

    #[test]
    fn malformed_secrets_are_explained_without_their_values() {
        let error = |text: &str| RdsSecret::parse(text).unwrap_err();
        assert_eq!(
            error("hunter2"),
            "the secret is not JSON (line 1, column 1)"
        );
        assert_eq!(error(r#"["hunter2"]"#), "the secret is not a JSON object");
        assert_eq!(
            error(r#"{"username":"app"}"#),
            "the secret has no `password`"
        );
        assert_eq!(
            error(r#"{"username":"app","password":12345}"#),
            "the secret's `password` is not a string"
        );
        assert_eq!(
            error(r#"{"username":"app","password":"x","port":"http"}"#),
            "the secret's `port` is not a port number"
        );
        let secret = RdsSecret::parse(r#"{"username":"app","password":"hunter2"}"#).unwrap();
        assert_eq!(
            secret.connect_options(&reference()).unwrap_err(),
            "the secret has no `host` and DB_HOST is not set"
        );
        assert!(!format!("{secret:?}").contains("hunter2"));
    }
}
