//! The pure path of an invocation: parse the MSK event JSON, decode every record (base64 and
//! order JSON) and plan the writes, for batches of 100, 1,000 and 10,000 records (the last just
//! under the 6 MB payload limit). Reported per record and per byte of event.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use msk_order_enricher::event::{self, KafkaEvent};
use msk_order_enricher::plan::{self, PoisonPolicy};
use xtask::events::{build_event, synthetic_orders};

fn event_bytes(records: usize) -> Vec<u8> {
    build_event(
        "orders",
        4,
        synthetic_orders(records, 0, 500),
        0,
        1_700_000_000_000,
    )
    .into_bytes()
}

fn decode_and_plan(bytes: &[u8]) -> plan::Plan {
    let event: KafkaEvent = serde_json::from_slice(bytes).expect("a valid event");
    plan::plan(event::decode(event), PoisonPolicy::DeadLetter)
}

fn pure_path(c: &mut Criterion) {
    for records in [100usize, 1_000, 10_000] {
        let bytes = event_bytes(records);
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

/// How the event reaches `decode`: lambda_runtime deserializes the body through
/// serde_path_to_error; the alternative takes it as one raw JSON value and parses that text.
fn runtime_deserialization(c: &mut Criterion) {
    let bytes = event_bytes(10_000);
    let mut group = c.benchmark_group("deserialize_10000");
    group.throughput(Throughput::Elements(10_000));
    group.bench_function("serde_path_to_error_from_slice", |b| {
        b.iter(|| {
            let de = &mut serde_json::Deserializer::from_slice(&bytes);
            let event: KafkaEvent = serde_path_to_error::deserialize(de).expect("valid");
            event
        })
    });
    group.bench_function("raw_value_then_from_str", |b| {
        b.iter(|| {
            let de = &mut serde_json::Deserializer::from_slice(&bytes);
            let raw: Box<serde_json::value::RawValue> =
                serde_path_to_error::deserialize(de).expect("valid");
            let event: KafkaEvent = serde_json::from_str(raw.get()).expect("valid");
            event
        })
    });
    group.bench_function("from_slice", |b| {
        b.iter(|| serde_json::from_slice::<KafkaEvent>(&bytes).expect("valid"))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(4));
    targets = pure_path, runtime_deserialization
}
criterion_main!(benches);
