//! Helpers shared by the integration tests: a fresh database per test, the function's `App`
//! configured against it, fixtures, and snapshots of what the function wrote.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use esm_local::batch::{Batch, EventSource, Record, SourceRecord, TimestampType};
use msk_order_enricher::config::Config;
use msk_order_enricher::decode::event::KafkaEvent;
use msk_order_enricher::handler;
use msk_order_enricher::report::response::BatchResponse;
use msk_order_enricher::report::summary::Summary;
use msk_order_enricher::startup::App;
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection, PgPool, Row};
use test_support::db;

pub(crate) struct TestDb {
    pub url: String,
    pub pool: PgPool,
}

/// A new database with the schema and the sample customers, on the shared test server.
pub(crate) async fn fresh_db() -> TestDb {
    fresh_db_on(&crate::pg::shared_admin_url()).await
}

/// A new database with the schema and the sample customers, on the server of `admin_url`.
pub(crate) async fn fresh_db_on(admin_url: &str) -> TestDb {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let name = format!(
        "enricher_test_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let mut admin = PgConnection::connect(admin_url)
        .await
        .expect("connecting to the test server");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .expect("creating the test database");
    admin.close().await.ok();
    let url = with_database(admin_url, &name);
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect(&url)
        .await
        .expect("connecting to the test database");
    db::migrate(&pool).await.expect("applying migrations");
    let customers = db::parse_customers_csv(include_str!("../../fixtures/customers.csv"))
        .expect("sample customers");
    db::upsert_customers(&pool, &customers)
        .await
        .expect("loading customers");
    TestDb { url, pool }
}

fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (url, String::new()),
    };
    let authority_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let base = match base[authority_end..].find('/') {
        Some(slash) => &base[..authority_end + slash],
        None => base,
    };
    format!("{base}/{database}{query}")
}

/// The function's state for `url`, with extra configuration variables.
pub(crate) async fn app(url: &str, vars: &[(&str, &str)]) -> App {
    let mut map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    map.entry("DATABASE_URL".into())
        .or_insert_with(|| url.to_owned());
    map.entry("DB_CONNECT_TIMEOUT_MS".into())
        .or_insert_with(|| "2000".to_owned());
    // Tests that call `process` give no deadline: this bounds their retries of a database
    // that stays down.
    map.entry("DB_RETRY_LIMIT_MS".into())
        .or_insert_with(|| "1500".to_owned());
    let config = Config::from_lookup(|name| map.get(name).cloned()).expect("test configuration");
    App::new(&config).await.expect("building the app")
}

pub(crate) fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

pub(crate) fn event(name: &str) -> KafkaEvent<'static> {
    let text =
        std::fs::read_to_string(fixture_path(&format!("events/{name}"))).expect("reading fixture");
    parse_event(&text)
}

/// Processes an event with no deadline.
pub(crate) async fn process(app: &App, event: KafkaEvent<'_>) -> (BatchResponse, Summary) {
    handler::process(app, event, None).await
}

pub(crate) async fn process_by(
    app: &App,
    event: KafkaEvent<'_>,
    deadline: Instant,
) -> (BatchResponse, Summary) {
    handler::process(app, event, Some(deadline)).await
}

/// The response as `(partition, offset)` pairs.
/// What a batch response for `poison.json` says when nothing of it was written: the first
/// record of every partition, as the records map names them.
pub(crate) fn poison_json_reported_whole() -> Vec<(String, i64)> {
    vec![
        ("orders-0".into(), 40),
        ("orders-1".into(), 10),
        ("orders-2".into(), 5),
    ]
}

/// What a batch response for `sample-orders.json` says when none of it may count as done:
/// the first record of each of its three partitions.
pub(crate) fn sample_orders_reported_whole() -> Vec<(String, i64)> {
    vec![
        ("orders-0".into(), 0),
        ("orders-1".into(), 0),
        ("orders-2".into(), 0),
    ]
}

/// A function process whose output is read as it comes: a pipe nobody reads fills up at 64 KB
/// and then blocks the function's logging, and with it the function.
pub(crate) struct Running {
    pub child: tokio::process::Child,
    output: tokio::task::JoinHandle<String>,
}

impl Running {
    /// Spawns `command` with its stdout and stderr collected.
    pub(crate) fn spawn(command: &mut tokio::process::Command) -> Self {
        use tokio::io::AsyncReadExt as _;
        command
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = command.spawn().expect("starting the function");
        let (mut stdout, mut stderr) = (
            child.stdout.take().expect("piped stdout"),
            child.stderr.take().expect("piped stderr"),
        );
        let output = tokio::spawn(async move {
            let (mut out, mut err) = (String::new(), String::new());
            let _ = tokio::join!(
                stdout.read_to_string(&mut out),
                stderr.read_to_string(&mut err)
            );
            out + &err
        });
        Self { child, output }
    }

    /// Stops the function; everything it printed.
    pub(crate) async fn stop(mut self) -> String {
        let _ = self.child.kill().await;
        self.output.await.expect("the output reader")
    }
}

pub(crate) fn reported(response: &BatchResponse) -> Vec<(String, i64)> {
    response
        .batch_item_failures
        .iter()
        .map(|failure| {
            (
                failure.item_identifier.partition.clone(),
                failure.item_identifier.offset,
            )
        })
        .collect()
}

/// Every column of every `enriched_orders` row as text, `written_at` included: a replay that
/// rewrote a row, even with equal values, would show.
pub(crate) async fn orders_snapshot(pool: &PgPool) -> Vec<Vec<Option<String>>> {
    let rows = sqlx::query(
        "SELECT order_no, order_date::text, region, customer, item, units::text, unit_cost::text, total::text,
                customer_found::text, address, longitude::text, latitude::text, source_topic,
                source_partition::text, source_offset::text, source_timestamp::text, written_at::text
         FROM enriched_orders ORDER BY order_no",
    )
    .fetch_all(pool)
    .await
    .expect("reading enriched_orders");
    rows.iter()
        .map(|row| (0..17).map(|i| row.get::<Option<String>, _>(i)).collect())
        .collect()
}

/// The same without `written_at`, to compare two databases.
pub(crate) async fn orders_content(pool: &PgPool) -> Vec<Vec<Option<String>>> {
    orders_snapshot(pool)
        .await
        .into_iter()
        .map(|mut row| {
            row.pop();
            row
        })
        .collect()
}

pub(crate) async fn count(pool: &PgPool, table: &str) -> i64 {
    sqlx::query(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
        .fetch_one(pool)
        .await
        .expect("counting rows")
        .get(0)
}

/// `(address, longitude, latitude, customer_found)` of an order, as text.
pub(crate) async fn location_of(
    pool: &PgPool,
    order_no: &str,
) -> (Option<String>, Option<String>, Option<String>, bool) {
    let row = sqlx::query(
        "SELECT address, longitude::text, latitude::text, customer_found FROM enriched_orders WHERE order_no = $1",
    )
    .bind(order_no)
    .fetch_one(pool)
    .await
    .unwrap_or_else(|error| panic!("order {order_no} not found: {error}"));
    (row.get(0), row.get(1), row.get(2), row.get(3))
}

/// Invokes the function behind `api` with a fixture event and returns its batch response.
pub(crate) async fn invoke_fixture(
    api: &esm_local::runtime_api::RuntimeApi,
    name: &str,
) -> BatchResponse {
    use esm_local::runtime_api::Answer;
    let body = std::fs::read(fixture_path(&format!("events/{name}"))).expect("reading fixture");
    match api
        .invoke(body, std::time::Duration::from_secs(30))
        .await
        .expect("an answer")
    {
        Answer::Response(body) => serde_json::from_slice(&body).expect("a batch response"),
        Answer::Error(body) => panic!("function error: {}", String::from_utf8_lossy(&body)),
    }
}

/// A TCP port on 127.0.0.1 that is free now, for a server the tests start next.
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("finding a free port")
}

/// Waits until `server` accepts connections on `port`, failing if it exits first or does not
/// listen within 30 s.
pub(crate) fn wait_until_listening(server: &mut std::process::Child, port: u16, what: &str) {
    let started = std::time::Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = server.try_wait() {
            panic!("{what} exited ({status}) before listening on port {port}");
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "{what} did not listen on port {port} within 30 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// An event's JSON, as the function decodes it, copied out of the text so that it can outlive it.
pub(crate) fn parse_event(json: &str) -> KafkaEvent<'static> {
    serde_json::from_str::<KafkaEvent<'_>>(json)
        .expect("the text is a Kafka event")
        .into_owned()
}

/// A transaction of another session that has inserted `order_no` and not committed: a `COPY`
/// of the same order number waits for it.
pub(crate) async fn insert_uncommitted(
    pool: &sqlx::PgPool,
    order_no: &str,
) -> sqlx::Transaction<'static, sqlx::Postgres> {
    let mut blocker = pool.begin().await.unwrap();
    sqlx::query(
        "INSERT INTO enriched_orders (order_no, order_date, region, customer, item, units, unit_cost, total,
             customer_found, source_topic, source_partition, source_offset)
         VALUES ($1, '2024-03-01', 'East', 'Jones', 'Pen', 1, 1.5, 1.5, true, 'other', 0, 0)",
    )
    .bind(order_no)
    .execute(&mut *blocker)
    .await
    .unwrap();
    blocker
}

/// An order's value, as the order stream carries it.
pub(crate) fn order_line(order_no: &str, customer: &str, units: u32) -> String {
    format!(
        r#"{{"OrderNo":"{order_no}","OrderDate":"2024-03-01","Region":"East","Customer":"{customer}","Item":"Pen","Units":{units},"Unit Cost":1.50,"Total":{}}}"#,
        f64::from(units) * 1.5
    )
}

/// One record of topic `orders`: (partition, offset, order number, customer, units), with a
/// timestamp that grows with the offset.
pub(crate) type Spec<'a> = (i32, i64, &'a str, &'a str, u32);

/// A Kafka event of these records.
pub(crate) fn event_of(records: &[Spec<'_>]) -> KafkaEvent<'static> {
    let records: Vec<Record> = records
        .iter()
        .map(|&(partition, offset, no, customer, units)| {
            Record::new(&SourceRecord {
                topic: "orders".into(),
                partition,
                offset,
                timestamp_ms: 1_700_000_000_000 + offset,
                timestamp_type: TimestampType::CreateTime,
                key: Some(no.as_bytes().to_vec()),
                value: Some(order_line(no, customer, units).into_bytes()),
                headers: vec![],
            })
        })
        .collect();
    parse_event(&Batch::from_records(records).event_json(&EventSource {
        event_source_arn: None,
        bootstrap_servers: "localhost:9092".into(),
    }))
}

/// The session whose `COPY` into `enriched_orders` of `pool`'s database waits on a row lock,
/// once there is one (10 s at most). Only that database's: the tests share one server.
pub(crate) async fn copy_waiting_on_a_lock(pool: &PgPool) -> i32 {
    for _ in 0..500 {
        let pid: Option<i32> = sqlx::query_scalar(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE 'COPY enriched_orders%'",
        )
        .fetch_optional(pool)
        .await
        .unwrap();
        if let Some(pid) = pid {
            return pid;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("no COPY waited on a row lock within 10 s");
}
