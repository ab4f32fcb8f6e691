//! End to end: the release binary driven through a Lambda Runtime API on localhost against a
//! throwaway PostgreSQL with 500 customers, with 10,000-record batches over 4 partitions
//! (just under the 6 MB payload cap). In the same run it measures two floors: the client floor
//! (the same rows written by the function's own write, issued directly with no function around
//! it) and the server floor (the same rows already on the server, upserted by one
//! `INSERT ... SELECT` into a table shaped like `enriched_orders`), each paired with a warm
//! invocation. Then the same with `SINKS=postgres,kafka` against a local broker (tansu),
//! each invocation paired with one of the database-only function, and the producer floor: the
//! same records sent by a bare librdkafka producer with the function's settings.
//!
//! `cargo bench --bench end_to_end` prints a report and writes it to
//! target/bench/end-to-end.md. See BENCHMARKS.md.

mod floors;
mod function;
mod report;

use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use msk_order_enricher::config::{Config, PoisonPolicy};
use msk_order_enricher::decode::event::{self, KafkaEvent};
use msk_order_enricher::enrich::{self, cache::LocationCache};
use msk_order_enricher::kafka::records::PartitionRecords;
use msk_order_enricher::plan;
use msk_order_enricher::postgres::statements;
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection as _, PgPool};
use test_support::db;
use test_support::events::{build_event, synthetic_orders};
use test_support::pg::{PgOptions, PgServer};

use floors::{producer_floor, reset_statements, statements, unnest_write};
use function::{invoke, peak_rss_kib, start_function, Function};

const RECORDS: usize = 10_000;
const CUSTOMERS: usize = 500;
const RUNS: usize = 10;
const OUTPUT_TOPIC: &str = "bench-enriched";

fn batch(number: usize) -> KafkaEvent<'static> {
    let first = number * RECORDS;
    let json = build_event(
        "orders",
        4,
        synthetic_orders(RECORDS, first, CUSTOMERS),
        i64::try_from(first).expect("offsets fit i64"),
        1_700_000_000_000 + i64::try_from(first).expect("offsets fit i64"),
    );
    serde_json::from_str::<KafkaEvent<'_>>(&json)
        .expect("the rendered event is a Kafka event")
        .into_owned()
}

/// What every phase uses: the database (with 500 customers and `pg_stat_statements`), a
/// connection to observe it, one to measure the floors on, and the warm function.
struct Bench {
    /// Kept for the whole run: dropping it stops the server.
    _server: PgServer,
    url: String,
    observer: PgPool,
    floor_pool: PgPool,
    /// The function's cache, for the floors' lookups.
    cache: Mutex<LocationCache>,
    /// The function with its defaults (cache on).
    warm: Function,
}

/// The database alone: the function's invocations and the floors, paired run by run.
#[derive(Default)]
pub(crate) struct DatabaseRuns {
    pub(crate) event_size: usize,
    pub(crate) cold_time: Duration,
    pub(crate) cold_statements: Vec<(String, i64, f64)>,
    pub(crate) floor_times: Vec<Duration>,
    pub(crate) unnest_floor_times: Vec<Duration>,
    pub(crate) server_floor_times: Vec<Duration>,
    pub(crate) warm_times: Vec<Duration>,
    pub(crate) warm_statements: Vec<(String, i64, f64)>,
    pub(crate) warm_breakdowns: Vec<Option<(u64, u64, u64, u64)>>,
    pub(crate) replay_times: Vec<Duration>,
    pub(crate) rss_kib: Option<u64>,
}

/// `(decode_ms, write_ms, enqueue_ms, produce_ms, total_ms)` of an invocation with both sinks,
/// from its log.
pub(crate) type BothSinksBreakdown = (u64, u64, u64, u64, u64);

/// Both sinks against the database alone, and the producer floor.
#[derive(Default)]
pub(crate) struct KafkaRuns {
    pub(crate) startup: Duration,
    pub(crate) producer_floor_times: Vec<Duration>,
    pub(crate) postgres_only_times: Vec<Duration>,
    pub(crate) both_sinks_times: Vec<Duration>,
    pub(crate) produce_ms: Vec<Option<u64>>,
    pub(crate) both_breakdowns: Vec<Option<BothSinksBreakdown>>,
    pub(crate) rss_kib: Option<u64>,
}

/// A cold cache on every invocation, and the process's start-up.
#[derive(Default)]
pub(crate) struct ColdRuns {
    pub(crate) first_startup: Duration,
    pub(crate) restarts: Vec<Duration>,
    pub(crate) cold_cache_times: Vec<Duration>,
    pub(crate) cold_cache_statements: Vec<(String, i64, f64)>,
}

#[tokio::main]
async fn main() {
    let bench = Bench::start().await;
    let database = database_runs(&bench).await;
    let kafka = kafka_runs(&bench).await;
    let cold = cold_runs(&bench).await;
    let report = report::render(&database, &kafka, &cold);
    print!("{report}");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench");
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::write(dir.join("end-to-end.md"), &report);
}

impl Bench {
    async fn start() -> Self {
        let server = PgServer::start_with(PgOptions {
            track_statements: true,
            ..PgOptions::default()
        });
        let admin = PgPoolOptions::new()
            .max_connections(1)
            .connect(&server.url("postgres"))
            .await
            .expect("admin");
        sqlx::query("CREATE DATABASE bench")
            .execute(&admin)
            .await
            .expect("database");
        let url = server.url("bench");
        let observer = one_connection(&url).await;
        sqlx::query("CREATE EXTENSION pg_stat_statements")
            .execute(&observer)
            .await
            .expect("pg_stat_statements");
        db::migrate(&observer).await.expect("migrations");
        db::upsert_customers(&observer, &db::synthetic_customers(CUSTOMERS))
            .await
            .expect("customers");
        let floor_pool = one_connection(&url).await;
        let config = Config::from_lookup(|name| (name == "DATABASE_URL").then(|| url.clone()))
            .expect("config");
        let cache = Mutex::new(LocationCache::new(config.cache_capacity, config.cache_ttl));
        let warm = start_function(&url, &[]).await;
        Self {
            _server: server,
            url,
            observer,
            floor_pool,
            cache,
            warm,
        }
    }

    /// The records the function would produce for batch `number`, every customer cached.
    fn output_records(&self, number: usize) -> Vec<PartitionRecords> {
        let plan = plan::plan(event::decode(batch(number)), PoisonPolicy::DeadLetter);
        let locations = enrich::cached(&self.cache, &plan.distinct_customers())
            .expect("every customer cached by the floor runs");
        msk_order_enricher::kafka::records::build(&plan, &locations, &[], false)
    }
}

async fn one_connection(url: &str) -> PgPool {
    PgPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await
        .expect("a connection")
}

/// The cold invocation, then each warm invocation between the floors that pair with it, then
/// the replays of the written batches.
async fn database_runs(bench: &Bench) -> DatabaseRuns {
    let mut runs = DatabaseRuns {
        event_size: serde_json::to_vec(&batch(0)).expect("JSON").len(),
        ..DatabaseRuns::default()
    };
    reset_statements(&bench.observer).await;
    runs.cold_time = invoke(&bench.warm, &batch(0)).await;
    runs.cold_statements = statements(&bench.observer).await;
    // The server floor: the same rows already on the server (copied, untimed, into a staging
    // table from what the invocation wrote), then one `INSERT ... SELECT` of the function's
    // upsert text into a table shaped exactly like enriched_orders. Taken right after each
    // invocation, so that each pair sees the same machine load.
    for statement in [
        "CREATE TABLE floor_stage (LIKE enriched_orders)",
        "CREATE TABLE floor_target (LIKE enriched_orders INCLUDING ALL)",
    ] {
        sqlx::query(statement)
            .execute(&bench.floor_pool)
            .await
            .expect("a floor table");
    }
    for run in 0..RUNS {
        client_floors(bench, run, &mut runs).await;
        reset_statements(&bench.observer).await;
        let warm_batch = batch(1 + run);
        let order_numbers: Vec<String> =
            plan::plan(event::decode(warm_batch.clone()), PoisonPolicy::DeadLetter)
                .orders
                .iter()
                .map(|planned| planned.order.order_no().to_owned())
                .collect();
        runs.warm_times.push(invoke(&bench.warm, &warm_batch).await);
        runs.warm_statements = statements(&bench.observer).await;
        runs.server_floor_times
            .push(server_floor(bench, &order_numbers).await);
        tokio::time::sleep(Duration::from_millis(20)).await; // let the log line arrive
        runs.warm_breakdowns.push(bench.warm.last_breakdown());
    }
    for run in 0..RUNS {
        runs.replay_times
            .push(invoke(&bench.warm, &batch(1 + run)).await);
    }
    runs.rss_kib = peak_rss_kib(&bench.warm.child);
    runs
}

/// The client floors of run `run`: the write statement alone, same rows, a warm connection, plan
/// and locations computed beforehand; then the previous write (UNNEST) right after, so that the
/// two client floors pair up. Interleaved with the function's warm invocations so both see the
/// same table sizes.
async fn client_floors(bench: &Bench, run: usize, runs: &mut DatabaseRuns) {
    let floor_plan = plan::plan(event::decode(batch(100 + run)), PoisonPolicy::DeadLetter);
    let mut floor_conn = bench.floor_pool.acquire().await.expect("a connection");
    let (locations, _) = enrich::lookup(
        &mut floor_conn,
        &bench.cache,
        &floor_plan.distinct_customers(),
    )
    .await
    .expect("lookup");
    let started = Instant::now();
    let mut tx = floor_conn.begin().await.expect("begin");
    statements::write(&mut tx, &floor_plan, &locations)
        .await
        .expect("floor write");
    tx.commit().await.expect("commit");
    runs.floor_times.push(started.elapsed());

    let unnest_plan = plan::plan(event::decode(batch(200 + run)), PoisonPolicy::DeadLetter);
    let started = Instant::now();
    let mut tx = floor_conn.begin().await.expect("begin");
    let written = unnest_write(&mut tx, &unnest_plan, &locations).await;
    tx.commit().await.expect("commit");
    runs.unnest_floor_times.push(started.elapsed());
    assert_eq!(written, RECORDS as u64, "every order written by UNNEST");
}

/// The server floor for the rows `order_numbers` the last invocation wrote: staged untimed, then
/// upserted by the function's own upsert text into `floor_target`, timed.
async fn server_floor(bench: &Bench, order_numbers: &[String]) -> Duration {
    let server_floor_statement = statements::order_upsert(
        "floor_target",
        &format!("SELECT {} FROM floor_stage", statements::ORDER_COLUMNS),
    );
    let mut floor_conn = bench.floor_pool.acquire().await.expect("a connection");
    sqlx::query("TRUNCATE floor_stage")
        .execute(&mut *floor_conn)
        .await
        .expect("truncate");
    let staged = sqlx::query(
        "INSERT INTO floor_stage SELECT * FROM enriched_orders WHERE order_no = ANY($1)",
    )
    .bind(order_numbers)
    .execute(&mut *floor_conn)
    .await
    .expect("staging");
    assert_eq!(
        staged.rows_affected(),
        RECORDS as u64,
        "every order of the batch staged"
    );
    sqlx::query("ANALYZE floor_stage")
        .execute(&mut *floor_conn)
        .await
        .expect("analyze");
    let started = Instant::now();
    let inserted = sqlx::query(sqlx::AssertSqlSafe(server_floor_statement.as_str()))
        .execute(&mut *floor_conn)
        .await
        .expect("server floor");
    let elapsed = started.elapsed();
    assert_eq!(
        inserted.rows_affected(),
        RECORDS as u64,
        "every staged order inserted"
    );
    elapsed
}

/// Both sinks: the same binary also producing every order to a local broker (tansu, in memory,
/// 4 partitions), paired with a warm invocation of the database-only function, and after each
/// the producer floor.
async fn kafka_runs(bench: &Bench) -> KafkaRuns {
    let tansu = test_support::broker::Tansu::start(None, &[]).expect("tansu");
    let servers = tansu.bootstrap_servers();
    let connection = esm_local::source::kafka::Connection {
        bootstrap_servers: servers.clone(),
        properties: vec![],
    };
    esm_local::source::kafka::ensure_topic(&connection, OUTPUT_TOPIC, 4)
        .await
        .expect("output topic");
    let producing = start_function(
        &bench.url,
        &[
            ("SINKS", "postgres,kafka"),
            ("KAFKA_BOOTSTRAP_SERVERS", &servers),
            ("OUTPUT_TOPIC", OUTPUT_TOPIC),
            ("KAFKA_SECURITY_PROTOCOL", "plaintext"),
            // The producer's debug line says how long handing the records over took.
            ("RUST_LOG", "info,msk_order_enricher::kafka::producer=debug"),
        ],
    )
    .await;
    let mut runs = KafkaRuns {
        startup: producing.startup,
        ..KafkaRuns::default()
    };
    invoke(&producing, &batch(300)).await; // connects to the broker and the database
    let bare = bare_producer(&servers);
    producer_floor(&bare, OUTPUT_TOPIC, &bench.output_records(390)); // connects it
    for run in 0..RUNS {
        runs.postgres_only_times
            .push(invoke(&bench.warm, &batch(310 + run)).await);
        runs.both_sinks_times
            .push(invoke(&producing, &batch(330 + run)).await);
        let records = bench.output_records(360 + run);
        runs.producer_floor_times
            .push(producer_floor(&bare, OUTPUT_TOPIC, &records));
        tokio::time::sleep(Duration::from_millis(20)).await; // let the log line arrive
        runs.produce_ms.push(producing.last_field("produce_ms"));
        runs.both_breakdowns
            .push(producing.last_breakdown().map(|(decode, _, write, total)| {
                (
                    decode,
                    write,
                    producing.last_of("enqueue_ms").unwrap_or(0),
                    producing.last_field("produce_ms").unwrap_or(0),
                    total,
                )
            }));
    }
    runs.rss_kib = peak_rss_kib(&producing.child);
    // Stopped, so that nothing of this phase runs during the next.
    let mut producing = producing;
    let _ = producing.child.kill().await;
    drop(tansu);
    runs
}

/// The bare producer of the producer floor, with the function's settings.
fn bare_producer(servers: &str) -> rdkafka::producer::BaseProducer {
    rdkafka::ClientConfig::new()
        .set("bootstrap.servers", servers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("compression.type", "lz4")
        .set("linger.ms", "0")
        .set("partitioner", "murmur2_random")
        .create()
        .expect("bare producer")
}

/// The same binary with the cache off (every warm invocation looks its customers up), and
/// start-up measured a few more times: the very first start also pays for reading the freshly
/// built binary from disk.
async fn cold_runs(bench: &Bench) -> ColdRuns {
    let uncached = start_function(&bench.url, &[("CACHE_TTL_SECONDS", "0")]).await;
    let mut runs = ColdRuns {
        first_startup: bench.warm.startup,
        restarts: vec![uncached.startup],
        ..ColdRuns::default()
    };
    for _ in 0..5 {
        let mut started = start_function(&bench.url, &[]).await;
        runs.restarts.push(started.startup);
        let _ = started.child.kill().await;
    }
    invoke(&uncached, &batch(50)).await;
    for run in 0..RUNS {
        reset_statements(&bench.observer).await;
        runs.cold_cache_times
            .push(invoke(&uncached, &batch(51 + run)).await);
        runs.cold_cache_statements = statements(&bench.observer).await;
    }
    runs
}
