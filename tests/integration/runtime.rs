//! The built binary, run as Lambda runs it: against a Runtime API on localhost.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use esm_local::runtime_api::{Answer, RuntimeApi};
use msk_order_enricher::report::response::BatchResponse;
use tokio::io::AsyncReadExt;

use crate::support::*;

const FUNCTION: &str = env!("CARGO_BIN_EXE_msk-order-enricher");

async fn backends(pool: &sqlx::PgPool, database_url: &str) -> Vec<(i32, String)> {
    let database = database_url.rsplit('/').next().unwrap().to_owned();
    sqlx::query_as(
        "SELECT pid, backend_start::text FROM pg_stat_activity
         WHERE datname = $1 AND application_name = 'msk-order-enricher' ORDER BY pid",
    )
    .bind(database)
    .fetch_all(pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn the_binary_serves_invocations_reusing_its_pool_and_cache() {
    let db = fresh_db().await;
    let observer = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&db.url)
        .await
        .unwrap();
    let api = RuntimeApi::start().await.unwrap();
    let mut function = api
        .function_command(Path::new(FUNCTION))
        .env("DATABASE_URL", &db.url)
        .env("DB_POOL_SIZE", "1")
        .env_remove("AWS_LAMBDA_LOG_FORMAT")
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();

    assert_eq!(
        invoke_fixture(&api, "sample-orders.json").await,
        BatchResponse::default()
    );
    let connections = backends(&observer, &db.url).await;
    assert_eq!(
        connections.len(),
        1,
        "one pooled connection: {connections:?}"
    );
    assert_eq!(
        invoke_fixture(&api, "sample-orders.json").await,
        BatchResponse::default()
    );
    assert_eq!(
        invoke_fixture(&api, "multi-topic.json").await,
        BatchResponse::default()
    );
    assert_eq!(
        backends(&observer, &db.url).await,
        connections,
        "the same connection served every invocation"
    );
    // multi-topic.json repeats SO-001..SO-005 with older timestamps from other partitions.
    assert_eq!(count(&observer, "enriched_orders").await, 10);

    // A payload that is not a Kafka event fails the invocation (whole-batch retry).
    match api
        .invoke(r#"{"Records":[{"body":"x"}]}"#, Duration::from_secs(10))
        .await
        .unwrap()
    {
        Answer::Error(body) => {
            let body = String::from_utf8_lossy(&body);
            assert!(
                body.contains("the event is not a Kafka event: missing field `records`"),
                "{body}"
            );
        }
        other => panic!("expected an error, got {other:?}"),
    }
    assert_eq!(
        invoke_fixture(&api, "unknown-customer.json").await,
        BatchResponse::default(),
        "still serving after an error"
    );

    function.kill().await.unwrap();
    let mut stdout = String::new();
    function
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .await
        .unwrap();
    assert_log_lines(&stdout);
    assert_metrics(&stdout);
}

/// The log line of each of the four invocations with a response: what the lookup and the
/// write did.
fn assert_log_lines(stdout: &str) {
    let summaries: Vec<serde_json::Value> = stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|line| line["message"] == "batch processed")
        .collect();
    assert_eq!(summaries.len(), 4, "{stdout}");
    let field = |i: usize, name: &str| summaries[i][name].as_u64().unwrap();
    // First invocation: one lookup for seven customers; second: all from the cache.
    assert_eq!(
        (
            field(0, "lookup_round_trips"),
            field(0, "customers_looked_up"),
            field(0, "cache_hits")
        ),
        (1, 7, 0)
    );
    assert_eq!(
        (field(1, "lookup_round_trips"), field(1, "cache_hits")),
        (0, 7)
    );
    assert_eq!(
        (
            field(0, "received"),
            field(0, "orders"),
            field(0, "orders_changed")
        ),
        (10, 10, 10)
    );
    assert_eq!(field(1, "orders_changed"), 0);
    assert_eq!(field(3, "customers_not_found"), 1);
    assert!(summaries[0]["request_id"]
        .as_str()
        .unwrap()
        .starts_with("local-"));
}

/// The EMF document of each of the four invocations with a response.
fn assert_metrics(stdout: &str) {
    // One EMF document per invocation that got a response, with the batch's figures.
    let metrics: Vec<serde_json::Value> = stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|line| line.get("_aws").is_some())
        .collect();
    assert_eq!(metrics.len(), 4, "{stdout}");
    assert_eq!(
        metrics[0]["_aws"]["CloudWatchMetrics"][0]["Namespace"],
        "MskOrderEnricher"
    );
    assert_eq!(metrics[0]["FunctionName"], "msk-order-enricher");
    let metric = |i: usize, name: &str| metrics[i][name].as_f64().unwrap();
    assert_eq!(metric(0, "RecordsReceived"), 10.0);
    assert_eq!(metric(0, "OrdersEnriched"), 10.0);
    assert_eq!(metric(0, "LookupRoundTrips"), 1.0);
    assert_eq!(metric(0, "CacheHitRatio"), 0.0);
    assert_eq!(metric(1, "CacheHitRatio"), 100.0);
    assert_eq!(metric(1, "LookupRoundTrips"), 0.0);
    assert_eq!(
        (metric(2, "RecordsReceived"), metric(2, "Tombstones")),
        (7.0, 2.0)
    );
    assert_eq!(
        (metric(3, "OrdersEnriched"), metric(3, "CustomersNotFound")),
        (0.0, 1.0)
    );
    assert!(metric(0, "OldestRecordAge") > 0.0);
}

#[tokio::test]
async fn a_missing_database_url_is_posted_as_an_init_error_and_the_process_exits() {
    let api = RuntimeApi::start().await.unwrap();
    let mut function = api
        .function_command(Path::new(FUNCTION))
        .env_remove("DATABASE_URL")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(10), function.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(!status.success(), "exit status {status}");
    let body = api
        .wait_for_init_error(Duration::from_secs(1))
        .await
        .expect("an init error was posted");
    let diagnostic: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(diagnostic["errorType"], "Runtime.ConfigurationError");
    assert_eq!(
        diagnostic["errorMessage"],
        "configuration error: DATABASE_URL is not set: give a postgres:// connection URL, or DB_SECRET_ARN"
    );
    assert_eq!(api.polls(), 0, "it never asked for an event");
}
