//! `esm-local replay`: on-failure documents delivered to the function again.

use std::time::Duration;

use esm_local::on_failure::destination::Destination;
use esm_local::on_failure::documents::{self, Document};
use esm_local::replay::{self, ReplayOptions};

use super::args::ReplayArgs;
use super::run::stop_on_signal;
use super::Error;

/// Replays every document of `args.sources` and says what each did; an error when anything is
/// still not accepted.
pub(crate) async fn replay(args: ReplayArgs) -> Result<(), Error> {
    let mut documents = Vec::new();
    for source in &args.sources {
        if source.starts_with("s3://") {
            documents.extend(s3_documents(source).await?);
        } else {
            documents.extend(documents::documents_from_path(std::path::Path::new(
                source,
            ))?);
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
pub(crate) async fn s3_documents(url: &str) -> Result<Vec<Document>, Error> {
    let client = documents::s3_client().await;
    documents::documents_from_s3(&client, url).await
}

#[cfg(not(feature = "s3"))]
pub(crate) async fn s3_documents(url: &str) -> Result<Vec<Document>, Error> {
    Err(format!(
        "{url}: this esm-local was built without S3 support: build it with \
         `cargo build -p esm-local --features s3`, or copy the objects first \
         (aws s3 cp --recursive {url} DIR)"
    )
    .into())
}
