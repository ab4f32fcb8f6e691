//! What each command does. The commands and flags themselves are in [`args`].

pub(crate) mod args;
mod replay;
mod run;
mod single;
mod topic;

use std::path::Path;

use clap::ArgMatches;
use esm_local::batch::EventSource;
use esm_local::rules::Settings;
use esm_local::EVENT_SOURCE_ARN;

use args::Command;

pub(crate) type Error = Box<dyn std::error::Error + Send + Sync>;

/// Runs `command`; `run_matches` are the `run` command's matches, to tell the flags given on the
/// command line from their defaults.
pub(crate) async fn dispatch(
    command: Command,
    run_matches: Option<ArgMatches>,
) -> Result<(), Error> {
    match command {
        Command::Run(mut args) => {
            if let (Some(_), Some(matches)) = (&args.template, &run_matches) {
                run::apply_template(&mut args, matches)?;
            }
            run::run_mapping(*args).await
        }
        Command::Replay(args) => replay::replay(*args).await,
        Command::Produce {
            bootstrap_servers,
            topic,
            properties,
            files,
        } => topic::produce(bootstrap_servers, topic, properties, files).await,
        Command::Consume {
            bootstrap_servers,
            topic,
            idle_ms,
            max,
            properties,
        } => topic::consume(&bootstrap_servers, &topic, idle_ms, max, &properties).await,
        Command::Event {
            topic,
            batch_size,
            files,
        } => single::event(topic, batch_size, &files),
        Command::Invoke {
            function,
            timeout_secs,
            events,
        } => single::invoke(function, timeout_secs, events).await,
    }
}

/// The event size the runner cuts batches at (Lambda's 6 MB).
pub(crate) fn runner_cap() -> usize {
    Settings::default().max_payload_bytes
}

/// The text of `file`, or an error naming it.
pub(crate) fn read(file: &Path) -> Result<String, Error> {
    std::fs::read_to_string(file).map_err(|e| format!("reading {}: {e}", file.display()).into())
}

/// What a file topic's events say of their source: an MSK cluster, or self-managed Kafka.
pub(crate) fn file_event_source(self_managed: bool) -> EventSource {
    EventSource {
        event_source_arn: (!self_managed).then(|| EVENT_SOURCE_ARN.to_owned()),
        bootstrap_servers: "localhost:9092".to_owned(),
    }
}

/// Why a broker command or source fails in a build without the `kafka` feature.
#[cfg(not(feature = "kafka"))]
pub(crate) const NO_KAFKA: &str = "this esm-local was built without Kafka support: build it with \
     `cargo build --features kafka --bin esm-local` (librdkafka is compiled from source, about \
     two minutes), or use a file topic (--file)";
