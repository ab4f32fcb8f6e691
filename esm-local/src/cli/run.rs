//! `esm-local run`: the sources, the destination and the settings from the flags (and
//! `--template`), then the runner until the sources are drained or a signal stops it.

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::parser::ValueSource;
use clap::ArgMatches;
use esm_local::batch::EventSource;
use esm_local::clock::now_ms;
use esm_local::on_failure::destination::Destination;
use esm_local::rules::Settings;
use esm_local::runner::{self, RunOptions, Source};
use esm_local::source::file_topic::FileTopic;
use esm_local::template::Mapping;
#[cfg(feature = "kafka")]
use esm_local::EVENT_SOURCE_ARN;

use super::args::RunArgs;
#[cfg(feature = "kafka")]
use super::topic::connection;
#[cfg(not(feature = "kafka"))]
use super::NO_KAFKA;
use super::{file_event_source, read, Error};

/// One source per poller, each with its share of the partitions (partition `i` of the sorted
/// list goes to poller `i % pollers`); pollers are capped at the partition count, as on AWS.
pub(crate) async fn open_sources(args: &RunArgs) -> Result<(Vec<Source>, EventSource), Error> {
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

pub(crate) async fn open_source(args: &RunArgs) -> Result<(Source, EventSource), Error> {
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
pub(crate) async fn open_kafka(
    args: &RunArgs,
    bootstrap_servers: &str,
) -> Result<(Source, EventSource), Error> {
    use esm_local::source::kafka::{KafkaSource, StartingPosition};
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
pub(crate) async fn open_kafka(_: &RunArgs, _: &str) -> Result<(Source, EventSource), Error> {
    Err(NO_KAFKA.into())
}

pub(crate) async fn destination(args: &RunArgs) -> Result<Destination, Error> {
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
pub(crate) fn kafka_destination(
    args: &RunArgs,
    bootstrap_servers: &str,
    topic: &str,
) -> Result<Destination, Error> {
    let connection = connection(bootstrap_servers, &args.properties)?;
    Ok(Destination::Kafka(
        esm_local::source::kafka::FailureTopic::new(&connection, topic)?,
    ))
}

#[cfg(not(feature = "kafka"))]
pub(crate) fn kafka_destination(_: &RunArgs, _: &str, _: &str) -> Result<Destination, Error> {
    Err(NO_KAFKA.into())
}

/// Takes the mapping's settings from `--template` for every flag not given on the command line,
/// and says what is in effect and where each setting came from.
pub(crate) fn apply_template(args: &mut RunArgs, matches: &ArgMatches) -> Result<(), Error> {
    let Some(path) = args.template.clone() else {
        return Ok(());
    };
    let mapping = read_mapping(args, &path)?;
    eprintln!("esm-local: {} ({})", mapping.describe(), path.display());
    take_settings(args, matches, &mapping);
    take_on_failure(args, &mapping);
    Ok(())
}

/// The mapping `--template` deploys, with `samconfig.toml` beside it (for `--config-env`) and
/// `--parameter-overrides`.
fn read_mapping(args: &RunArgs, path: &Path) -> Result<Mapping, Error> {
    let text = read(path)?;
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
    esm_local::template::read(
        &text,
        args.event.as_deref(),
        samconfig_text.as_deref().map(|text| (text, env.as_str())),
        &overrides,
    )
    .map_err(|e| format!("{}: {e}", path.display()).into())
}

/// Each delivery setting of `mapping` for which no flag was given on the command line; says
/// which flags were kept.
fn take_settings(args: &mut RunArgs, matches: &ArgMatches, mapping: &Mapping) {
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
}

/// The template's on-failure destination, unless a flag chose one: a `kafka://` topic on the
/// source's broker, else a local file of S3-form documents standing in for it.
fn take_on_failure(args: &mut RunArgs, mapping: &Mapping) {
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
}

pub(crate) async fn run_mapping(args: RunArgs) -> Result<(), Error> {
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
pub(crate) fn stop_on_signal() -> Arc<AtomicBool> {
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
