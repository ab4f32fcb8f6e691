//! The pure path of an invocation: parse the MSK event JSON, decode every record (base64 and
//! order JSON) and plan the writes, for batches of 100, 1,000 and 10,000 records (the last just
//! under the 6 MB payload limit). Reported per record and per byte of event. It starts where the
//! handler starts: from the body's bytes, through `handler::parse_event` (the handler receives
//! the body unparsed, see `src/raw_body.rs`; the runtime's own ways of deserializing it are in
//! `deserialize_10000`).
//! `output_records` builds the output topic's records of a 10,000-record plan, and
//! `distinct_customers` lists its customers once each.

use criterion::{criterion_group, BenchmarkId, Criterion, Throughput};
use msk_order_enricher::config::PoisonPolicy;
use msk_order_enricher::decode::event::{self, KafkaEvent};
use msk_order_enricher::enrich::location::{Location, Locations};
use msk_order_enricher::handler;
use msk_order_enricher::kafka::records;
use msk_order_enricher::plan;
use test_support::events::{build_event, synthetic_orders};

fn event_text(records: usize) -> String {
    build_event(
        "orders",
        4,
        synthetic_orders(records, 0, 500),
        0,
        1_700_000_000_000,
    )
}

/// What the handler does with an invocation's body before any I/O.
fn decode_and_plan(body: &str) -> plan::Plan {
    let event: KafkaEvent<'_> = handler::parse_event(body.as_bytes()).expect("a valid event");
    plan::plan(event::decode(event), PoisonPolicy::DeadLetter)
}

fn pure_path(c: &mut Criterion) {
    for records in [100usize, 1_000, 10_000] {
        let bytes = event_text(records);
        assert_eq!(decode_and_plan(&bytes).orders.len(), records);
        let mut by_record = c.benchmark_group("decode_and_plan/records");
        by_record.throughput(Throughput::Elements(records as u64));
        by_record.bench_with_input(BenchmarkId::from_parameter(records), &bytes, |b, bytes| {
            b.iter(|| decode_and_plan(bytes))
        });
        by_record.finish();
        let mut by_byte = c.benchmark_group("decode_and_plan/bytes");
        by_byte.throughput(Throughput::Bytes(bytes.len() as u64));
        by_byte.bench_with_input(BenchmarkId::from_parameter(records), &bytes, |b, bytes| {
            b.iter(|| decode_and_plan(bytes))
        });
        by_byte.finish();
    }
}

/// The output topic's records of a 10,000-record plan (`SINKS` with `kafka`), every customer
/// with a location: the work between the commit and the first record handed to the producer.
fn output_records(c: &mut Criterion) {
    let text = event_text(10_000);
    let plan = decode_and_plan(&text);
    let locations: Locations = plan
        .distinct_customers()
        .into_iter()
        .map(|customer| {
            let location = Location {
                address: Some(format!("{customer} Street 1, Springfield")),
                longitude: Some("-122.419416".parse().expect("a decimal")),
                latitude: Some("37.774929".parse().expect("a decimal")),
            };
            (customer.to_owned(), Some(location))
        })
        .collect();
    let refused = vec![false; plan.orders.len()];
    let mut group = c.benchmark_group("output_records");
    group.throughput(Throughput::Elements(plan.orders.len() as u64));
    group.bench_function("10000", |b| {
        b.iter(|| records::build(&plan, &locations, &refused, false))
    });
    group.finish();
}

/// The customers of a 10,000-record plan, each once (the lookup's and the cache's input), as
/// every invocation with orders computes them before it looks them up.
fn distinct_customers(c: &mut Criterion) {
    let text = event_text(10_000);
    let plan = decode_and_plan(&text);
    assert_eq!(plan.distinct_customers().len(), 500);
    let mut group = c.benchmark_group("distinct_customers");
    group.throughput(Throughput::Elements(plan.orders.len() as u64));
    group.bench_function("10000", |b| b.iter(|| plan.distinct_customers()));
    group.finish();
}

/// How the event reaches `decode`: lambda_runtime deserializes the body through
/// serde_path_to_error; the handler takes it as one raw JSON value and parses that text.
fn runtime_deserialization(c: &mut Criterion) {
    let bytes = event_text(10_000).into_bytes();
    let mut group = c.benchmark_group("deserialize_10000");
    group.throughput(Throughput::Elements(10_000));
    group.bench_function("serde_path_to_error_from_slice", |b| {
        b.iter(|| {
            let de = &mut serde_json::Deserializer::from_slice(&bytes);
            let event: KafkaEvent<'_> = serde_path_to_error::deserialize(de).expect("valid");
            event.records.len()
        })
    });
    group.bench_function("raw_value_then_from_str", |b| {
        b.iter(|| {
            let de = &mut serde_json::Deserializer::from_slice(&bytes);
            let raw: Box<serde_json::value::RawValue> =
                serde_path_to_error::deserialize(de).expect("valid");
            let event: KafkaEvent<'_> = serde_json::from_str(raw.get()).expect("valid");
            event.records.len()
        })
    });
    group.bench_function("raw_value_only", |b| {
        b.iter(|| {
            let de = &mut serde_json::Deserializer::from_slice(&bytes);
            let raw: Box<serde_json::value::RawValue> =
                serde_path_to_error::deserialize(de).expect("valid");
            raw
        })
    });
    group.bench_function("from_slice", |b| {
        b.iter(|| {
            serde_json::from_slice::<KafkaEvent<'_>>(&bytes)
                .expect("valid")
                .records
                .len()
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(4));
    targets = pure_path, output_records, distinct_customers, runtime_deserialization
}

/// `PURE_PATH_ITERATIONS=N cargo bench --bench pure_path` decodes and plans the 10,000-record
/// batch exactly N times and exits, without criterion: a fixed amount of work for instruction
/// counts (`valgrind --tool=callgrind`), which stay repeatable on a machine whose timings do not.
fn main() {
    if let Some(iterations) = std::env::var("PURE_PATH_ITERATIONS")
        .ok()
        .and_then(|n| n.parse::<usize>().ok())
    {
        let text = event_text(10_000);
        let mut orders = 0;
        for _ in 0..iterations {
            orders += std::hint::black_box(decode_and_plan(&text)).orders.len();
        }
        println!("{iterations} iterations, {orders} orders planned");
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
