//! The report: every figure of the run, as Markdown.

use std::fmt::Write as _;
use std::time::Duration;

use crate::{ColdRuns, DatabaseRuns, KafkaRuns, CUSTOMERS, RECORDS, RUNS};

/// The whole report.
pub(crate) fn render(database: &DatabaseRuns, kafka: &KafkaRuns, cold: &ColdRuns) -> String {
    let mut report = String::new();
    database_section(&mut report, database, cold);
    kafka_section(&mut report, kafka);
    process_section(&mut report, database, kafka, cold);
    report
}

fn median(times: &[Duration]) -> Duration {
    let mut times = times.to_vec();
    times.sort();
    times[times.len() / 2]
}

fn median_ratio(values: &[f64]) -> f64 {
    let mut values = values.to_vec();
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Each value rounded to hundredths, for the lists of paired ratios.
fn rounded(values: &[f64]) -> Vec<f64> {
    values.iter().map(|v| (v * 100.0).round() / 100.0).collect()
}

/// Each time in milliseconds, rounded to tenths.
fn times(values: &[Duration]) -> Vec<f64> {
    values
        .iter()
        .map(|d| (ms(*d) * 10.0).round() / 10.0)
        .collect()
}

/// `a[i] / b[i]` for each pair of runs.
fn paired(a: &[Duration], b: &[Duration]) -> Vec<f64> {
    a.iter()
        .zip(b)
        .map(|(a, b)| a.as_secs_f64() / b.as_secs_f64())
        .collect()
}

fn megabytes(kib: Option<u64>) -> String {
    kib.map_or("unknown".to_owned(), |k| {
        format!("{:.1} MB", k as f64 / 1024.0)
    })
}

/// The database alone: each phase against both floors, the paired ratios, what ran inside.
fn database_section(report: &mut String, d: &DatabaseRuns, cold: &ColdRuns) {
    let floor = median(&d.floor_times);
    let server_floor = median(&d.server_floor_times);
    let _ = writeln!(report, "# End-to-end benchmark\n");
    let _ = writeln!(
        report,
        "{RECORDS} records per batch over 4 partitions, {:.2} MB per event, {CUSTOMERS} customers, median of {RUNS} runs.\n",
        d.event_size as f64 / 1e6
    );
    let _ = writeln!(
        report,
        "| phase | wall time per invocation (ms) | vs client floor | vs server floor |"
    );
    let _ = writeln!(report, "|---|---|---|---|");
    for (name, time) in [
        (
            "server floor (the upsert from rows already on the server)",
            server_floor,
        ),
        (
            "client floor (the function's write alone: its statements and COMMIT)",
            floor,
        ),
        (
            "client floor, the previous write (one UNNEST statement and COMMIT)",
            median(&d.unnest_floor_times),
        ),
        (
            "cold invocation (first after start: connect, cold cache)",
            d.cold_time,
        ),
        ("warm invocation, warm cache", median(&d.warm_times)),
        (
            "warm invocation, cold cache (CACHE_TTL_SECONDS=0)",
            median(&cold.cold_cache_times),
        ),
        ("replay of a written batch", median(&d.replay_times)),
    ] {
        let _ = writeln!(
            report,
            "| {name} | {:.1} | {:.2}x | {:.2}x |",
            ms(time),
            ms(time) / ms(floor),
            ms(time) / ms(server_floor)
        );
    }
    let server_ratios = paired(&d.warm_times, &d.server_floor_times);
    let client_ratios = paired(&d.warm_times, &d.floor_times);
    let copy_vs_unnest = paired(&d.floor_times, &d.unnest_floor_times);
    let _ = writeln!(report);
    for (what, ratios) in [
        (
            "Warm invocation / server floor taken right after it",
            &server_ratios,
        ),
        (
            "Warm invocation / client floor taken right before it",
            &client_ratios,
        ),
        (
            "Client floor, COPY / UNNEST taken right after it",
            &copy_vs_unnest,
        ),
    ] {
        let _ = writeln!(
            report,
            "{what}: median of {RUNS} paired ratios **{:.2}x** {:?}",
            median_ratio(ratios),
            rounded(ratios)
        );
    }
    let _ = writeln!(
        report,
        "\nAll runs (ms): server floor {:?}; client floor {:?}; client floor, UNNEST {:?}; warm {:?}; cold cache {:?}; replay {:?}\n",
        times(&d.server_floor_times),
        times(&d.floor_times),
        times(&d.unnest_floor_times),
        times(&d.warm_times),
        times(&cold.cold_cache_times),
        times(&d.replay_times),
    );
    let _ = writeln!(report, "Inside the function, warm invocations (decode_ms, lookup_ms, write_ms, total_ms from its log): {:?}\n", d.warm_breakdowns);
    let _ = writeln!(
        report,
        "Statements per invocation (pg_stat_statements: kind, calls, server execution ms):\n"
    );
    let _ = writeln!(report, "- cold invocation: {:?}", d.cold_statements);
    let _ = writeln!(
        report,
        "- warm invocation, warm cache: {:?}",
        d.warm_statements
    );
    let _ = writeln!(
        report,
        "- warm invocation, cold cache: {:?}\n",
        cold.cold_cache_statements
    );
}

/// Both sinks against the database alone, and the producer floor.
fn kafka_section(report: &mut String, k: &KafkaRuns) {
    let kafka_ratios = paired(&k.both_sinks_times, &k.postgres_only_times);
    let _ = writeln!(
        report,
        "SINKS=postgres,kafka (a local tansu broker, 4 partitions): warm invocation {:.1} ms against {:.1} ms with postgres alone; median of {RUNS} paired ratios **{:.2}x** {:?}; produce_ms from the log {:?}; all runs (ms) both {:?}, postgres alone {:?}\n",
        ms(median(&k.both_sinks_times)),
        ms(median(&k.postgres_only_times)),
        median_ratio(&kafka_ratios),
        rounded(&kafka_ratios),
        k.produce_ms,
        times(&k.both_sinks_times),
        times(&k.postgres_only_times),
    );
    let _ = writeln!(
        report,
        "Inside the function with both sinks (decode_ms, write_ms, enqueue_ms, produce_ms, total_ms from its log): {:?}\n",
        k.both_breakdowns
    );
    let floor_ratios: Vec<f64> = k
        .producer_floor_times
        .iter()
        .zip(&k.postgres_only_times)
        .map(|(floor, postgres)| {
            (postgres.as_secs_f64() + floor.as_secs_f64()) / postgres.as_secs_f64()
        })
        .collect();
    let _ = writeln!(
        report,
        "Producer floor (the same 10,000 records, as the function builds them, sent by a bare librdkafka producer with its settings, first send to last acknowledgement): median {:.1} ms {:?}; (postgres alone + producer floor) / postgres alone, median of {RUNS} paired ratios **{:.2}x** {:?}\n",
        ms(median(&k.producer_floor_times)),
        times(&k.producer_floor_times),
        median_ratio(&floor_ratios),
        rounded(&floor_ratios),
    );
}

/// Start-up, memory and the binary's size.
fn process_section(report: &mut String, d: &DatabaseRuns, k: &KafkaRuns, cold: &ColdRuns) {
    let restarts = &cold.restarts;
    let _ = writeln!(report, "| process | figure |");
    let _ = writeln!(report, "|---|---|");
    let _ = writeln!(
        report,
        "| start-up, process start to first /next | first start {:.1} ms; then {:.1} ms, median of {} more starts (min {:.1}, max {:.1}) |",
        ms(cold.first_startup),
        ms(median(restarts)),
        restarts.len(),
        ms(*restarts.iter().min().expect("restarts")),
        ms(*restarts.iter().max().expect("restarts")),
    );
    let _ = writeln!(
        report,
        "| start-up with the producer configured (SINKS=postgres,kafka) | {:.1} ms |",
        ms(k.startup)
    );
    let _ = writeln!(
        report,
        "| peak RSS with the producer, after {} invocations | {} |",
        1 + RUNS,
        megabytes(k.rss_kib)
    );
    let _ = writeln!(
        report,
        "| peak RSS after {} invocations of {:.1} MB events | {} |",
        1 + 2 * RUNS,
        d.event_size as f64 / 1e6,
        megabytes(d.rss_kib)
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
}
