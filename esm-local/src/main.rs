//! `esm-local`: run a Kafka-triggered Lambda function on your machine the way Lambda's event
//! source mapping does.
//!
//! - `esm-local run --function target/debug/my-fn --file records.jsonl --topic orders` or
//!   `esm-local run --function ... --bootstrap-servers 127.0.0.1:9092 --topic orders`: read a
//!   topic, cut batches, invoke the function binary (or a running `cargo lambda watch`), and
//!   redeliver, retry, bisect and give up as Lambda does.
//! - `esm-local produce --bootstrap-servers ... --topic orders records.jsonl`: load a file into a
//!   broker, keyed and partitioned as a Java producer would.
//! - `esm-local event --topic orders records.jsonl > event.json`: the event the mapping would
//!   send for a file topic, for `cargo lambda invoke --data-file`.
//! - `esm-local invoke --function target/debug/my-fn event.json ...`: start the function binary
//!   against a local Lambda Runtime API, invoke it with each event and print each answer.

use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{ArgMatches, Args, CommandFactory as _, FromArgMatches as _, Parser, Subcommand};
use esm_local::batch::{Cut, EventSource, Pending, Record};
use esm_local::clock::now_ms;
use esm_local::destination::Destination;
use esm_local::file_topic::{FileTopic, LineFormat};
use esm_local::function::Function;
use esm_local::rules::{Invocation, Settings};
use esm_local::runner::{self, RunOptions, Source};
use esm_local::EVENT_SOURCE_ARN;

type Error = Box<dyn std::error::Error + Send + Sync>;

#[derive(Parser)]
#[command(
    version,
    about = "Run a Kafka-triggered Lambda function locally as Lambda's event source mapping would"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Read a topic and deliver it to the function with the event source mapping's semantics.
    Run(Box<RunArgs>),
    /// Deliver on-failure documents (the S3 form, with their payload) to the function again,
    /// with the mapping's rules; exits non-zero if any record is still not accepted.
    Replay(Box<ReplayArgs>),
    /// Produce the lines of files to a Kafka topic (created if missing), keyed like `run --file`.
    Produce {
        #[arg(long)]
        bootstrap_servers: String,
        /// The topic, its partitions (when it has to be created), and how lines become records.
        #[command(flatten)]
        topic: TopicArgs,
        /// librdkafka properties, e.g. `-X security.protocol=SSL`.
        #[arg(short = 'X', long = "kafka-property", value_name = "KEY=VALUE")]
        properties: Vec<String>,
        files: Vec<PathBuf>,
    },
    /// Print a topic's records from its start, one JSON line each (partition, offset,
    /// timestamp, key, value, headers), until none has arrived for --idle-ms. Commits nothing.
    Consume {
        #[arg(long)]
        bootstrap_servers: String,
        #[arg(long)]
        topic: String,
        /// Stop when no record has arrived for this long.
        #[arg(long, default_value_t = 2000)]
        idle_ms: u64,
        /// Stop after this many records.
        #[arg(long, default_value_t = 100_000)]
        max: usize,
        /// librdkafka properties, e.g. `-X security.protocol=SSL`.
        #[arg(short = 'X', long = "kafka-property", value_name = "KEY=VALUE")]
        properties: Vec<String>,
    },
    /// Print the MSK event the mapping would send first for a file topic.
    Event {
        #[command(flatten)]
        topic: TopicArgs,
        /// Records in the event (the mapping's BatchSize; the 6 MB cap applies too).
        #[arg(long, default_value_t = 10_000)]
        batch_size: usize,
        files: Vec<PathBuf>,
    },
    /// Run the function binary against a local Runtime API and invoke it with each event file.
    Invoke {
        /// The function binary (a `bootstrap`, or what `cargo build` makes).
        #[arg(long)]
        function: PathBuf,
        /// The function timeout: the invocation deadline is this far from its start.
        #[arg(long, default_value_t = 30)]
        timeout_secs: u64,
        events: Vec<PathBuf>,
    },
}

/// A topic made of the lines of files.
#[derive(Args, Clone)]
struct TopicArgs {
    #[arg(long)]
    topic: String,
    #[arg(long, default_value_t = 3)]
    partitions: i32,
    #[command(flatten)]
    lines: LineArgs,
}

/// How lines of a file become records.
#[derive(Args, Clone)]
struct LineArgs {
    /// Lines are JSON values keyed by this field (lines without it have no key); without it
    /// (and without --key-separator) records have no key and go round-robin.
    #[arg(long, value_name = "FIELD")]
    key_field: Option<String>,
    /// Lines are `key<SEP>value`, as kcat's `-K<SEP>` (instead of keying by a JSON field).
    #[arg(long, value_name = "SEP")]
    key_separator: Option<String>,
}

impl LineArgs {
    fn format(&self) -> LineFormat {
        match &self.key_separator {
            Some(separator) => LineFormat::KeyValue {
                separator: separator.clone(),
            },
            None => LineFormat::Values {
                key_field: self.key_field.clone(),
            },
        }
    }
}

/// How to reach the function.
#[derive(Args)]
struct FunctionArgs {
    /// The function binary (a `bootstrap`, or what `cargo build` makes), run against a local
    /// Runtime API and restarted after a crash or a timeout.
    #[arg(
        long,
        conflicts_with = "invoke_url",
        required_unless_present = "invoke_url"
    )]
    function: Option<PathBuf>,
    /// Invoke a function served by `cargo lambda watch` instead, e.g. http://127.0.0.1:9000.
    #[arg(long)]
    invoke_url: Option<String>,
    /// The function's name at --invoke-url (cargo lambda watch serves it under the binary's name).
    #[arg(long, default_value = "function", requires = "invoke_url")]
    function_name: String,
    /// The function's timeout: each invocation's deadline.
    #[arg(long, default_value_t = 30)]
    timeout_secs: u64,
    /// Append the function's output (logs, metrics) to this file instead of printing it.
    #[arg(long)]
    function_log: Option<PathBuf>,
}

impl FunctionArgs {
    async fn open(&self) -> Result<Function, Error> {
        let mut function = match (&self.invoke_url, &self.function) {
            (Some(url), _) => Function::remote(url, &self.function_name),
            (None, Some(path)) => Function::spawn(path.clone()).await?,
            (None, None) => {
                return Err("give the function: --function PATH or --invoke-url URL".into())
            }
        };
        if let Some(path) = &self.function_log {
            function.log_to(path.clone());
        }
        Ok(function)
    }
}

#[derive(Args)]
struct ReplayArgs {
    /// On-failure documents: files (one document, or JSON lines), directories of them, or
    /// `s3://bucket/prefix` (feature `s3`).
    #[arg(required = true)]
    sources: Vec<String>,
    #[command(flatten)]
    function: FunctionArgs,
    /// Retries of a document's batch before it counts as still failing.
    #[arg(long, default_value_t = 2)]
    maximum_retry_attempts: u32,
    /// Append what is still failing, in the same S3 form, to this file.
    #[arg(long)]
    on_failure_file: Option<PathBuf>,
}

#[derive(Args)]
struct RunArgs {
    // --- the mapping as a template deploys it ---
    /// Read the mapping's settings from a SAM or CloudFormation template: an MSK or
    /// SelfManagedKafka event, or an AWS::Lambda::EventSourceMapping. Flags given on the
    /// command line still win.
    #[arg(long)]
    template: Option<PathBuf>,
    /// The template's Kafka event (or mapping resource) when it has several.
    #[arg(long, requires = "template")]
    event: Option<String>,
    /// Parameter values, as `sam deploy --parameter-overrides` takes them.
    #[arg(long = "parameter-overrides", value_name = "KEY=VALUE", num_args = 1.., requires = "template")]
    parameter_overrides: Vec<String>,
    /// The environment of the samconfig.toml beside the template whose parameter_overrides
    /// apply (`default` when the file exists and this is not given, as with sam deploy).
    #[arg(long, requires = "template")]
    config_env: Option<String>,

    // --- source ---
    /// A file topic: one record per line, partitioned by key (instead of a broker).
    #[arg(
        long,
        conflicts_with = "bootstrap_servers",
        required_unless_present = "bootstrap_servers"
    )]
    file: Option<PathBuf>,
    /// Partitions of the file topic.
    #[arg(long, default_value_t = 3)]
    partitions: i32,
    #[command(flatten)]
    lines: LineArgs,
    /// A Kafka-compatible broker (Apache Kafka, MSK, Redpanda, tansu).
    #[arg(long)]
    bootstrap_servers: Option<String>,
    /// Topic(s) to read; repeat for several (a file topic takes the first).
    #[arg(long = "topic", required_unless_present = "template")]
    topics: Vec<String>,
    /// The consumer group whose committed offsets say where to resume.
    #[arg(long, default_value = "esm-local")]
    consumer_group_id: String,
    /// Where a group without committed offsets starts: TRIM_HORIZON, LATEST or AT_TIMESTAMP.
    #[arg(long, default_value = "TRIM_HORIZON")]
    starting_position: String,
    /// For AT_TIMESTAMP: epoch seconds.
    #[arg(long)]
    starting_position_timestamp: Option<f64>,
    /// librdkafka properties for the broker, e.g. `-X security.protocol=SSL`.
    #[arg(short = 'X', long = "kafka-property", value_name = "KEY=VALUE")]
    properties: Vec<String>,
    /// `FilterCriteria`: a pattern on the record's value, e.g. `{"value": {"Region": ["East"]}}`;
    /// repeat for several (a record matching any is delivered).
    #[arg(long = "filter", value_name = "PATTERN")]
    filters: Vec<String>,
    /// Send `SelfManagedKafka` events (no ARN) instead of MSK ones.
    #[arg(long)]
    self_managed: bool,

    // --- the event source mapping's settings (SAM names) ---
    #[arg(long, default_value_t = 100)]
    batch_size: usize,
    #[arg(long, default_value_t = 0.5)]
    maximum_batching_window_in_seconds: f64,
    /// -1: retry until the records leave the topic.
    #[arg(long, default_value_t = -1, allow_hyphen_values = true)]
    maximum_retry_attempts: i64,
    /// -1: no limit.
    #[arg(long, default_value_t = -1, allow_hyphen_values = true)]
    maximum_record_age_in_seconds: i64,
    #[arg(long)]
    bisect_batch_on_function_error: bool,
    /// Leave out `FunctionResponseTypes: [ReportBatchItemFailures]`: reported failures are
    /// then taken as success, as Lambda does (to see why the template always sets it).
    #[arg(long)]
    no_report_batch_item_failures: bool,

    // --- the function ---
    #[command(flatten)]
    function: FunctionArgs,

    // --- on failure ---
    /// Append what Lambda would put in an S3 on-failure destination (with the payload), one
    /// JSON document per line.
    #[arg(long, conflicts_with = "on_failure_sqs")]
    on_failure_file: Option<PathBuf>,
    /// Send what Lambda would send to an SQS on-failure destination to this queue URL
    /// (AWS_ENDPOINT_URL for moto or LocalStack).
    #[arg(long, conflicts_with = "on_failure_kafka")]
    on_failure_sqs: Option<String>,
    /// Produce what Lambda would put in a `kafka://TOPIC` on-failure destination (the S3 form,
    /// with the payload, one record each) to TOPIC on the source's broker.
    #[arg(long, value_name = "TOPIC", conflicts_with = "on_failure_file")]
    on_failure_kafka: Option<String>,

    // --- the run ---
    /// Pollers (Lambda's provisioned mode): each an execution environment of its own with its
    /// share of the partitions, invoking concurrently; at most one per partition. From
    /// --template: its MaximumPollers.
    #[arg(long, default_value_t = 1)]
    pollers: usize,
    /// Keep reading after catching up, until Ctrl-C.
    #[arg(long)]
    follow: bool,
    /// No progress bar (it is only drawn on a terminal anyway).
    #[arg(long)]
    no_progress: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    // Output piped into a reader that stops early (`| head`) ends the program quietly, as
    // command-line tools do, instead of panicking on the broken pipe. SIGPIPE is process-wide
    // and nothing here relies on it being ignored.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let matches = Cli::command().get_matches();
    let command = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli.command,
        Err(error) => error.exit(),
    };
    let run_matches = matches.subcommand_matches("run").cloned();
    match run(command, run_matches).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("esm-local: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, run_matches: Option<ArgMatches>) -> Result<(), Error> {
    match command {
        Command::Run(mut args) => {
            if let (Some(_), Some(matches)) = (&args.template, &run_matches) {
                apply_template(&mut args, matches)?;
            }
            run_mapping(*args).await
        }
        Command::Replay(args) => replay(*args).await,
        Command::Produce {
            bootstrap_servers,
            topic,
            properties,
            files,
        } => produce(bootstrap_servers, topic, properties, files).await,
        Command::Consume {
            bootstrap_servers,
            topic,
            idle_ms,
            max,
            properties,
        } => consume(&bootstrap_servers, &topic, idle_ms, max, &properties).await,
        Command::Event {
            topic:
                TopicArgs {
                    topic,
                    partitions,
                    lines,
                },
            batch_size,
            files,
        } => {
            let mut text = String::new();
            for file in &files {
                text.push_str(&read(file)?);
                text.push('\n');
            }
            let mut topic =
                FileTopic::from_lines(&topic, partitions, &lines.format(), &text, now_ms());
            let mut pending = Pending::default();
            topic
                .poll()
                .iter()
                .for_each(|r| pending.push(Record::new(r)));
            let total = pending.len();
            let source = file_event_source(false);
            let batch = match pending.cut(&source, batch_size.clamp(1, 10_000), runner_cap()) {
                Cut::Batch(batch) => batch,
                Cut::Oversized(_) => return Err("the first record alone is over 6 MB".into()),
                Cut::Nothing => return Err("no records in the files".into()),
            };
            if batch.len() < total {
                eprintln!(
                    "esm-local: the event holds {} of {total} records (BatchSize and the 6 MB cap)",
                    batch.len()
                );
            }
            let mut out = std::io::stdout().lock();
            match writeln!(out, "{}", batch.event_json(&source)) {
                // A reader that stopped early (`| head`) is not an error.
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
                _ => Ok(()),
            }
        }
        Command::Invoke {
            function,
            timeout_secs,
            events,
        } => invoke(function, timeout_secs, events).await,
    }
}

fn runner_cap() -> usize {
    Settings::default().max_payload_bytes
}

fn read(file: &PathBuf) -> Result<String, Error> {
    std::fs::read_to_string(file).map_err(|e| format!("reading {}: {e}", file.display()).into())
}

fn file_event_source(self_managed: bool) -> EventSource {
    EventSource {
        event_source_arn: (!self_managed).then(|| EVENT_SOURCE_ARN.to_owned()),
        bootstrap_servers: "localhost:9092".to_owned(),
    }
}

#[cfg(feature = "kafka")]
fn connection(
    bootstrap_servers: &str,
    properties: &[String],
) -> Result<esm_local::kafka::Connection, Error> {
    let properties = properties
        .iter()
        .map(|p| {
            p.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .ok_or_else(|| format!("-X {p}: expected KEY=VALUE"))
        })
        .collect::<Result<_, _>>()?;
    Ok(esm_local::kafka::Connection {
        bootstrap_servers: bootstrap_servers.to_owned(),
        properties,
    })
}

#[cfg(not(feature = "kafka"))]
const NO_KAFKA: &str = "this esm-local was built without Kafka support: build it with \
     `cargo build --features kafka --bin esm-local` (librdkafka is compiled from source, about \
     two minutes), or use a file topic (--file)";

#[cfg(feature = "kafka")]
async fn produce(
    bootstrap_servers: String,
    topic: TopicArgs,
    properties: Vec<String>,
    files: Vec<PathBuf>,
) -> Result<(), Error> {
    use esm_local::kafka;
    let TopicArgs {
        topic,
        partitions,
        lines,
    } = topic;
    let connection = connection(&bootstrap_servers, &properties)?;
    if kafka::ensure_topic(&connection, &topic, partitions).await? {
        println!("created topic {topic} with {partitions} partitions");
    }
    let format = lines.format();
    let mut records = Vec::new();
    for file in &files {
        records.extend(
            read(file)?
                .lines()
                .filter(|line| !line.trim().is_empty())
                .map(|line| format.split(line)),
        );
    }
    let counts = kafka::produce(&connection, &topic, &records).await?;
    let spread: Vec<String> = counts
        .iter()
        .map(|(p, n)| format!("{topic}-{p}: {n}"))
        .collect();
    println!(
        "produced {} records to {topic} on {bootstrap_servers} ({})",
        records.len(),
        spread.join(", ")
    );
    Ok(())
}

#[cfg(not(feature = "kafka"))]
async fn produce(_: String, _: TopicArgs, _: Vec<String>, _: Vec<PathBuf>) -> Result<(), Error> {
    Err(NO_KAFKA.into())
}

#[cfg(feature = "kafka")]
async fn consume(
    bootstrap_servers: &str,
    topic: &str,
    idle_ms: u64,
    max: usize,
    properties: &[String],
) -> Result<(), Error> {
    let connection = connection(bootstrap_servers, properties)?;
    let records = esm_local::kafka::read_topic(
        &connection,
        topic,
        std::time::Duration::from_millis(idle_ms),
        max,
    )
    .await?;
    for record in &records {
        println!("{}", record.to_display_json());
    }
    eprintln!("{} records on {topic}", records.len());
    Ok(())
}

#[cfg(not(feature = "kafka"))]
async fn consume(_: &str, _: &str, _: u64, _: usize, _: &[String]) -> Result<(), Error> {
    Err(NO_KAFKA.into())
}

/// One source per poller, each with its share of the partitions (partition `i` of the sorted
/// list goes to poller `i % pollers`); pollers are capped at the partition count, as on AWS.
async fn open_sources(args: &RunArgs) -> Result<(Vec<Source>, EventSource), Error> {
    let (first, event_source) = open_source(args).await?;
    let partitions = match &first {
        Source::File(topic) => topic.topic_partitions(),
        #[cfg(feature = "kafka")]
        Source::Kafka(kafka) => kafka.topic_partitions(),
        Source::Payload(_) => Vec::new(),
    };
    let pollers = args.pollers.clamp(1, partitions.len().max(1));
    if pollers == 1 {
        return Ok((vec![first], event_source));
    }
    let share = |poller: usize| -> std::collections::BTreeSet<esm_local::batch::TopicPartition> {
        partitions
            .iter()
            .enumerate()
            .filter(|(index, _)| index % pollers == poller)
            .map(|(_, p)| p.clone())
            .collect()
    };
    let mut sources = Vec::new();
    match first {
        Source::File(topic) => {
            for poller in 0..pollers {
                let numbers = share(poller).into_iter().map(|p| p.partition).collect();
                sources.push(Source::File(topic.owning(&numbers)));
            }
        }
        #[cfg(feature = "kafka")]
        Source::Kafka(mut kafka) => {
            let mine = share(0);
            kafka.retain(|p| mine.contains(p))?;
            sources.push(Source::Kafka(kafka));
            for poller in 1..pollers {
                let (Source::Kafka(mut more), _) = open_source(args).await? else {
                    return Err("a poller's source is not the broker".into());
                };
                let mine = share(poller);
                more.retain(|p| mine.contains(p))?;
                sources.push(Source::Kafka(more));
            }
        }
        Source::Payload(_) => return Err("several pollers need a topic".into()),
    }
    Ok((sources, event_source))
}

async fn open_source(args: &RunArgs) -> Result<(Source, EventSource), Error> {
    if let Some(file) = &args.file {
        let topic = args.topics.first().map_or("topic", String::as_str);
        let topic = FileTopic::from_lines(
            topic,
            args.partitions,
            &args.lines.format(),
            &read(file)?,
            now_ms(),
        );
        return Ok((Source::File(topic), file_event_source(args.self_managed)));
    }
    let Some(bootstrap_servers) = &args.bootstrap_servers else {
        return Err("give a source: --file PATH or --bootstrap-servers HOST:PORT".into());
    };
    open_kafka(args, bootstrap_servers).await
}

#[cfg(feature = "kafka")]
async fn open_kafka(
    args: &RunArgs,
    bootstrap_servers: &str,
) -> Result<(Source, EventSource), Error> {
    use esm_local::kafka::{KafkaSource, StartingPosition};
    let starting = match (
        args.starting_position.as_str(),
        args.starting_position_timestamp,
    ) {
        ("TRIM_HORIZON", None) => StartingPosition::TrimHorizon,
        ("LATEST", None) => StartingPosition::Latest,
        ("AT_TIMESTAMP", Some(seconds)) => StartingPosition::AtTimestamp(
            // Whole milliseconds; `as` saturates, and no timestamp is near i64's range.
            #[allow(clippy::cast_possible_truncation)]
            {
                (seconds * 1000.0).round() as i64
            },
        ),
        ("AT_TIMESTAMP", None) => {
            return Err("AT_TIMESTAMP needs --starting-position-timestamp (epoch seconds)".into())
        }
        (_, Some(_)) => {
            return Err(
                "--starting-position-timestamp goes with --starting-position AT_TIMESTAMP".into(),
            )
        }
        (other, None) => {
            return Err(format!(
                "unknown starting position {other}: TRIM_HORIZON, LATEST or AT_TIMESTAMP"
            )
            .into())
        }
    };
    let connection = connection(bootstrap_servers, &args.properties)?;
    let source =
        KafkaSource::connect(&connection, &args.topics, &args.consumer_group_id, starting).await?;
    let event_source = EventSource {
        event_source_arn: (!args.self_managed).then(|| EVENT_SOURCE_ARN.to_owned()),
        bootstrap_servers: bootstrap_servers.to_owned(),
    };
    Ok((Source::Kafka(source), event_source))
}

#[cfg(not(feature = "kafka"))]
async fn open_kafka(_: &RunArgs, _: &str) -> Result<(Source, EventSource), Error> {
    Err(NO_KAFKA.into())
}

async fn destination(args: &RunArgs) -> Result<Destination, Error> {
    if let Some(path) = &args.on_failure_file {
        return Ok(Destination::File(path.clone()));
    }
    if let Some(topic) = &args.on_failure_kafka {
        let topic = topic.trim_start_matches("kafka://");
        if args.topics.iter().any(|t| t == topic) {
            return Err(format!(
                "Lambda refuses the on-failure destination kafka://{topic}: it is a source topic"
            )
            .into());
        }
        let Some(bootstrap_servers) = &args.bootstrap_servers else {
            return Err("--on-failure-kafka needs a broker source (--bootstrap-servers)".into());
        };
        return kafka_destination(args, bootstrap_servers, topic);
    }
    match &args.on_failure_sqs {
        None => Ok(Destination::None),
        #[cfg(feature = "sqs")]
        Some(url) => Ok(Destination::sqs(url.clone()).await),
        #[cfg(not(feature = "sqs"))]
        Some(_) => Err(
            "this esm-local was built without SQS support: build it with \
                        `cargo build --features sqs --bin esm-local`, or use --on-failure-file"
                .into(),
        ),
    }
}

#[cfg(feature = "kafka")]
fn kafka_destination(
    args: &RunArgs,
    bootstrap_servers: &str,
    topic: &str,
) -> Result<Destination, Error> {
    let connection = connection(bootstrap_servers, &args.properties)?;
    Ok(Destination::Kafka(esm_local::kafka::FailureTopic::new(
        &connection,
        topic,
    )?))
}

#[cfg(not(feature = "kafka"))]
fn kafka_destination(_: &RunArgs, _: &str, _: &str) -> Result<Destination, Error> {
    Err(NO_KAFKA.into())
}

/// Takes the mapping's settings from `--template` for every flag not given on the command line,
/// and says what is in effect and where each setting came from.
fn apply_template(args: &mut RunArgs, matches: &ArgMatches) -> Result<(), Error> {
    let Some(path) = args.template.clone() else {
        return Ok(());
    };
    let text = read(&path)?;
    let samconfig_path = path.with_file_name("samconfig.toml");
    let samconfig_text = match (&args.config_env, samconfig_path.exists()) {
        (_, true) => Some(read(&samconfig_path)?),
        (Some(_), false) => {
            return Err(format!("--config-env needs {}", samconfig_path.display()).into())
        }
        (None, false) => None,
    };
    let env = args
        .config_env
        .clone()
        .unwrap_or_else(|| "default".to_owned());
    let overrides = args
        .parameter_overrides
        .iter()
        .map(|pair| {
            pair.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .ok_or_else(|| format!("--parameter-overrides {pair}: expected KEY=VALUE"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mapping = esm_local::template::read(
        &text,
        args.event.as_deref(),
        samconfig_text.as_deref().map(|text| (text, env.as_str())),
        &overrides,
    )
    .map_err(|e| format!("{}: {e}", path.display()))?;
    eprintln!("esm-local: {} ({})", mapping.describe(), path.display());
    let given = |id: &str| matches.value_source(id) == Some(ValueSource::CommandLine);
    let mut kept = Vec::new();
    let mut take = |id: &'static str, apply: &mut dyn FnMut()| {
        if given(id) {
            kept.push(id);
        } else {
            apply();
        }
    };
    let settings = &mapping.settings;
    take("batch_size", &mut || args.batch_size = settings.batch_size);
    take("maximum_batching_window_in_seconds", &mut || {
        args.maximum_batching_window_in_seconds = settings.batching_window.as_secs_f64();
    });
    take("maximum_retry_attempts", &mut || {
        args.maximum_retry_attempts = settings.maximum_retry_attempts.map_or(-1, i64::from);
    });
    take("maximum_record_age_in_seconds", &mut || {
        args.maximum_record_age_in_seconds = settings
            .maximum_record_age
            .map_or(-1, |age| i64::try_from(age.as_secs()).unwrap_or(i64::MAX));
    });
    take("bisect_batch_on_function_error", &mut || {
        args.bisect_batch_on_function_error = settings.bisect_batch_on_function_error;
    });
    take("no_report_batch_item_failures", &mut || {
        args.no_report_batch_item_failures = !settings.report_batch_item_failures;
    });
    take("topics", &mut || args.topics = mapping.topics.clone());
    if let Some(group) = &mapping.consumer_group_id {
        take("consumer_group_id", &mut || {
            args.consumer_group_id = group.clone()
        });
    }
    take("starting_position", &mut || {
        args.starting_position = mapping.starting_position.clone();
    });
    if mapping.starting_position == "AT_TIMESTAMP" {
        take("starting_position_timestamp", &mut || {
            args.starting_position_timestamp = mapping.starting_position_timestamp;
        });
    }
    take("filters", &mut || args.filters = mapping.filters.clone());
    if let Some((_, max)) = mapping.pollers {
        take("pollers", &mut || {
            args.pollers = usize::try_from(max).unwrap_or(1);
        });
    }
    if !kept.is_empty() {
        eprintln!(
            "esm-local: given on the command line, and kept: {}",
            kept.join(", ")
        );
    }
    if let Some((kind, destination)) = &mapping.on_failure {
        let chosen = args.on_failure_file.is_some()
            || args.on_failure_sqs.is_some()
            || args.on_failure_kafka.is_some();
        if kind == "Kafka" && !chosen && args.bootstrap_servers.is_some() {
            eprintln!(
                "esm-local: the on-failure destination is {destination}, on the source's broker"
            );
            args.on_failure_kafka = Some(destination.clone());
        } else if !chosen {
            let stand_in = PathBuf::from("esm-on-failure.jsonl");
            eprintln!(
                "esm-local: the on-failure destination is {kind} ({destination}); locally, S3-form documents with their payload go to {} (--on-failure-file to choose)",
                stand_in.display()
            );
            args.on_failure_file = Some(stand_in);
        }
    }
    Ok(())
}

async fn run_mapping(args: RunArgs) -> Result<(), Error> {
    let settings = Settings {
        batch_size: args.batch_size,
        batching_window: Duration::try_from_secs_f64(args.maximum_batching_window_in_seconds)
            .map_err(|e| format!("--maximum-batching-window-in-seconds: {e}"))?,
        maximum_retry_attempts: match args.maximum_retry_attempts {
            -1 => None,
            n => Some(u32::try_from(n).map_err(|_| "--maximum-retry-attempts is -1 or 0..10000")?),
        },
        maximum_record_age: match args.maximum_record_age_in_seconds {
            -1 => None,
            n => Some(Duration::from_secs(u64::try_from(n).map_err(|_| {
                "--maximum-record-age-in-seconds is -1 or 60..604800"
            })?)),
        },
        bisect_batch_on_function_error: args.bisect_batch_on_function_error,
        report_batch_item_failures: !args.no_report_batch_item_failures,
        ..Settings::default()
    };
    settings.validate()?;
    let destination = destination(&args).await?;
    let (mut sources, event_source) = open_sources(&args).await?;
    let mut functions = Vec::new();
    for _ in &sources {
        functions.push(args.function.open().await?);
    }
    let mut options = RunOptions::new(settings, event_source);
    options.timeout = Duration::from_secs(args.function.timeout_secs);
    options.follow = args.follow;
    options.filters = args.filters.clone();
    // One bar per poller would garble the terminal: with several, lines only.
    options.progress = sources.len() == 1 && !args.no_progress && std::io::stderr().is_terminal();
    let stop = stop_on_signal();
    let result =
        runner::run_pollers(&options, &mut sources, &mut functions, &destination, stop).await;
    for function in &mut functions {
        function.stop().await;
    }
    let summary = result?;
    print!("{}", summary.render(&destination));
    Ok(())
}

/// A flag set on Ctrl-C, or on SIGTERM from a script that ran this in the background (where
/// SIGINT is ignored): the run stops after the current invocation.
fn stop_on_signal() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let on_signal = stop.clone();
    tokio::spawn(async move {
        // Ctrl-C, or SIGTERM from a script that ran this in the background (where SIGINT is
        // ignored).
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        let terminated = async {
            match terminate.as_mut() {
                Some(signal) => signal.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminated => {}
        }
        eprintln!("esm-local: stopping after the current invocation");
        on_signal.store(true, Ordering::Relaxed);
    });
    stop
}

async fn invoke(function: PathBuf, timeout_secs: u64, events: Vec<PathBuf>) -> Result<(), Error> {
    let mut function = Function::spawn(function).await?;
    let timeout = Duration::from_secs(timeout_secs);
    for file in &events {
        let outcome = function.invoke(read(file)?, timeout).await;
        let failed = |what: String| Err(format!("{}: {what}", file.display()).into());
        let result: Result<(), Error> = match outcome {
            Ok(Invocation::Response(body)) => {
                println!("{}: {}", file.display(), String::from_utf8_lossy(&body));
                Ok(())
            }
            Ok(Invocation::Error(body)) => failed(format!(
                "the function returned an error: {}",
                String::from_utf8_lossy(&body)
            )),
            Ok(Invocation::Timeout) => failed(format!("the function timed out ({timeout_secs} s)")),
            Ok(Invocation::Crashed(why)) => failed(format!("the function {why}")),
            Err(e) => Err(e),
        };
        if result.is_err() {
            function.stop().await;
            return result;
        }
    }
    function.stop().await;
    Ok(())
}

async fn replay(args: ReplayArgs) -> Result<(), Error> {
    use esm_local::replay::{self, ReplayOptions};
    let mut documents = Vec::new();
    for source in &args.sources {
        if source.starts_with("s3://") {
            documents.extend(s3_documents(source).await?);
        } else {
            documents.extend(replay::documents_from_path(std::path::Path::new(source))?);
        }
    }
    if documents.is_empty() {
        return Err(format!("no on-failure documents in {}", args.sources.join(" ")).into());
    }
    let destination = match &args.on_failure_file {
        Some(path) => Destination::File(path.clone()),
        None => Destination::None,
    };
    let options = ReplayOptions {
        timeout: Duration::from_secs(args.function.timeout_secs),
        maximum_retry_attempts: args.maximum_retry_attempts,
        backoff: Duration::from_millis(200),
    };
    let mut function = args.function.open().await?;
    let result = replay::replay(
        &documents,
        &mut function,
        &options,
        &destination,
        stop_on_signal(),
    )
    .await;
    function.stop().await;
    let outcomes = result?;
    let (mut accepted, mut failing, mut unusable) = (0u64, 0u64, 0usize);
    for outcome in &outcomes {
        match &outcome.unusable {
            Some(why) => {
                unusable += 1;
                eprintln!("{}: {why}", outcome.origin);
            }
            None => println!(
                "{}: {} records, {} accepted, {} still failing ({} invocations)",
                outcome.origin,
                outcome.records,
                outcome.accepted,
                outcome.still_failing,
                outcome.invocations
            ),
        }
        accepted += outcome.accepted;
        failing += outcome.still_failing;
    }
    println!(
        "replayed {} of {} documents: {accepted} records accepted, {failing} still failing, {unusable} without a usable payload",
        outcomes.len(),
        documents.len()
    );
    if failing > 0 || unusable > 0 || outcomes.len() < documents.len() {
        let kept = match &args.on_failure_file {
            Some(path) => format!(" (what still fails is in {})", path.display()),
            None => String::new(),
        };
        return Err(format!("not everything was accepted{kept}").into());
    }
    Ok(())
}

#[cfg(feature = "s3")]
async fn s3_documents(url: &str) -> Result<Vec<esm_local::replay::Document>, Error> {
    let client = esm_local::replay::s3_client().await;
    esm_local::replay::documents_from_s3(&client, url).await
}

#[cfg(not(feature = "s3"))]
async fn s3_documents(url: &str) -> Result<Vec<esm_local::replay::Document>, Error> {
    Err(format!(
        "{url}: this esm-local was built without S3 support: build it with \
         `cargo build -p esm-local --features s3`, or copy the objects first \
         (aws s3 cp --recursive {url} DIR)"
    )
    .into())
}
