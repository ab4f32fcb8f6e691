//! `esm-local` driving a function it knows nothing about: the `probe` example, written with
//! `aws_lambda_events` as most Rust Kafka functions are, through the mapping's rules.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use esm_local::batch::EventSource;
use esm_local::function::Function;
use esm_local::on_failure::destination::Destination;
use esm_local::rules::Settings;
use esm_local::runner::{run, RunOptions, Source};
use esm_local::source::file_topic::{FileTopic, LineFormat};
use serde_json::Value;

/// `cargo test` builds the examples next to the test binaries: target/<profile>/examples/.
fn probe() -> PathBuf {
    let test_binary = std::env::current_exe().unwrap();
    let profile_dir = test_binary.parent().and_then(Path::parent).unwrap();
    profile_dir.join("examples").join("probe")
}

async fn run_probe(
    lines: &str,
    partitions: i32,
    settings: Settings,
    on_failure: &Path,
    log: &Path,
) -> esm_local::runner::RunSummary {
    run_probe_filtered(lines, partitions, settings, on_failure, log, &[]).await
}

async fn run_probe_filtered(
    lines: &str,
    partitions: i32,
    settings: Settings,
    on_failure: &Path,
    log: &Path,
    filters: &[&str],
) -> esm_local::runner::RunSummary {
    let mut topic = Source::File(FileTopic::from_lines(
        "demo",
        partitions,
        &LineFormat::Values { key_field: None },
        lines,
        esm_local::clock::now_ms(),
    ));
    let mut function = Function::spawn_with_env(
        probe(),
        vec![("PROBE_LOG".into(), log.display().to_string())],
    )
    .await
    .unwrap();
    let mut options = RunOptions::new(
        settings,
        EventSource {
            event_source_arn: None,
            bootstrap_servers: "localhost:9092".into(),
        },
    );
    options.timeout = Duration::from_secs(10);
    options.backoff = Duration::from_millis(50);
    options.filters = filters.iter().map(|f| f.to_string()).collect();
    let destination = Destination::File(on_failure.to_path_buf());
    let summary = run(
        &options,
        &mut topic,
        &mut function,
        &destination,
        Arc::new(AtomicBool::new(false)),
    )
    .await
    .unwrap();
    function.stop().await;
    summary
}

#[tokio::test]
async fn a_reported_record_is_redelivered_then_given_up_with_its_payload() {
    let dir = tempfile::tempdir().unwrap();
    let (on_failure, log) = (
        dir.path().join("on-failure.jsonl"),
        dir.path().join("probe.log"),
    );
    let summary = run_probe(
        "a\nb\nfail\nc\n",
        1,
        Settings {
            batch_size: 10,
            batching_window: Duration::ZERO,
            maximum_retry_attempts: Some(1),
            ..Settings::default()
        },
        &on_failure,
        &log,
    )
    .await;

    // The first delivery accepts offsets 0 and 1 and reports offset 2; the retry starts at
    // offset 2, is reported again, and the mapping gives up on offsets 2 and 3.
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "demo-0 0 a\ndemo-0 1 b\n"
    );
    assert_eq!(summary.invocations, 2);
    assert_eq!(summary.retries, 1);
    assert_eq!(summary.partial_failures, 2);
    assert_eq!(summary.on_failure_batches, 1);
    assert_eq!(summary.on_failure_records, 2);
    assert_eq!(summary.function_starts, 1);
    let progress = summary.partitions.values().next().unwrap();
    assert_eq!(
        (progress.committed, progress.end, progress.lag()),
        (4, 4, 0)
    );

    let records: Vec<Value> = std::fs::read_to_string(&on_failure)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(records.len(), 1);
    let record = &records[0];
    assert_eq!(
        record["requestContext"]["condition"],
        "RetryAttemptsExhausted"
    );
    assert_eq!(record["requestContext"]["approximateInvokeCount"], 2);
    assert_eq!(
        record["requestContext"]["functionArn"],
        "arn:aws:lambda:us-east-1:000000000000:function:probe"
    );
    let info = &record["KafkaBatchInfo"]["recordsInfo"]["demo-0"];
    assert_eq!(info["firstRecordOffset"], "2");
    assert_eq!(info["lastRecordOffset"], "3");
    // The payload is the event of the last attempt, as the function received it.
    let payload: Value = serde_json::from_str(record["payload"].as_str().unwrap()).unwrap();
    assert_eq!(payload["eventSource"], "SelfManagedKafka");
    let offsets: Vec<i64> = payload["records"]["demo-0"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["offset"].as_i64().unwrap())
        .collect();
    assert_eq!(offsets, [2, 3]);
}

#[tokio::test]
async fn partitions_without_a_failure_are_committed_and_never_redelivered() {
    let dir = tempfile::tempdir().unwrap();
    let (on_failure, log) = (
        dir.path().join("on-failure.jsonl"),
        dir.path().join("probe.log"),
    );
    // Unkeyed lines go round-robin: demo-0 gets a, fail, e; demo-1 gets b, d.
    let summary = run_probe(
        "a\nb\nfail\nd\ne\n",
        2,
        Settings {
            batch_size: 10,
            batching_window: Duration::ZERO,
            maximum_retry_attempts: Some(0),
            ..Settings::default()
        },
        &on_failure,
        &log,
    )
    .await;
    let mut accepted: Vec<String> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    accepted.sort();
    assert_eq!(accepted, ["demo-0 0 a", "demo-1 0 b", "demo-1 1 d"]);
    assert_eq!(summary.invocations, 1);
    assert_eq!(summary.on_failure_records, 2, "demo-0 offsets 1 and 2");
    assert_eq!(summary.duplicates_redelivered, 0);
}

#[tokio::test]
async fn records_matching_no_filter_never_reach_the_function_and_are_committed() {
    let dir = tempfile::tempdir().unwrap();
    let (on_failure, log) = (
        dir.path().join("on-failure.jsonl"),
        dir.path().join("probe.log"),
    );
    let lines = "{\"k\":\"keep\",\"n\":1}\n{\"k\":\"drop\",\"n\":2}\n{\"k\":\"keep\",\"n\":3}\n{\"k\":\"drop\",\"n\":4}\n";
    let summary = run_probe_filtered(
        lines,
        1,
        Settings {
            batch_size: 10,
            batching_window: Duration::ZERO,
            ..Settings::default()
        },
        &on_failure,
        &log,
        &[r#"{"value": {"k": ["keep"]}}"#],
    )
    .await;
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "demo-0 0 {\"k\":\"keep\",\"n\":1}\ndemo-0 2 {\"k\":\"keep\",\"n\":3}\n"
    );
    assert_eq!(summary.filtered, 2);
    assert_eq!(summary.records_delivered, 2);
    assert_eq!(summary.invocations, 1);
    // The consumer group commits past the filtered records, the last one included.
    let progress = summary.partitions.values().next().unwrap();
    assert_eq!(
        (progress.committed, progress.end, progress.lag()),
        (4, 4, 0)
    );
}

/// Invocations that overlap in time hold different partitions, one partition per batch; the
/// probe wrote each invocation's start, end and partitions to `invocations`.
fn assert_no_partition_shared(invocations: &std::path::Path) {
    let spans: Vec<(u128, u128, String)> = std::fs::read_to_string(invocations)
        .unwrap()
        .lines()
        .map(|line| {
            let mut fields = line.split(' ');
            let start = fields.next().unwrap().parse().unwrap();
            let end = fields.next().unwrap().parse().unwrap();
            (start, end, fields.next().unwrap().to_owned())
        })
        .collect();
    assert_eq!(spans.len(), 20);
    for (i, a) in spans.iter().enumerate() {
        for b in &spans[i + 1..] {
            let overlap = a.0 < b.1 && b.0 < a.1;
            assert!(
                !(overlap && a.2 == b.2),
                "{a:?} and {b:?} overlap on one partition"
            );
        }
    }
    assert!(
        spans.iter().all(|s| !s.2.contains(',')),
        "one partition per poller, so per batch"
    );
}

/// Four pollers over a four-partition topic: invocations overlap, but never two at once on
/// the same partition, and each partition is delivered in offset order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pollers_invoke_concurrently_and_never_share_a_partition() {
    let dir = tempfile::tempdir().unwrap();
    let (log, invocations) = (
        dir.path().join("probe.log"),
        dir.path().join("invocations.log"),
    );
    let lines: String = (0..40).map(|n| format!("r{n}\n")).collect();
    let topic = FileTopic::from_lines(
        "demo",
        4,
        &LineFormat::Values { key_field: None },
        &lines,
        esm_local::clock::now_ms(),
    );
    let mut sources: Vec<Source> = (0..4)
        .map(|poller| Source::File(topic.owning(&std::collections::BTreeSet::from([poller]))))
        .collect();
    let mut functions = Vec::new();
    for _ in 0..4 {
        functions.push(
            Function::spawn_with_env(
                probe(),
                vec![
                    ("PROBE_LOG".into(), log.display().to_string()),
                    (
                        "PROBE_INVOCATIONS".into(),
                        invocations.display().to_string(),
                    ),
                    ("PROBE_SLEEP_MS".into(), "40".into()),
                ],
            )
            .await
            .unwrap(),
        );
    }
    let mut options = RunOptions::new(
        Settings {
            batch_size: 2,
            batching_window: Duration::ZERO,
            ..Settings::default()
        },
        EventSource {
            event_source_arn: None,
            bootstrap_servers: "localhost:9092".into(),
        },
    );
    options.timeout = Duration::from_secs(10);
    let summary = esm_local::runner::run_pollers(
        &options,
        &mut sources,
        &mut functions,
        &Destination::None,
        Arc::new(AtomicBool::new(false)),
    )
    .await
    .unwrap();
    for function in &mut functions {
        function.stop().await;
    }

    assert_eq!(summary.pollers, 4);
    assert_eq!(summary.records_delivered, 40);
    assert_eq!(summary.invocations, 20, "five batches of two per partition");
    assert!(summary.concurrency_reached > 1, "{summary:?}");
    assert!(summary.partitions.values().all(|p| p.lag() == 0));

    assert_no_partition_shared(&invocations);
    // Each partition's records arrived in offset order.
    let accepted = std::fs::read_to_string(&log).unwrap();
    for partition in 0..4 {
        let offsets: Vec<i64> = accepted
            .lines()
            .filter(|line| line.starts_with(&format!("demo-{partition} ")))
            .map(|line| line.split(' ').nth(1).unwrap().parse().unwrap())
            .collect();
        assert_eq!(offsets, (0..10).collect::<Vec<i64>>(), "demo-{partition}");
    }
}
