//! The output topic over TLS and SASL, with the real function binary: TLS verified against the
//! test's own CA, a SCRAM-SHA-512 login over TLS with the credentials from a Secrets Manager
//! secret, and the clear, prompt report when the brokers refuse the connection (a certificate
//! from another CA, a SASL login the broker refuses).
//!
//! tansu 0.6 takes `--cert` and `--key` but serves plain TCP, so TLS is terminated by a front
//! in this file (rustls, with an rcgen certificate). Its `--authentication` offers SCRAM-SHA-256
//! and SCRAM-SHA-512 (not PLAIN: its SASL library is built without it), checked against the
//! users its storage keeps: in memory it keeps none, so the successful login runs on a sqlite
//! file, the user created while the broker still runs without authentication.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use esm_local::runtime_api::{Answer, RuntimeApi};
use esm_local::source::kafka::{self, Connection, KafkaSource, StartingPosition};
use msk_order_enricher::report::response::BatchResponse;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::{self, ServerConfig};

use crate::broker::Dedicated;
use crate::support::*;

const FUNCTION: &str = env!("CARGO_BIN_EXE_msk-order-enricher");

/// A CA and, signed by it, a certificate for 127.0.0.1 (where the brokers are advertised).
struct Pki {
    ca_pem: String,
    certificate: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
}

fn authority(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

fn pki() -> Pki {
    let ca = authority("broker test CA");
    let params = CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
    let key = KeyPair::generate().unwrap();
    let certificate = params.signed_by(&key, &ca).unwrap();
    Pki {
        ca_pem: ca.pem(),
        certificate: certificate.der().clone(),
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    }
}

/// Terminates TLS on `port` with `pki`'s certificate and forwards the bytes to `upstream`.
async fn tls_front(port: u16, upstream: u16, pki: &Pki) -> tokio::task::JoinHandle<()> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![pki.certificate.clone()], pki.key.clone_key())
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    tokio::spawn(async move {
        let mut connections = tokio::task::JoinSet::new();
        loop {
            let Ok((inbound, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            connections.spawn(async move {
                let Ok(mut inbound) = acceptor.accept(inbound).await else {
                    return;
                };
                if let Ok(mut outbound) =
                    tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await
                {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    })
}

async fn kafka_secret(username: &str, password: &str) -> String {
    crate::moto::client()
        .await
        .create_secret()
        .name(format!(
            "kafka-user-{username}-{}",
            esm_local::clock::now_ms()
        ))
        .secret_string(serde_json::json!({"username": username, "password": password}).to_string())
        .send()
        .await
        .unwrap()
        .arn()
        .unwrap()
        .to_owned()
}

/// The function binary with the Kafka sink and `vars`, its output collected.
fn start_function(api: &RuntimeApi, database_url: &str, vars: &[(&str, &str)]) -> Running {
    let mut command = api.function_command(Path::new(FUNCTION));
    command
        .env("DATABASE_URL", database_url)
        .env("SINKS", "postgres,kafka")
        .env("OUTPUT_TOPIC", "enriched")
        .env("RUST_LOG", "info");
    for (name, value) in crate::moto::function_env() {
        command.env(name, value);
    }
    for (name, value) in vars {
        command.env(name, value);
    }
    Running::spawn(&mut command)
}

async fn stop(running: Running) -> String {
    running.stop().await
}

async fn invoke(api: &RuntimeApi, deadline: Duration) -> BatchResponse {
    let body = std::fs::read(fixture_path("events/sample-orders.json")).unwrap();
    match api.invoke(body, deadline).await.expect("an answer") {
        Answer::Response(body) => serde_json::from_slice(&body).expect("a batch response"),
        Answer::Error(body) => panic!("function error: {}", String::from_utf8_lossy(&body)),
    }
}

/// The records of the topic `enriched`, read from the start until `at_least` arrived or 30 s
/// passed.
async fn read_enriched(
    connection: &Connection,
    at_least: usize,
) -> Vec<esm_local::batch::SourceRecord> {
    let mut reader = KafkaSource::connect(
        connection,
        &["enriched".to_owned()],
        "checker",
        StartingPosition::TrimHorizon,
    )
    .await
    .unwrap();
    let mut records = Vec::new();
    let until = Instant::now() + Duration::from_secs(30);
    while records.len() < at_least && Instant::now() < until {
        records.extend(reader.poll(Duration::from_millis(500), 100).await.unwrap());
    }
    records
}

fn tls(servers: &str, ca: &Path) -> Connection {
    Connection {
        bootstrap_servers: servers.to_owned(),
        properties: vec![
            ("security.protocol".to_owned(), "ssl".to_owned()),
            (
                "ssl.ca.location".to_owned(),
                ca.to_string_lossy().into_owned(),
            ),
        ],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_output_topic_over_tls_verified_against_the_configured_ca() {
    let db = fresh_db().await;
    let pki = pki();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let front = free_port();
    let tansu = Dedicated::start(Some(front), &[]);
    let _tls = tls_front(front, tansu.port, &pki).await;
    let servers = format!("127.0.0.1:{front}");
    let connection = tls(&servers, &ca);
    kafka::ensure_topic(&connection, "enriched", 1)
        .await
        .unwrap();

    let api = RuntimeApi::start().await.unwrap();
    let function = start_function(
        &api,
        &db.url,
        &[
            ("KAFKA_BOOTSTRAP_SERVERS", &servers),
            ("KAFKA_SECURITY_PROTOCOL", "ssl"),
            ("KAFKA_SSL_CA_LOCATION", &ca.to_string_lossy()),
        ],
    );
    assert_eq!(
        invoke(&api, Duration::from_secs(30)).await,
        BatchResponse::default()
    );
    let log = stop(function).await;

    let records = read_enriched(&connection, 10).await;
    assert_eq!(records.len(), 10, "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_output_topic_over_tls_with_a_scram_login_from_a_secret() {
    let db = fresh_db().await;
    let pki = pki();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let storage = dir.path().join("tansu.db");
    let front = free_port();
    {
        // Users can only be created while nobody needs to log in.
        let open = Dedicated::start_on_file(&storage, None, &[]);
        open.create_scram_user("enricher", "s3cret-pass")
            .unwrap_or_else(|why| panic!("{why}"));
        let connection = Connection {
            bootstrap_servers: open.bootstrap_servers(),
            properties: Vec::new(),
        };
        kafka::ensure_topic(&connection, "enriched", 1)
            .await
            .unwrap();
    }
    let tansu = Dedicated::start_on_file(&storage, Some(front), &["--authentication"]);
    let _tls = tls_front(front, tansu.port, &pki).await;
    let servers = format!("127.0.0.1:{front}");
    let arn = kafka_secret("enricher", "s3cret-pass").await;

    let api = RuntimeApi::start().await.unwrap();
    let function = start_function(
        &api,
        &db.url,
        &[
            ("KAFKA_BOOTSTRAP_SERVERS", &servers),
            ("KAFKA_SECURITY_PROTOCOL", "sasl_ssl"),
            ("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512"),
            ("KAFKA_SECRET_ARN", &arn),
            ("KAFKA_SSL_CA_LOCATION", &ca.to_string_lossy()),
        ],
    );
    assert_eq!(
        invoke(&api, Duration::from_secs(30)).await,
        BatchResponse::default()
    );
    let log = stop(function).await;
    assert!(
        !log.contains("s3cret-pass"),
        "the password stays out of the log"
    );

    let mut reader_connection = tls(&servers, &ca);
    reader_connection.properties.extend(
        [
            ("security.protocol", "sasl_ssl"),
            ("sasl.mechanism", "SCRAM-SHA-512"),
            ("sasl.username", "enricher"),
            ("sasl.password", "s3cret-pass"),
        ]
        .map(|(name, value)| (name.to_owned(), value.to_owned())),
    );
    let records = read_enriched(&reader_connection, 10).await;
    let mut keys: Vec<String> = records
        .iter()
        .map(|record| {
            String::from_utf8_lossy(record.key.as_deref().unwrap_or_default()).into_owned()
        })
        .collect();
    keys.sort();
    let expected: Vec<String> = (1..=10).map(|n| format!("SO-{n:03}")).collect();
    assert_eq!(
        keys, expected,
        "every good order of the sample, once: {log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_certificate_from_another_ca_is_refused_promptly_and_the_records_reported() {
    let db = fresh_db().await;
    let pki = pki();
    let dir = tempfile::tempdir().unwrap();
    let other_ca = dir.path().join("other-ca.pem");
    std::fs::write(&other_ca, authority("some other CA").pem()).unwrap();
    let front = free_port();
    let tansu = Dedicated::start(Some(front), &[]);
    let _tls = tls_front(front, tansu.port, &pki).await;
    let servers = format!("127.0.0.1:{front}");

    let api = RuntimeApi::start().await.unwrap();
    let function = start_function(
        &api,
        &db.url,
        &[
            ("KAFKA_BOOTSTRAP_SERVERS", &servers),
            ("KAFKA_SECURITY_PROTOCOL", "ssl"),
            ("KAFKA_SSL_CA_LOCATION", &other_ca.to_string_lossy()),
        ],
    );
    let started = Instant::now();
    let response = invoke(&api, Duration::from_secs(60)).await;
    let took = started.elapsed();
    let log = stop(function).await;
    assert_eq!(reported(&response), sample_orders_reported_whole());
    assert!(
        took < Duration::from_secs(20),
        "answered after {took:?}, not at once: {log}"
    );
    assert!(
        log.contains("the brokers refused the connection")
            && log.contains("certificate verify failed")
            && log.contains("KAFKA_SSL_CA_LOCATION"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_sasl_login_is_named_and_the_records_reported() {
    let db = fresh_db().await;
    let tansu = Dedicated::start(None, &["--authentication"]);
    let servers = format!("127.0.0.1:{}", tansu.port);
    let arn = kafka_secret("nobody", "wrong").await;
    let api = RuntimeApi::start().await.unwrap();
    let function = start_function(
        &api,
        &db.url,
        &[
            ("KAFKA_BOOTSTRAP_SERVERS", &servers),
            ("KAFKA_SECURITY_PROTOCOL", "sasl_plaintext"),
            ("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512"),
            ("KAFKA_SECRET_ARN", &arn),
        ],
    );
    let started = Instant::now();
    let response = invoke(&api, Duration::from_secs(60)).await;
    let took = started.elapsed();
    let log = stop(function).await;
    assert_eq!(reported(&response).len(), 3, "{log}");
    assert!(
        took < Duration::from_secs(20),
        "answered after {took:?}: {log}"
    );
    assert!(
        log.contains("the brokers refused the connection") && log.contains("KAFKA_SASL_MECHANISM"),
        "{log}"
    );
    assert!(
        !log.contains("\"wrong\""),
        "the password stays out of the log"
    );
}
