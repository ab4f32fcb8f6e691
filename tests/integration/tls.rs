//! TLS to PostgreSQL: verify-full succeeds with the right CA and host name, and fails with a
//! clear error otherwise.

use msk_order_enricher::postgres::WriteFailure;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair,
};

use crate::pg::{PgOptions, PgServer};
use crate::support::*;

struct Pki {
    ca_pem: String,
    server_chain_pem: String,
    server_key_pem: String,
}

fn certificate_authority(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

/// A CA and a server certificate for `db.internal` and 127.0.0.1 (not `localhost`).
fn pki() -> Pki {
    let ca = certificate_authority("enricher test CA");
    let mut params =
        CertificateParams::new(vec!["db.internal".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "db.internal");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate().unwrap();
    let certificate = params.signed_by(&key, &ca).unwrap();
    Pki {
        ca_pem: ca.pem(),
        server_chain_pem: certificate.pem(),
        server_key_pem: key.serialize_pem(),
    }
}

async fn outcome(url: &str, vars: &[(&str, &str)]) -> Option<WriteFailure> {
    let app = app(url, vars).await;
    let (_, summary) = process(&app, event("sample-orders.json")).await;
    summary.failure
}

#[tokio::test]
async fn verify_full_needs_the_right_ca_and_host_name() {
    let pki = pki();
    let server = PgServer::start_with(PgOptions {
        tls: Some((pki.server_chain_pem.clone(), pki.server_key_pem.clone())),
        ..PgOptions::default()
    });
    let files = tempfile::tempdir().unwrap();
    let right_ca = files.path().join("ca.pem");
    std::fs::write(&right_ca, &pki.ca_pem).unwrap();
    let wrong_ca = files.path().join("other-ca.pem");
    std::fs::write(&wrong_ca, certificate_authority("some other CA").pem()).unwrap();
    let (right_ca, wrong_ca) = (
        right_ca.display().to_string(),
        wrong_ca.display().to_string(),
    );

    let db = fresh_db_on(&server.url("postgres")).await;
    let by_ip = db.url.clone();
    let by_localhost = db.url.replace("127.0.0.1", "localhost");

    // The right CA and a name in the certificate: encrypted, verified, written.
    let verified = app(
        &by_ip,
        &[
            ("DB_SSL_MODE", "verify-full"),
            ("DB_SSL_ROOT_CERT", &right_ca),
        ],
    )
    .await;
    let (_, summary) = process(&verified, event("sample-orders.json")).await;
    assert_eq!(summary.failure, None);
    assert_eq!(count(&db.pool, "enriched_orders").await, 10);
    let ssl: bool = sqlx::query_scalar(
        "SELECT bool_and(ssl) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) WHERE application_name = 'msk-order-enricher'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert!(ssl, "the function's connection is encrypted");
    drop(verified);

    for (url, ca, expected) in [
        (&by_ip, &wrong_ca, "UnknownIssuer"),
        (
            &by_localhost,
            &right_ca,
            "certificate not valid for name \"localhost\"",
        ),
    ] {
        let failure = outcome(
            url,
            &[
                ("DB_SSL_MODE", "verify-full"),
                ("DB_SSL_ROOT_CERT", ca),
                ("DB_CONNECT_TIMEOUT_MS", "3000"),
            ],
        )
        .await;
        let Some(WriteFailure::Database { message, .. }) = failure else {
            panic!("expected a failure, got {failure:?}")
        };
        assert!(
            message.starts_with("TLS with the database failed"),
            "{message}"
        );
        assert!(message.contains(expected), "{message}");
        assert!(message.contains("DB_SSL_ROOT_CERT"), "{message}");
    }

    // `require` encrypts without verifying.
    assert_eq!(
        outcome(&by_localhost, &[("DB_SSL_MODE", "require")]).await,
        None
    );
}
