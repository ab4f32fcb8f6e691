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

use std::fmt::Write as _;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use esm_local::runtime_api::{Outcome, RuntimeApi};
use msk_order_enricher::config::Config;
use msk_order_enricher::config::PoisonPolicy;
use msk_order_enricher::decode::event::{self, KafkaEvent};
use msk_order_enricher::enrich::{self, cache::LocationCache};
use msk_order_enricher::plan;
use msk_order_enricher::postgres::statements;
use msk_order_enricher::report::response::BatchResponse;
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection as _, PgPool, Row};
use test_support::db;
use test_support::events::{build_event, synthetic_orders};
use test_support::pg::{PgOptions, PgServer};
use tokio::process::Child;

const FUNCTION: &str = env!("CARGO_BIN_EXE_msk-order-enricher");
const RECORDS: usize = 10_000;
const CUSTOMERS: usize = 500;
const RUNS: usize = 10;

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

struct Function {
    api: RuntimeApi,
    child: Child,
    startup: Duration,
    /// The function's log lines, collected as it runs.
    log: std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
}

impl Function {
    /// A number field of the last invocation's log line.
    fn last_field(&self, name: &str) -> Option<u64> {
        let log = self.log.lock().ok()?;
        log.iter()
            .rev()
            .find(|line| line.get("total_ms").is_some())?
            .get(name)
            .and_then(serde_json::Value::as_u64)
    }

    /// A number field of the last log line that has it (debug lines included).
    fn last_of(&self, name: &str) -> Option<u64> {
        let log = self.log.lock().ok()?;
        log.iter()
            .rev()
            .find_map(|line| line.get(name).and_then(serde_json::Value::as_u64))
    }

    /// `(decode_ms, lookup_ms, write_ms, total_ms)` of the last invocation, from its log line.
    fn last_breakdown(&self) -> Option<(u64, u64, u64, u64)> {
        let log = self.log.lock().ok()?;
        let line = log
            .iter()
            .rev()
            .find(|line| line.get("total_ms").is_some())?;
        let field = |name: &str| line.get(name).and_then(serde_json::Value::as_u64);
        Some((
            field("decode_ms")?,
            field("lookup_ms")?,
            field("write_ms")?,
            field("total_ms")?,
        ))
    }
}

async fn start_function(url: &str, vars: &[(&str, &str)]) -> Function {
    let api = RuntimeApi::start().await.expect("runtime API");
    let mut command = api.function_command(Path::new(FUNCTION));
    command
        .env("DATABASE_URL", url)
        .env("METRICS_NAMESPACE", "off")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (name, value) in vars {
        command.env(name, value);
    }
    let spawned = Instant::now();
    let mut child = command.spawn().expect("starting the function");
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let stdout = child.stdout.take().expect("piped stdout");
    let sink = log.clone();
    tokio::spawn(async move {
        use tokio::io::AsyncBufReadExt;
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if let (Ok(value), Ok(mut log)) = (serde_json::from_str(&line), sink.lock()) {
                log.push(value);
            }
        }
    });
    while api.first_poll().is_none() {
        // A function that exits during its init (a bad setting, a missing library) never
        // polls: say so instead of waiting for ever.
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the function exited before its first /next ({status}); its stderr is above");
        }
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    let startup = api.first_poll().expect("first poll") - spawned;
    Function {
        api,
        child,
        startup,
        log,
    }
}

/// Wall time of one invocation, as the Runtime API sees it: event delivered to response posted.
async fn invoke(function: &Function, event: &KafkaEvent<'_>) -> Duration {
    let body = serde_json::to_vec(event).expect("event JSON");
    let started = Instant::now();
    let outcome = function
        .api
        .invoke(body, Duration::from_secs(120))
        .await
        .expect("an answer");
    let elapsed = started.elapsed();
    match outcome {
        Outcome::Response(body) => {
            let response: BatchResponse = serde_json::from_slice(&body).expect("a batch response");
            assert_eq!(response, BatchResponse::default(), "every record written");
        }
        Outcome::Error(body) => panic!("function error: {}", String::from_utf8_lossy(&body)),
    }
    elapsed
}

/// Statements run since the last reset, by kind: calls, and milliseconds the server spent
/// executing them (`total_exec_time`), rounded to 0.1 ms.
async fn statements(observer: &PgPool) -> Vec<(String, i64, f64)> {
    sqlx::query(
        "SELECT CASE WHEN query LIKE '%FROM customers%' THEN 'lookup' WHEN query LIKE '%INSERT INTO enriched_orders%' THEN 'write'
                     ELSE left(regexp_replace(query, '\\s+', ' ', 'g'), 40) END AS kind, sum(calls)::int8,
                round(sum(total_exec_time)::numeric, 1)::float8
         FROM pg_stat_statements WHERE query NOT LIKE '%pg_stat_statements%' AND query NOT LIKE '%floor_%' GROUP BY 1 ORDER BY 1",
    )
    .fetch_all(observer)
    .await
    .expect("pg_stat_statements")
    .iter()
    .map(|row| (row.get(0), row.get(1), row.get(2)))
    .collect()
}

async fn reset_statements(observer: &PgPool) {
    sqlx::query("SELECT pg_stat_statements_reset()")
        .execute(observer)
        .await
        .expect("reset");
}

/// The write as it was before the binary `COPY`, kept as the reference the `COPY` is measured
/// against: every column of the batch as one array parameter, and the same upsert from
/// `UNNEST` of them (the benchmark's batches have one round and no dead letters). Returns the
/// rows written.
async fn unnest_write(
    conn: &mut sqlx::PgConnection,
    plan: &plan::Plan,
    locations: &msk_order_enricher::enrich::location::Locations,
) -> u64 {
    let statement = statements::order_upsert(
        "enriched_orders",
        "SELECT * FROM UNNEST($1::text[], $2::date[], $3::text[], $4::text[], $5::text[], $6::int4[],
            $7::numeric[], $8::numeric[], $9::bool[], $10::text[], $11::numeric[], $12::numeric[],
            $13::text[], $14::int4[], $15::int8[], $16::timestamptz[], $17::int8[], $18::bool[])",
    );
    let mut orders: Vec<&plan::PlannedOrder> = plan.orders.iter().collect();
    orders.sort_unstable_by(|a, b| a.order.order_no().cmp(b.order.order_no()));
    let location =
        |o: &plan::PlannedOrder| locations.get(o.order.customer()).and_then(Option::as_ref);
    let column =
        |f: &dyn Fn(&plan::PlannedOrder) -> String| orders.iter().map(|o| f(o)).collect::<Vec<_>>();
    sqlx::query(sqlx::AssertSqlSafe(statement))
        .bind(column(&|o| o.order.order_no().to_owned()))
        .bind(
            orders
                .iter()
                .map(|o| o.order.order_date())
                .collect::<Vec<_>>(),
        )
        .bind(column(&|o| o.order.region().to_owned()))
        .bind(column(&|o| o.order.customer().to_owned()))
        .bind(column(&|o| o.order.item().to_owned()))
        .bind(orders.iter().map(|o| o.order.units()).collect::<Vec<_>>())
        .bind(
            orders
                .iter()
                .map(|o| o.order.unit_cost())
                .collect::<Vec<_>>(),
        )
        .bind(orders.iter().map(|o| o.order.total()).collect::<Vec<_>>())
        .bind(
            orders
                .iter()
                .map(|o| location(o).is_some())
                .collect::<Vec<_>>(),
        )
        .bind(
            orders
                .iter()
                .map(|o| location(o).and_then(|l| l.address.clone()))
                .collect::<Vec<_>>(),
        )
        .bind(
            orders
                .iter()
                .map(|o| location(o).and_then(|l| l.longitude))
                .collect::<Vec<_>>(),
        )
        .bind(
            orders
                .iter()
                .map(|o| location(o).and_then(|l| l.latitude))
                .collect::<Vec<_>>(),
        )
        .bind(column(&|o| o.source.topic.to_string()))
        .bind(
            orders
                .iter()
                .map(|o| o.source.partition)
                .collect::<Vec<_>>(),
        )
        .bind(orders.iter().map(|o| o.source.offset).collect::<Vec<_>>())
        .bind(
            orders
                .iter()
                .map(|o| {
                    o.source
                        .timestamp_ms
                        .and_then(chrono::DateTime::from_timestamp_millis)
                })
                .collect::<Vec<_>>(),
        )
        .bind(orders.iter().map(|o| o.clock_ms).collect::<Vec<_>>())
        .bind(
            orders
                .iter()
                .map(|o| o.source.timestamp_out_of_range)
                .collect::<Vec<_>>(),
        )
        .execute(conn)
        .await
        .expect("the UNNEST write")
        .rows_affected()
}

/// The producer floor: `records` (as the function builds them) sent by a bare librdkafka
/// producer with the function's settings, already connected, from the first send to the last
/// acknowledgement. What the produce step costs on this machine with no function around it.
fn producer_floor(
    producer: &rdkafka::producer::BaseProducer,
    topic: &str,
    records: &[msk_order_enricher::kafka::records::PartitionOutput],
) -> Duration {
    use rdkafka::message::{Header, OwnedHeaders};
    use rdkafka::producer::{BaseRecord, Producer as _};
    let started = Instant::now();
    for record in records.iter().flat_map(|partition| &partition.records) {
        let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
        for (name, value) in &record.headers {
            headers = headers.insert(Header {
                key: name,
                value: value.as_deref(),
            });
        }
        let mut message = BaseRecord::<[u8], [u8]>::to(topic).headers(headers);
        if let Some(key) = &record.key {
            message = message.key(&key[..]);
        }
        if let Some(value) = &record.value {
            message = message.payload(&value[..]);
        }
        producer
            .send(message)
            .map_err(|(error, _)| error)
            .expect("enqueued");
    }
    // Served on this thread as they come (flush() would wait for up to 100 ms between polls).
    let until = started + Duration::from_secs(30);
    while producer.in_flight_count() > 0 {
        assert!(Instant::now() < until, "every record acknowledged");
        producer.poll(Duration::from_millis(1));
    }
    started.elapsed()
}

fn peak_rss_kib(child: &Child) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id()?)).ok()?;
    status.lines().find_map(|line| {
        line.strip_prefix("VmHWM:")?
            .trim()
            .strip_suffix(" kB")?
            .trim()
            .parse()
            .ok()
    })
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() {
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
    let observer = PgPoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await
        .expect("observer");
    sqlx::query("CREATE EXTENSION pg_stat_statements")
        .execute(&observer)
        .await
        .expect("pg_stat_statements");
    db::migrate(&observer).await.expect("migrations");
    db::upsert_customers(&observer, &db::synthetic_customers(CUSTOMERS))
        .await
        .expect("customers");
    let event_size = serde_json::to_vec(&batch(0)).expect("JSON").len();

    // The function with its defaults (cache on).
    let warm = start_function(&url, &[]).await;
    reset_statements(&observer).await;
    let cold_time = invoke(&warm, &batch(0)).await;
    let cold_statements = statements(&observer).await;

    // The floor: the write statement alone, same rows, a warm connection, plan and locations
    // computed beforehand. Interleaved with the function's warm invocations so both see the
    // same table sizes.
    let floor_pool = PgPoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await
        .expect("floor pool");
    let config =
        Config::from_lookup(|name| (name == "DATABASE_URL").then(|| url.clone())).expect("config");
    let cache = std::sync::Mutex::new(LocationCache::new(config.cache_capacity, config.cache_ttl));
    // The server floor: the same rows already on the server (copied, untimed, into a staging
    // table from what the invocation wrote), then one `INSERT ... SELECT` of the function's
    // upsert text into a table shaped exactly like enriched_orders. Taken right after each
    // invocation, so that each pair sees the same machine load.
    sqlx::query("CREATE TABLE floor_stage (LIKE enriched_orders)")
        .execute(&floor_pool)
        .await
        .expect("staging table");
    sqlx::query("CREATE TABLE floor_target (LIKE enriched_orders INCLUDING ALL)")
        .execute(&floor_pool)
        .await
        .expect("floor table");
    let server_floor_statement = statements::order_upsert(
        "floor_target",
        &format!("SELECT {} FROM floor_stage", statements::ORDER_COLUMNS),
    );
    let mut floor_times = Vec::new();
    let mut unnest_floor_times = Vec::new();
    let mut server_floor_times = Vec::new();
    let mut warm_times = Vec::new();
    let mut warm_statements = Vec::new();
    let mut warm_breakdowns = Vec::new();
    for run in 0..RUNS {
        let floor_plan = plan::plan(event::decode(batch(100 + run)), PoisonPolicy::DeadLetter);
        let mut floor_conn = floor_pool.acquire().await.expect("a connection");
        let (locations, _) =
            enrich::locate(&mut floor_conn, &cache, &floor_plan.distinct_customers())
                .await
                .expect("lookup");
        let started = Instant::now();
        let mut tx = floor_conn.begin().await.expect("begin");
        statements::write(&mut tx, &floor_plan, &locations)
            .await
            .expect("floor write");
        tx.commit().await.expect("commit");
        floor_times.push(started.elapsed());

        // The same kind of write, the previous way, right after: the two client floors pair up.
        let unnest_plan = plan::plan(event::decode(batch(200 + run)), PoisonPolicy::DeadLetter);
        let started = Instant::now();
        let mut tx = floor_conn.begin().await.expect("begin");
        let written = unnest_write(&mut tx, &unnest_plan, &locations).await;
        tx.commit().await.expect("commit");
        unnest_floor_times.push(started.elapsed());
        assert_eq!(written, RECORDS as u64, "every order written by UNNEST");

        reset_statements(&observer).await;
        let warm_batch = batch(1 + run);
        let order_numbers: Vec<String> =
            plan::plan(event::decode(warm_batch.clone()), PoisonPolicy::DeadLetter)
                .orders
                .iter()
                .map(|planned| planned.order.order_no().to_owned())
                .collect();
        warm_times.push(invoke(&warm, &warm_batch).await);
        warm_statements = statements(&observer).await;

        sqlx::query("TRUNCATE floor_stage")
            .execute(&mut *floor_conn)
            .await
            .expect("truncate");
        let staged = sqlx::query(
            "INSERT INTO floor_stage SELECT * FROM enriched_orders WHERE order_no = ANY($1)",
        )
        .bind(&order_numbers)
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
        server_floor_times.push(started.elapsed());
        assert_eq!(
            inserted.rows_affected(),
            RECORDS as u64,
            "every staged order inserted"
        );
        drop(floor_conn);
        tokio::time::sleep(Duration::from_millis(20)).await; // let the log line arrive
        warm_breakdowns.push(warm.last_breakdown());
    }
    let mut replay_times = Vec::new();
    for run in 0..RUNS {
        replay_times.push(invoke(&warm, &batch(1 + run)).await);
    }
    let rss_kib = peak_rss_kib(&warm.child);

    // Both sinks: the same binary also producing every order to a local broker (tansu, in
    // memory, 4 partitions), paired with a warm invocation of the database-only function.
    let tansu = test_support::broker::Tansu::start(None, &[]).expect("tansu");
    let servers = tansu.bootstrap_servers();
    let connection = esm_local::source::kafka::Connection {
        bootstrap_servers: servers.clone(),
        properties: vec![],
    };
    esm_local::source::kafka::ensure_topic(&connection, "bench-enriched", 4)
        .await
        .expect("output topic");
    let producing = start_function(
        &url,
        &[
            ("SINKS", "postgres,kafka"),
            ("KAFKA_BOOTSTRAP_SERVERS", &servers),
            ("OUTPUT_TOPIC", "bench-enriched"),
            ("KAFKA_SECURITY_PROTOCOL", "plaintext"),
            // The producer's debug line says how long handing the records over took.
            ("RUST_LOG", "info,msk_order_enricher::kafka::producer=debug"),
        ],
    )
    .await;
    let producing_startup = producing.startup;
    invoke(&producing, &batch(300)).await; // connects to the broker and the database

    // The bare producer of the producer floor, with the function's settings, connected by a
    // first batch.
    let bare: rdkafka::producer::BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &servers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("compression.type", "lz4")
        .set("linger.ms", "0")
        .set("partitioner", "murmur2_random")
        .create()
        .expect("bare producer");
    let floor_records = |number: usize| {
        let plan = plan::plan(event::decode(batch(number)), PoisonPolicy::DeadLetter);
        let locations = enrich::cached(&cache, &plan.distinct_customers())
            .expect("every customer cached by the floor runs");
        msk_order_enricher::kafka::records::build(&plan, &locations, &[], false)
    };
    producer_floor(&bare, "bench-enriched", &floor_records(390));
    let mut producer_floor_times = Vec::new();
    let mut postgres_only_times = Vec::new();
    let mut both_sinks_times = Vec::new();
    let mut produce_ms = Vec::new();
    let mut both_breakdowns = Vec::new();
    for run in 0..RUNS {
        postgres_only_times.push(invoke(&warm, &batch(310 + run)).await);
        both_sinks_times.push(invoke(&producing, &batch(330 + run)).await);
        let records = floor_records(360 + run);
        producer_floor_times.push(producer_floor(&bare, "bench-enriched", &records));
        tokio::time::sleep(Duration::from_millis(20)).await; // let the log line arrive
        produce_ms.push(producing.last_field("produce_ms"));
        both_breakdowns.push(producing.last_breakdown().map(|(decode, _, write, total)| {
            (
                decode,
                write,
                producing.last_of("enqueue_ms").unwrap_or(0),
                producing.last_field("produce_ms").unwrap_or(0),
                total,
            )
        }));
    }
    let producing_rss_kib = peak_rss_kib(&producing.child);

    // The same binary with the cache off: every warm invocation looks its customers up.
    let uncached = start_function(&url, &[("CACHE_TTL_SECONDS", "0")]).await;

    // Start-up again, a few times: the very first start also pays for reading the freshly
    // built binary from disk.
    let mut restarts = vec![uncached.startup];
    for _ in 0..5 {
        let mut started = start_function(&url, &[]).await;
        restarts.push(started.startup);
        let _ = started.child.kill().await;
    }
    invoke(&uncached, &batch(50)).await;
    let mut cold_cache_times = Vec::new();
    let mut cold_cache_statements = Vec::new();
    for run in 0..RUNS {
        reset_statements(&observer).await;
        cold_cache_times.push(invoke(&uncached, &batch(51 + run)).await);
        cold_cache_statements = statements(&observer).await;
    }

    let floor = median(floor_times.clone());
    let server_floor = median(server_floor_times.clone());
    let warm_median = median(warm_times.clone());
    let ratios = |floors: &[Duration]| -> Vec<f64> {
        warm_times
            .iter()
            .zip(floors)
            .map(|(warm, floor)| warm.as_secs_f64() / floor.as_secs_f64())
            .collect()
    };
    let median_ratio = |mut values: Vec<f64>| -> f64 {
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    let server_ratios = ratios(&server_floor_times);
    let client_ratios = ratios(&floor_times);
    let copy_vs_unnest: Vec<f64> = floor_times
        .iter()
        .zip(&unnest_floor_times)
        .map(|(copy, unnest)| copy.as_secs_f64() / unnest.as_secs_f64())
        .collect();
    let mut report = String::new();
    let _ = writeln!(report, "# End-to-end benchmark\n");
    let _ = writeln!(
        report,
        "{RECORDS} records per batch over 4 partitions, {:.2} MB per event, {CUSTOMERS} customers, median of {RUNS} runs.\n",
        event_size as f64 / 1e6
    );
    let _ = writeln!(
        report,
        "| phase | wall time per invocation (ms) | vs client floor | vs server floor |"
    );
    let _ = writeln!(report, "|---|---|---|---|");
    let row = |report: &mut String, name: &str, time: Duration| {
        let _ = writeln!(
            report,
            "| {name} | {:.1} | {:.2}x | {:.2}x |",
            ms(time),
            ms(time) / ms(floor),
            ms(time) / ms(server_floor)
        );
    };
    row(
        &mut report,
        "server floor (the upsert from rows already on the server)",
        server_floor,
    );
    row(
        &mut report,
        "client floor (the function's write alone: its statements and COMMIT)",
        floor,
    );
    row(
        &mut report,
        "client floor, the previous write (one UNNEST statement and COMMIT)",
        median(unnest_floor_times.clone()),
    );
    row(
        &mut report,
        "cold invocation (first after start: connect, cold cache)",
        cold_time,
    );
    row(&mut report, "warm invocation, warm cache", warm_median);
    row(
        &mut report,
        "warm invocation, cold cache (CACHE_TTL_SECONDS=0)",
        median(cold_cache_times.clone()),
    );
    row(
        &mut report,
        "replay of a written batch",
        median(replay_times.clone()),
    );
    let rounded = |values: &[f64]| {
        values
            .iter()
            .map(|v| (v * 100.0).round() / 100.0)
            .collect::<Vec<_>>()
    };
    let _ = writeln!(
        report,
        "\nWarm invocation / server floor taken right after it: median of {RUNS} paired ratios **{:.2}x** {:?}",
        median_ratio(server_ratios.clone()),
        rounded(&server_ratios)
    );
    let _ = writeln!(
        report,
        "Warm invocation / client floor taken right before it: median of {RUNS} paired ratios **{:.2}x** {:?}",
        median_ratio(client_ratios.clone()),
        rounded(&client_ratios)
    );
    let _ = writeln!(
        report,
        "Client floor, COPY / UNNEST taken right after it: median of {RUNS} paired ratios **{:.2}x** {:?}",
        median_ratio(copy_vs_unnest.clone()),
        rounded(&copy_vs_unnest)
    );
    let times = |values: &[Duration]| {
        values
            .iter()
            .map(|d| (ms(*d) * 10.0).round() / 10.0)
            .collect::<Vec<_>>()
    };
    let _ = writeln!(
        report,
        "\nAll runs (ms): server floor {:?}; client floor {:?}; client floor, UNNEST {:?}; warm {:?}; cold cache {:?}; replay {:?}\n",
        times(&server_floor_times),
        times(&floor_times),
        times(&unnest_floor_times),
        times(&warm_times),
        times(&cold_cache_times),
        times(&replay_times),
    );
    let _ = writeln!(report, "Inside the function, warm invocations (decode_ms, lookup_ms, write_ms, total_ms from its log): {warm_breakdowns:?}\n");
    let _ = writeln!(
        report,
        "Statements per invocation (pg_stat_statements: kind, calls, server execution ms):\n"
    );
    let _ = writeln!(report, "- cold invocation: {cold_statements:?}");
    let _ = writeln!(report, "- warm invocation, warm cache: {warm_statements:?}");
    let _ = writeln!(
        report,
        "- warm invocation, cold cache: {cold_cache_statements:?}\n"
    );
    let kafka_ratios: Vec<f64> = both_sinks_times
        .iter()
        .zip(&postgres_only_times)
        .map(|(both, postgres)| both.as_secs_f64() / postgres.as_secs_f64())
        .collect();
    let _ = writeln!(
        report,
        "SINKS=postgres,kafka (a local tansu broker, 4 partitions): warm invocation {:.1} ms against {:.1} ms with postgres alone; median of {RUNS} paired ratios **{:.2}x** {:?}; produce_ms from the log {:?}; all runs (ms) both {:?}, postgres alone {:?}\n",
        ms(median(both_sinks_times.clone())),
        ms(median(postgres_only_times.clone())),
        median_ratio(kafka_ratios.clone()),
        rounded(&kafka_ratios),
        produce_ms,
        times(&both_sinks_times),
        times(&postgres_only_times),
    );
    let _ = writeln!(
        report,
        "Inside the function with both sinks (decode_ms, write_ms, enqueue_ms, produce_ms, total_ms from its log): {both_breakdowns:?}\n"
    );
    let floor_ratios: Vec<f64> = producer_floor_times
        .iter()
        .zip(&postgres_only_times)
        .map(|(floor, postgres)| {
            (postgres.as_secs_f64() + floor.as_secs_f64()) / postgres.as_secs_f64()
        })
        .collect();
    let _ = writeln!(
        report,
        "Producer floor (the same 10,000 records, as the function builds them, sent by a bare librdkafka producer with its settings, first send to last acknowledgement): median {:.1} ms {:?}; (postgres alone + producer floor) / postgres alone, median of {RUNS} paired ratios **{:.2}x** {:?}\n",
        ms(median(producer_floor_times.clone())),
        times(&producer_floor_times),
        median_ratio(floor_ratios.clone()),
        rounded(&floor_ratios),
    );
    let _ = writeln!(report, "| process | figure |");
    let _ = writeln!(report, "|---|---|");
    let _ = writeln!(
        report,
        "| start-up, process start to first /next | first start {:.1} ms; then {:.1} ms, median of {} more starts (min {:.1}, max {:.1}) |",
        ms(warm.startup),
        ms(median(restarts.clone())),
        restarts.len(),
        ms(*restarts.iter().min().expect("restarts")),
        ms(*restarts.iter().max().expect("restarts")),
    );
    let _ = writeln!(
        report,
        "| start-up with the producer configured (SINKS=postgres,kafka) | {:.1} ms |",
        ms(producing_startup)
    );
    let _ = writeln!(
        report,
        "| peak RSS with the producer, after {} invocations | {} |",
        1 + RUNS,
        producing_rss_kib.map_or("unknown".to_owned(), |k| format!(
            "{:.1} MB",
            k as f64 / 1024.0
        ))
    );
    let _ = writeln!(
        report,
        "| peak RSS after {} invocations of {:.1} MB events | {} |",
        1 + 2 * RUNS,
        event_size as f64 / 1e6,
        rss_kib.map_or("unknown".to_owned(), |k| format!(
            "{:.1} MB",
            k as f64 / 1024.0
        ))
    );
    let size = |path: &str| {
        std::fs::metadata(path)
            .map(|m| format!("{:.2} MB", m.len() as f64 / 1e6))
            .unwrap_or_else(|_| "not built".to_owned())
    };
    // No x86_64 size here: this bench's own build keeps symbols (profile.bench), and it
    // overwrites target/release/msk-order-enricher. BENCHMARKS.md gives the stripped size.
    let _ = writeln!(
        report,
        "| binary, arm64 (target/lambda/msk-order-enricher/bootstrap) | {} |",
        size(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/target/lambda/msk-order-enricher/bootstrap"
        ))
    );
    print!("{report}");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench");
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::write(dir.join("end-to-end.md"), &report);
    drop(tansu);
    drop(server);
}
