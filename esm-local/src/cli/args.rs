//! The command line: every command and flag, apart from what the commands do.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use esm_local::function::Function;
use esm_local::source::file_topic::LineFormat;

use super::Error;

#[derive(Parser)]
#[command(
    version,
    about = "Run a Kafka-triggered Lambda function locally as Lambda's event source mapping would"
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand)]
pub(crate) enum Command {
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
pub(crate) struct TopicArgs {
    #[arg(long)]
    pub(crate) topic: String,
    #[arg(long, default_value_t = 3)]
    pub(crate) partitions: i32,
    #[command(flatten)]
    pub(crate) lines: LineArgs,
}

/// How lines of a file become records.
#[derive(Args, Clone)]
pub(crate) struct LineArgs {
    /// Lines are JSON values keyed by this field (lines without it have no key); without it
    /// (and without --key-separator) records have no key and go round-robin.
    #[arg(long, value_name = "FIELD")]
    pub(crate) key_field: Option<String>,
    /// Lines are `key<SEP>value`, as kcat's `-K<SEP>` (instead of keying by a JSON field).
    #[arg(long, value_name = "SEP")]
    pub(crate) key_separator: Option<String>,
}

impl LineArgs {
    pub(crate) fn format(&self) -> LineFormat {
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
pub(crate) struct FunctionArgs {
    /// The function binary (a `bootstrap`, or what `cargo build` makes), run against a local
    /// Runtime API and restarted after a crash or a timeout.
    #[arg(
        long,
        conflicts_with = "invoke_url",
        required_unless_present = "invoke_url"
    )]
    pub(crate) function: Option<PathBuf>,
    /// Invoke a function served by `cargo lambda watch` instead, e.g. http://127.0.0.1:9000.
    #[arg(long)]
    pub(crate) invoke_url: Option<String>,
    /// The function's name at --invoke-url (cargo lambda watch serves it under the binary's name).
    #[arg(long, default_value = "function", requires = "invoke_url")]
    pub(crate) function_name: String,
    /// The function's timeout: each invocation's deadline.
    #[arg(long, default_value_t = 30)]
    pub(crate) timeout_secs: u64,
    /// Append the function's output (logs, metrics) to this file instead of printing it.
    #[arg(long)]
    pub(crate) function_log: Option<PathBuf>,
}

impl FunctionArgs {
    pub(crate) async fn open(&self) -> Result<Function, Error> {
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
pub(crate) struct ReplayArgs {
    /// On-failure documents: files (one document, or JSON lines), directories of them, or
    /// `s3://bucket/prefix` (feature `s3`).
    #[arg(required = true)]
    pub(crate) sources: Vec<String>,
    #[command(flatten)]
    pub(crate) function: FunctionArgs,
    /// Retries of a document's batch before it counts as still failing.
    #[arg(long, default_value_t = 2)]
    pub(crate) maximum_retry_attempts: u32,
    /// Append what is still failing, in the same S3 form, to this file.
    #[arg(long)]
    pub(crate) on_failure_file: Option<PathBuf>,
}

#[derive(Args)]
pub(crate) struct RunArgs {
    // --- the mapping as a template deploys it ---
    /// Read the mapping's settings from a SAM or CloudFormation template: an MSK or
    /// SelfManagedKafka event, or an AWS::Lambda::EventSourceMapping. Flags given on the
    /// command line still win.
    #[arg(long)]
    pub(crate) template: Option<PathBuf>,
    /// The template's Kafka event (or mapping resource) when it has several.
    #[arg(long, requires = "template")]
    pub(crate) event: Option<String>,
    /// Parameter values, as `sam deploy --parameter-overrides` takes them.
    #[arg(long = "parameter-overrides", value_name = "KEY=VALUE", num_args = 1.., requires = "template")]
    pub(crate) parameter_overrides: Vec<String>,
    /// The environment of the samconfig.toml beside the template whose parameter_overrides
    /// apply (`default` when the file exists and this is not given, as with sam deploy).
    #[arg(long, requires = "template")]
    pub(crate) config_env: Option<String>,

    // --- source ---
    /// A file topic: one record per line, partitioned by key (instead of a broker).
    #[arg(
        long,
        conflicts_with = "bootstrap_servers",
        required_unless_present = "bootstrap_servers"
    )]
    pub(crate) file: Option<PathBuf>,
    /// Partitions of the file topic.
    #[arg(long, default_value_t = 3)]
    pub(crate) partitions: i32,
    #[command(flatten)]
    pub(crate) lines: LineArgs,
    /// A Kafka-compatible broker (Apache Kafka, MSK, Redpanda, tansu).
    #[arg(long)]
    pub(crate) bootstrap_servers: Option<String>,
    /// Topic(s) to read; repeat for several (a file topic takes the first).
    #[arg(long = "topic", required_unless_present = "template")]
    pub(crate) topics: Vec<String>,
    /// The consumer group whose committed offsets say where to resume.
    #[arg(long, default_value = "esm-local")]
    pub(crate) consumer_group_id: String,
    /// Where a group without committed offsets starts: TRIM_HORIZON, LATEST or AT_TIMESTAMP.
    #[arg(long, default_value = "TRIM_HORIZON")]
    pub(crate) starting_position: String,
    /// For AT_TIMESTAMP: epoch seconds.
    #[arg(long)]
    pub(crate) starting_position_timestamp: Option<f64>,
    /// librdkafka properties for the broker, e.g. `-X security.protocol=SSL`.
    #[arg(short = 'X', long = "kafka-property", value_name = "KEY=VALUE")]
    pub(crate) properties: Vec<String>,
    /// `FilterCriteria`: a pattern on the record's value, e.g. `{"value": {"Region": ["East"]}}`;
    /// repeat for several (a record matching any is delivered).
    #[arg(long = "filter", value_name = "PATTERN")]
    pub(crate) filters: Vec<String>,
    /// Send `SelfManagedKafka` events (no ARN) instead of MSK ones.
    #[arg(long)]
    pub(crate) self_managed: bool,

    // --- the event source mapping's settings (SAM names) ---
    #[arg(long, default_value_t = 100)]
    pub(crate) batch_size: usize,
    #[arg(long, default_value_t = 0.5)]
    pub(crate) maximum_batching_window_in_seconds: f64,
    /// -1: retry until the records leave the topic.
    #[arg(long, default_value_t = -1, allow_hyphen_values = true)]
    pub(crate) maximum_retry_attempts: i64,
    /// -1: no limit.
    #[arg(long, default_value_t = -1, allow_hyphen_values = true)]
    pub(crate) maximum_record_age_in_seconds: i64,
    #[arg(long)]
    pub(crate) bisect_batch_on_function_error: bool,
    /// Leave out `FunctionResponseTypes: [ReportBatchItemFailures]`: reported failures are
    /// then taken as success, as Lambda does (to see why the template always sets it).
    #[arg(long)]
    pub(crate) no_report_batch_item_failures: bool,

    // --- the function ---
    #[command(flatten)]
    pub(crate) function: FunctionArgs,

    // --- on failure ---
    /// Append what Lambda would put in an S3 on-failure destination (with the payload), one
    /// JSON document per line.
    #[arg(long, conflicts_with = "on_failure_sqs")]
    pub(crate) on_failure_file: Option<PathBuf>,
    /// Send what Lambda would send to an SQS on-failure destination to this queue URL
    /// (AWS_ENDPOINT_URL for moto or LocalStack).
    #[arg(long, conflicts_with = "on_failure_kafka")]
    pub(crate) on_failure_sqs: Option<String>,
    /// Produce what Lambda would put in a `kafka://TOPIC` on-failure destination (the S3 form,
    /// with the payload, one record each) to TOPIC on the source's broker.
    #[arg(long, value_name = "TOPIC", conflicts_with = "on_failure_file")]
    pub(crate) on_failure_kafka: Option<String>,

    // --- the run ---
    /// Pollers (Lambda's provisioned mode): each an execution environment of its own with its
    /// share of the partitions, invoking concurrently; at most one per partition. From
    /// --template: its MaximumPollers.
    #[arg(long, default_value_t = 1)]
    pub(crate) pollers: usize,
    /// Keep reading after catching up, until Ctrl-C.
    #[arg(long)]
    pub(crate) follow: bool,
    /// No progress bar (it is only drawn on a terminal anyway).
    #[arg(long)]
    pub(crate) no_progress: bool,
}
