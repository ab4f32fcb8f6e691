//! The mapping's loop: read records, cut batches, invoke the function, then commit, redeliver,
//! retry or give up as [`crate::rules`] decides. One poller: invocations are sequential and a
//! batch being retried holds back new batches, as a mapping with one poller does.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use crate::batch::{Batch, Cut, EventSource, Pending, Record, SourceRecord, TopicPartition};
use crate::clock::{millis, now_ms};
use crate::filter::Filter;
use crate::function::Function;
use crate::on_failure::destination::Destination;
use crate::rules::{
    decide, judge, on_failure_record, Condition, Discarded, FailureContext, Invocation, Settings,
    TrackedBatch, Verdict,
};
use crate::source::file_topic::FileTopic;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Where records come from.
pub enum Source {
    /// A file topic.
    File(FileTopic),
    /// The records of an on-failure document's payload.
    Payload(crate::source::payload::PayloadSource),
    /// A broker.
    #[cfg(feature = "kafka")]
    Kafka(crate::source::kafka::KafkaSource),
}

impl Source {
    fn partitions(&self) -> Vec<TopicPartition> {
        match self {
            Self::File(topic) => topic.topic_partitions(),
            Self::Payload(payload) => payload.topic_partitions(),
            #[cfg(feature = "kafka")]
            Self::Kafka(kafka) => kafka.topic_partitions(),
        }
    }

    fn start_offsets(&self) -> BTreeMap<TopicPartition, i64> {
        match self {
            Self::File(topic) => topic
                .topic_partitions()
                .into_iter()
                .map(|p| (p, 0))
                .collect(),
            Self::Payload(payload) => payload.start_offsets(),
            #[cfg(feature = "kafka")]
            Self::Kafka(kafka) => kafka.start_offsets(),
        }
    }

    #[cfg_attr(not(feature = "kafka"), allow(unused_variables))]
    async fn poll(&mut self, wait: Duration, max: usize) -> Result<Vec<SourceRecord>, Error> {
        match self {
            Self::File(topic) => {
                let records = topic.poll();
                if records.is_empty() {
                    tokio::time::sleep(wait.min(Duration::from_millis(50))).await;
                }
                // Everything at once: the batching cuts it to size.
                Ok(records)
            }
            Self::Payload(payload) => Ok(payload.poll()),
            #[cfg(feature = "kafka")]
            Self::Kafka(kafka) => kafka.poll(wait, max).await,
        }
    }

    #[cfg_attr(not(feature = "kafka"), allow(unused_variables))]
    fn commit(&mut self, offsets: &BTreeMap<TopicPartition, i64>) -> Result<(), Error> {
        match self {
            // The run keeps a file topic's offsets; nothing outlives it.
            Self::File(_) | Self::Payload(_) => Ok(()),
            #[cfg(feature = "kafka")]
            Self::Kafka(kafka) => kafka.commit(offsets),
        }
    }

    fn end_offsets(&self) -> Result<BTreeMap<TopicPartition, i64>, Error> {
        match self {
            Self::File(topic) => Ok(topic.end_offsets()),
            Self::Payload(payload) => Ok(payload.end_offsets()),
            #[cfg(feature = "kafka")]
            Self::Kafka(kafka) => kafka.end_offsets(),
        }
    }
}

/// How the run goes, beyond the mapping's own settings.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The mapping's settings.
    pub settings: Settings,
    /// What the events say about their source.
    pub event_source: EventSource,
    /// The function's timeout: each invocation's deadline.
    pub timeout: Duration,
    /// Keep polling after catching up, until interrupted.
    pub follow: bool,
    /// The wait before the first retry of a failed batch; it doubles up to `max_backoff`.
    pub backoff: Duration,
    /// The longest wait between retries.
    pub max_backoff: Duration,
    /// Draw a progress bar.
    pub progress: bool,
    /// `FilterCriteria` patterns: records matching none are committed undelivered.
    pub filters: Vec<String>,
    /// Invocations in flight across the pollers of one mapping.
    pub concurrency: Arc<Concurrency>,
}

/// Invocations in flight now, and the most seen at once.
#[derive(Debug, Default)]
pub struct Concurrency {
    in_flight: AtomicU64,
    most: AtomicU64,
}

impl Concurrency {
    fn start(&self) {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(now, Ordering::SeqCst);
    }

    fn end(&self) {
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
    }

    /// The most invocations that were in flight at once.
    pub fn most(&self) -> u64 {
        self.most.load(Ordering::SeqCst)
    }
}

impl RunOptions {
    /// Options with the defaults: 30 s timeout, 200 ms backoff doubling to 5 s, no follow.
    pub fn new(settings: Settings, event_source: EventSource) -> Self {
        Self {
            settings,
            event_source,
            timeout: Duration::from_secs(30),
            follow: false,
            backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(5),
            progress: false,
            filters: Vec::new(),
            concurrency: Arc::new(Concurrency::default()),
        }
    }
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunSummary {
    /// Records delivered to the function at least once.
    pub records_delivered: u64,
    /// Invocations made.
    pub invocations: u64,
    /// Invocations of a batch that had been invoked before (whole, redelivered or bisected).
    pub retries: u64,
    /// Deliveries of a record that had been delivered before.
    pub duplicates_redelivered: u64,
    /// Partial batch responses.
    pub partial_failures: u64,
    /// Errors, timeouts, crashes, bad responses: the whole batch failed.
    pub batch_failures: u64,
    /// Batches given up on.
    pub on_failure_batches: u64,
    /// Records given up on.
    pub on_failure_records: u64,
    /// Records that matched no filter: committed, never delivered.
    pub filtered: u64,
    /// Pollers that ran, and the most invocations in flight at once.
    pub pollers: u64,
    /// See `pollers`.
    pub concurrency_reached: u64,
    /// Times the function process was started.
    pub function_starts: u32,
    /// Per partition: where reading started, what is committed, and the end of the partition.
    pub partitions: BTreeMap<TopicPartition, PartitionOffsets>,
}

/// Where one partition stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PartitionOffsets {
    /// Where reading started.
    pub start: i64,
    /// The next offset to read, as committed.
    pub committed: i64,
    /// The offset after the partition's last record.
    pub end: i64,
}

impl PartitionOffsets {
    /// Records not yet committed.
    pub fn lag(&self) -> i64 {
        (self.end - self.committed).max(0)
    }
}

impl RunSummary {
    /// Adds another poller's summary to this one.
    fn absorb(&mut self, other: RunSummary) {
        self.records_delivered += other.records_delivered;
        self.invocations += other.invocations;
        self.retries += other.retries;
        self.duplicates_redelivered += other.duplicates_redelivered;
        self.partial_failures += other.partial_failures;
        self.batch_failures += other.batch_failures;
        self.on_failure_batches += other.on_failure_batches;
        self.on_failure_records += other.on_failure_records;
        self.filtered += other.filtered;
        self.function_starts += other.function_starts;
        self.pollers += other.pollers;
        self.partitions.extend(other.partitions);
    }

    /// The summary as the run prints it.
    pub fn render(&self, destination: &Destination) -> String {
        let mut text = String::new();
        let mut line = |label: &str, value: String| {
            let _ = writeln!(text, "  {label:<24}{value}");
        };
        line("records delivered", self.records_delivered.to_string());
        if self.filtered > 0 {
            line(
                "filtered out",
                format!(
                    "{} (matched no filter; committed, not delivered)",
                    self.filtered
                ),
            );
        }
        line("invocations", self.invocations.to_string());
        line(
            "retries",
            format!(
                "{} ({} partial batch responses, {} whole-batch failures)",
                self.retries, self.partial_failures, self.batch_failures
            ),
        );
        line(
            "duplicates redelivered",
            self.duplicates_redelivered.to_string(),
        );
        line(
            "on-failure batches",
            format!(
                "{} ({} records) -> {}",
                self.on_failure_batches,
                self.on_failure_records,
                destination.describe()
            ),
        );
        line("function starts", self.function_starts.to_string());
        line(
            "pollers",
            format!(
                "{} (at most {} invocations at once)",
                self.pollers, self.concurrency_reached
            ),
        );
        let mut text = format!("esm-local summary\n{text}  final lag per partition\n");
        for (partition, progress) in &self.partitions {
            let _ = writeln!(
                text,
                "    {:<22}lag {:<6} committed {} of {} (started at {})",
                partition.to_string(),
                progress.lag(),
                progress.committed,
                progress.end,
                progress.start
            );
        }
        text
    }
}

struct Run<'a> {
    options: &'a RunOptions,
    source: &'a mut Source,
    function: &'a mut Function,
    destination: &'a Destination,
    summary: RunSummary,
    /// Per partition, the offset after the last record ever delivered: below it, a delivery
    /// is a duplicate.
    delivered_to: BTreeMap<TopicPartition, i64>,
    bar: ProgressBar,
    request_ids: u64,
    filter: Filter,
    /// Per partition, the offset after its last filtered-out record, to commit once nothing
    /// before it is waiting.
    filtered_to: BTreeMap<TopicPartition, i64>,
}

impl Run<'_> {
    fn say(&self, line: String) {
        if self.bar.is_hidden() {
            eprintln!("{line}");
        } else {
            self.bar.println(line);
        }
    }

    #[cfg_attr(not(feature = "kafka"), allow(unused_variables))]
    fn commit(&mut self, offsets: &BTreeMap<TopicPartition, i64>) -> Result<(), Error> {
        // Commits only move forward.
        let forward: BTreeMap<TopicPartition, i64> = offsets
            .iter()
            .filter(|(p, &offset)| {
                self.summary
                    .partitions
                    .get(*p)
                    .is_none_or(|progress| offset > progress.committed)
            })
            .map(|(p, &o)| (p.clone(), o))
            .collect();
        self.source.commit(&forward)?;
        for (p, offset) in forward {
            self.summary.partitions.entry(p).or_default().committed = offset;
        }
        self.refresh_bar();
        Ok(())
    }

    /// Commits past filtered-out records of partitions that have nothing waiting before them
    /// (this runs between invocations, so no batch of them is in flight).
    fn commit_filtered(&mut self, pending: &Pending) -> Result<(), Error> {
        let ready: BTreeMap<TopicPartition, i64> = self
            .filtered_to
            .iter()
            .filter(|(partition, to)| {
                pending
                    .first_offset(partition)
                    .is_none_or(|first| first >= **to)
            })
            .map(|(partition, to)| (partition.clone(), *to))
            .collect();
        for partition in ready.keys() {
            self.filtered_to.remove(partition);
        }
        self.commit(&ready)
    }

    fn refresh_ends(&mut self) -> Result<(), Error> {
        for (p, end) in self.source.end_offsets()? {
            self.summary.partitions.entry(p).or_default().end = end;
        }
        self.refresh_bar();
        Ok(())
    }

    fn caught_up(&self) -> bool {
        self.summary
            .partitions
            .values()
            .all(|progress| progress.committed >= progress.end)
    }

    fn refresh_bar(&self) {
        let (done, total) = self
            .summary
            .partitions
            .values()
            .fold((0, 0), |(done, total), p| {
                (
                    done + (p.committed - p.start).max(0),
                    total + (p.end - p.start).max(0),
                )
            });
        // Both are sums of non-negative terms.
        self.bar.set_length(total.unsigned_abs());
        self.bar.set_position(done.unsigned_abs());
        self.bar.set_message(format!(
            "{} invocations, {} retries, {} on-failure",
            self.summary.invocations, self.summary.retries, self.summary.on_failure_batches
        ));
    }

    async fn give_up(&mut self, discarded: Discarded) -> Result<(), Error> {
        self.request_ids += 1;
        let request_id = format!("esm-local-{:06}", self.request_ids);
        let record = on_failure_record(
            &discarded,
            &FailureContext {
                request_id: &request_id,
                function_arn: &self.function.arn(),
                source: &self.options.event_source,
                now_ms: now_ms(),
            },
            self.destination.wants_payload(),
        );
        self.destination.send(&record).await?;
        self.summary.on_failure_batches += 1;
        self.summary.on_failure_records += discarded.batch.len() as u64;
        let ranges: Vec<String> = discarded
            .batch
            .partitions()
            .map(|p| {
                let records = discarded.batch.records_of(p);
                let first = records.first().map_or(0, |r| r.offset);
                let last = records.last().map_or(0, |r| r.offset);
                format!("{p} offsets {first}..={last}")
            })
            .collect();
        self.say(format!(
            "on-failure ({}): {} -> {}",
            discarded.condition.as_str(),
            ranges.join(", "),
            self.destination.describe()
        ));
        self.commit(&discarded.batch.next_offsets())
    }

    /// Reads until a batch can be cut: `BatchSize` records, a full payload, or the batching
    /// window closed on at least one record. `None` when caught up and not following.
    async fn next_batch(
        &mut self,
        pending: &mut Pending,
        stop: &AtomicBool,
    ) -> Result<Option<Batch>, Error> {
        let settings = &self.options.settings;
        // Records left over from the last cut have waited a whole window already.
        let mut window_opened: Option<Instant> = (!pending.is_empty())
            .then(|| Instant::now().checked_sub(settings.batching_window))
            .flatten();
        loop {
            self.commit_filtered(pending)?;
            if stop.load(Ordering::Relaxed) {
                return Ok(None);
            }
            let full = pending.len() >= settings.batch_size
                || pending.payload_bytes() >= settings.max_payload_bytes;
            let window_closed =
                window_opened.is_some_and(|t| t.elapsed() >= settings.batching_window);
            if !pending.is_empty() && (full || window_closed) {
                match pending.cut(
                    &self.options.event_source,
                    settings.batch_size,
                    settings.max_payload_bytes,
                ) {
                    Cut::Batch(batch) => return Ok(Some(batch)),
                    Cut::Oversized(batch) => {
                        self.give_up(Discarded {
                            batch,
                            condition: Condition::MaximumPayloadSizeExceeded,
                            invocations: 0,
                            function_error: false,
                        })
                        .await?;
                        continue;
                    }
                    Cut::Nothing => {}
                }
            }
            if pending.is_empty() {
                self.refresh_ends()?;
                if self.caught_up() && !self.options.follow {
                    return Ok(None);
                }
            }
            let wait = match window_opened {
                Some(opened) => settings.batching_window.saturating_sub(opened.elapsed()),
                None => Duration::from_millis(200),
            };
            let room = settings.batch_size.saturating_sub(pending.len()).max(1);
            let records = self.source.poll(wait, room).await?;
            if !records.is_empty() && window_opened.is_none() {
                window_opened = Some(Instant::now());
            }
            for record in &records {
                if self.filter.keeps(record) {
                    pending.push(Record::new(record));
                } else {
                    self.summary.filtered += 1;
                    self.filtered_to.insert(
                        TopicPartition::new(record.topic.clone(), record.partition),
                        record.offset + 1,
                    );
                }
            }
            self.commit_filtered(pending)?;
        }
    }

    async fn invoke(&mut self, mut attempt: TrackedBatch) -> Result<Vec<TrackedBatch>, Error> {
        // Records past MaximumRecordAgeInSeconds are not delivered.
        if let Some(max_age) = self.options.settings.maximum_record_age {
            let (fresh, expired) = attempt.batch.split_expired(now_ms(), millis(max_age));
            if !expired.is_empty() {
                let untouched: BTreeMap<TopicPartition, i64> = expired
                    .next_offsets()
                    .into_iter()
                    .filter(|(p, _)| fresh.records_of(p).is_empty())
                    .collect();
                self.give_up(Discarded {
                    batch: expired,
                    condition: Condition::RecordAgeExceeded,
                    invocations: attempt.invocations,
                    function_error: false,
                })
                .await?;
                self.commit(&untouched)?;
                if fresh.is_empty() {
                    return Ok(vec![]);
                }
                attempt.batch = fresh;
            }
        }
        if attempt.invocations > 0 {
            self.summary.retries += 1;
        }
        for record in attempt.batch.records() {
            let delivered = self
                .delivered_to
                .entry(record.partition.clone())
                .or_insert(i64::MIN);
            if record.offset < *delivered {
                self.summary.duplicates_redelivered += 1;
            } else {
                self.summary.records_delivered += 1;
                *delivered = record.offset + 1;
            }
        }
        attempt.invocations += 1;
        self.summary.invocations += 1;
        let event = attempt.batch.event_json(&self.options.event_source);
        self.options.concurrency.start();
        let invocation = self.function.invoke(event, self.options.timeout).await;
        self.options.concurrency.end();
        let invocation = invocation?;
        self.summary.function_starts = self.function.starts();
        let verdict = judge(&attempt.batch, &invocation, &self.options.settings);
        match &verdict {
            Verdict::Success => {}
            Verdict::Partial(from) => {
                self.summary.partial_failures += 1;
                let from: Vec<String> = from
                    .iter()
                    .map(|(p, o)| format!("{p} from offset {o}"))
                    .collect();
                self.say(format!(
                    "partial batch response (invocation {} of this batch): redelivering {}",
                    attempt.invocations,
                    from.join(", ")
                ));
            }
            Verdict::Failed(failure) => {
                self.summary.batch_failures += 1;
                let mut why = failure.to_string();
                why.truncate(300);
                self.say(format!(
                    "whole batch of {} records failed (invocation {} of this batch): {why}",
                    attempt.batch.len(),
                    attempt.invocations
                ));
                if matches!(invocation, Invocation::Crashed(_) | Invocation::Timeout) {
                    self.say("starting a new execution environment".into());
                }
            }
        }
        let decision = decide(attempt, &verdict, &self.options.settings);
        self.commit(&decision.commit)?;
        if let Some(discarded) = decision.discarded {
            self.give_up(discarded).await?;
        }
        Ok(decision.retry)
    }
}

/// Runs the mapping until caught up (or, with `follow`, until `stop` is set).
pub async fn run(
    options: &RunOptions,
    source: &mut Source,
    function: &mut Function,
    destination: &Destination,
    stop: Arc<AtomicBool>,
) -> Result<RunSummary, Error> {
    options.settings.validate()?;
    let start = source.start_offsets();
    let mut summary = RunSummary::default();
    for partition in source.partitions() {
        let at = start.get(&partition).copied().unwrap_or_default();
        summary.partitions.insert(
            partition,
            PartitionOffsets {
                start: at,
                committed: at,
                end: at,
            },
        );
    }
    let bar = if options.progress {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} records committed · {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    } else {
        ProgressBar::hidden()
    };
    let mut run = Run {
        options,
        source,
        function,
        destination,
        summary,
        delivered_to: BTreeMap::new(),
        bar,
        request_ids: 0,
        filter: Filter::new(&options.filters)?,
        filtered_to: BTreeMap::new(),
    };
    run.refresh_ends()?;
    let mut pending = Pending::default();
    let mut queue: VecDeque<TrackedBatch> = VecDeque::new();
    let mut backoff = options.backoff;
    loop {
        let attempt = match queue.pop_front() {
            Some(attempt) => attempt,
            None => match run.next_batch(&mut pending, &stop).await? {
                Some(batch) => TrackedBatch::new(batch),
                None => break,
            },
        };
        let retry = run.invoke(attempt).await?;
        if retry.is_empty() {
            backoff = options.backoff;
        } else {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(options.max_backoff);
            for attempt in retry.into_iter().rev() {
                queue.push_front(attempt);
            }
        }
    }
    run.refresh_ends()?;
    run.bar.finish_and_clear();
    run.summary.function_starts = run.function.starts();
    run.summary.pollers = 1;
    run.summary.concurrency_reached = options.concurrency.most();
    Ok(run.summary)
}

/// Runs one mapping with several pollers, as Lambda's provisioned mode does: each poller has
/// its own share of the partitions (`sources[i]`) and its own execution environment
/// (`functions[i]`), and they invoke concurrently. A partition belongs to one poller, so no two
/// invocations in flight ever hold the same partition, and each partition keeps its order.
/// (Lambda also rebalances partitions as it scales pollers between its minimum and maximum;
/// here the share is fixed for the run.)
pub async fn run_pollers(
    options: &RunOptions,
    sources: &mut [Source],
    functions: &mut [Function],
    destination: &Destination,
    stop: Arc<AtomicBool>,
) -> Result<RunSummary, Error> {
    let runs = sources
        .iter_mut()
        .zip(functions.iter_mut())
        .map(|(source, function)| run(options, source, function, destination, stop.clone()));
    let mut total = RunSummary::default();
    for summary in futures::future::join_all(runs).await {
        total.absorb(summary?);
    }
    total.concurrency_reached = options.concurrency.most();
    Ok(total)
}
