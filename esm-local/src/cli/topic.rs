//! `esm-local produce` and `consume`: a broker's topic loaded from, and printed as, lines.

use std::path::PathBuf;

use super::args::TopicArgs;
#[cfg(feature = "kafka")]
use super::read;
use super::Error;
#[cfg(not(feature = "kafka"))]
use super::NO_KAFKA;

#[cfg(feature = "kafka")]
pub(crate) fn connection(
    bootstrap_servers: &str,
    properties: &[String],
) -> Result<esm_local::source::kafka::Connection, Error> {
    let properties = properties
        .iter()
        .map(|p| {
            p.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .ok_or_else(|| format!("-X {p}: expected KEY=VALUE"))
        })
        .collect::<Result<_, _>>()?;
    Ok(esm_local::source::kafka::Connection {
        bootstrap_servers: bootstrap_servers.to_owned(),
        properties,
    })
}

#[cfg(feature = "kafka")]
pub(crate) async fn produce(
    bootstrap_servers: String,
    topic: TopicArgs,
    properties: Vec<String>,
    files: Vec<PathBuf>,
) -> Result<(), Error> {
    use esm_local::source::kafka;
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
pub(crate) async fn produce(
    _: String,
    _: TopicArgs,
    _: Vec<String>,
    _: Vec<PathBuf>,
) -> Result<(), Error> {
    Err(NO_KAFKA.into())
}

#[cfg(feature = "kafka")]
pub(crate) async fn consume(
    bootstrap_servers: &str,
    topic: &str,
    idle_ms: u64,
    max: usize,
    properties: &[String],
) -> Result<(), Error> {
    let connection = connection(bootstrap_servers, properties)?;
    let records = esm_local::source::kafka::read_topic(
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
pub(crate) async fn consume(_: &str, _: &str, _: u64, _: usize, _: &[String]) -> Result<(), Error> {
    Err(NO_KAFKA.into())
}
