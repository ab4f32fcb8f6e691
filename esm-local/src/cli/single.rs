//! `esm-local event` and `invoke`: one event for a file topic, and single invocations.

use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use esm_local::batch::{Cut, Pending, Record};
use esm_local::clock::now_ms;
use esm_local::function::Function;
use esm_local::rules::Invocation;
use esm_local::source::file_topic::FileTopic;

use super::args::TopicArgs;
use super::{file_event_source, read, runner_cap, Error};

/// Prints the event the mapping would send first for the file topic `topic` (`esm-local event`).
pub(crate) fn event(topic: TopicArgs, batch_size: usize, files: &[PathBuf]) -> Result<(), Error> {
    let TopicArgs {
        topic,
        partitions,
        lines,
    } = topic;
    let mut text = String::new();
    for file in files {
        text.push_str(&read(file)?);
        text.push('\n');
    }
    let mut topic = FileTopic::from_lines(&topic, partitions, &lines.format(), &text, now_ms());
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

pub(crate) async fn invoke(
    function: PathBuf,
    timeout_secs: u64,
    events: Vec<PathBuf>,
) -> Result<(), Error> {
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
