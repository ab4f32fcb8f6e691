//! Credentials from Secrets Manager (moto), rotation under a running function, and secrets
//! never showing in its output.

use std::path::Path;
use std::time::Duration;

use esm_local::runtime_api::RuntimeApi;
use msk_order_enricher::report::response::BatchResponse;
use sqlx::PgPool;

use crate::pg::{PgOptions, PgServer};
use crate::support::*;

const FUNCTION: &str = env!("CARGO_BIN_EXE_msk-order-enricher");
const FIRST_PASSWORD: &str = "first-Pa55word-7d1e";
const SECOND_PASSWORD: &str = "second-Pa55word-93ac";
const UNKNOWN_PASSWORD: &str = "third-Pa55word-b0f2";

fn secret_json(password: &str, port: u16, dbname: &str) -> String {
    serde_json::json!({
        "engine": "postgres", "username": "app", "password": password,
        "host": "127.0.0.1", "port": port, "dbname": dbname,
    })
    .to_string()
}

async fn create_secret(name: &str, value: &str) -> String {
    let client = crate::moto::client().await;
    let output = client
        .create_secret()
        .name(name)
        .secret_string(value)
        .send()
        .await
        .unwrap();
    output.arn().unwrap().to_owned()
}

fn start_function(api: &RuntimeApi, arn: &str) -> Running {
    let mut command = api.function_command(Path::new(FUNCTION));
    command
        .env_remove("DATABASE_URL")
        .env("DB_SECRET_ARN", arn)
        .env("DB_SSL_MODE", "disable")
        .env("DB_POOL_SIZE", "1")
        .env("RUST_LOG", "debug");
    for (name, value) in crate::moto::function_env() {
        command.env(name, value);
    }
    Running::spawn(&mut command)
}

/// Everything the function printed, once it has been stopped.
async fn output(running: Running) -> String {
    running.stop().await
}

/// Drops the function's sessions, as when its connections are recycled: the next one must log in.
async fn cut_function_sessions(admin: &PgPool) {
    sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'msk-order-enricher'")
        .execute(admin)
        .await
        .unwrap();
}

async fn set_app_password(admin: &PgPool, password: &str) {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "ALTER ROLE app PASSWORD '{password}'"
    )))
    .execute(admin)
    .await
    .unwrap();
}

#[tokio::test]
async fn credentials_come_from_the_secret_and_follow_its_rotation() {
    let server = PgServer::start_with(PgOptions {
        superuser_password: Some("admin-pw".into()),
        ..PgOptions::default()
    });
    let db = fresh_db_on(&server.url("postgres")).await;
    let dbname = db.url.rsplit('/').next().unwrap().to_owned();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "CREATE ROLE app LOGIN PASSWORD '{FIRST_PASSWORD}'"
    )))
    .execute(&db.pool)
    .await
    .unwrap();
    for grant in [
        "GRANT SELECT ON customers TO app",
        "GRANT SELECT, INSERT, UPDATE ON enriched_orders, dead_letters TO app",
    ] {
        sqlx::query(grant).execute(&db.pool).await.unwrap();
    }
    let name = format!("orders-db-{}", std::process::id());
    let arn = create_secret(&name, &secret_json(FIRST_PASSWORD, server.port(), &dbname)).await;

    let api = RuntimeApi::start().await.unwrap();
    let function = start_function(&api, &arn);
    assert_eq!(
        invoke_fixture(&api, "sample-orders.json").await,
        BatchResponse::default()
    );
    assert_eq!(count(&db.pool, "enriched_orders").await, 10);

    // Rotation: the password changes in the database and in the secret; the running function's
    // next connection is refused, it re-reads the secret and goes on, with no cold start.
    set_app_password(&db.pool, SECOND_PASSWORD).await;
    let client = crate::moto::client().await;
    client
        .put_secret_value()
        .secret_id(&arn)
        .secret_string(secret_json(SECOND_PASSWORD, server.port(), &dbname))
        .send()
        .await
        .unwrap();
    cut_function_sessions(&db.pool).await;
    assert_eq!(
        invoke_fixture(&api, "poison.json").await,
        BatchResponse::default()
    );
    assert_eq!(count(&db.pool, "dead_letters").await, 3);

    // A password the secret does not know: the records are reported, not lost, and the error
    // names the secret.
    set_app_password(&db.pool, UNKNOWN_PASSWORD).await;
    cut_function_sessions(&db.pool).await;
    let response = invoke_fixture(&api, "unknown-customer.json").await;
    assert_eq!(reported(&response), vec![("orders-1".to_owned(), 500)]);
    // One process served every invocation and asks for the next: no restart, no cold start.
    for _ in 0..100 {
        if api.polls() == 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(api.polls(), 4);

    let text = output(function).await;
    assert_eq!(
        text.matches("reading the secret again").count(),
        2,
        "{text}"
    );
    assert!(
        text.contains("password authentication failed for user"),
        "{text}"
    );
    assert!(
        text.contains(&format!("(credentials re-read from secret {arn})")),
        "{text}"
    );
    for password in [FIRST_PASSWORD, SECOND_PASSWORD, UNKNOWN_PASSWORD] {
        assert!(
            !text.contains(password),
            "a password appeared in the function's output:\n{text}"
        );
    }
}

async fn init_error_for(arn: &str) -> (bool, serde_json::Value) {
    // moto loads its Secrets Manager backend on the first request, which can take seconds.
    crate::moto::client()
        .await
        .list_secrets()
        .send()
        .await
        .unwrap();
    let api = RuntimeApi::start().await.unwrap();
    let mut function = start_function(&api, arn);
    let status = tokio::time::timeout(Duration::from_secs(20), function.child.wait())
        .await
        .unwrap()
        .unwrap();
    let body = api
        .wait_for_init_error(Duration::from_secs(1))
        .await
        .expect("an init error was posted");
    (status.success(), serde_json::from_slice(&body).unwrap())
}

#[tokio::test]
async fn a_missing_secret_is_an_init_error_naming_it() {
    let arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:no-such-secret-AbCdEf";
    let (success, diagnostic) = init_error_for(arn).await;
    assert!(!success);
    assert_eq!(diagnostic["errorType"], "Runtime.CredentialsError");
    let message = diagnostic["errorMessage"].as_str().unwrap();
    assert!(
        message.starts_with(&format!("reading secret {arn}: ")),
        "{message}"
    );
    assert!(message.contains("ResourceNotFoundException"), "{message}");
}

#[tokio::test]
async fn a_malformed_secret_is_an_init_error_that_does_not_echo_it() {
    let arn = create_secret(
        &format!("malformed-{}", std::process::id()),
        "password=hunter2",
    )
    .await;
    let (success, diagnostic) = init_error_for(&arn).await;
    assert!(!success);
    assert_eq!(
        diagnostic["errorMessage"],
        format!("reading secret {arn}: the secret is not JSON (line 1, column 1)")
    );
}
