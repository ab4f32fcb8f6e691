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

mod cli;

use std::process::ExitCode;

use clap::{CommandFactory as _, FromArgMatches as _};

use cli::args::Cli;

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
    match cli::dispatch(command, run_matches).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("esm-local: {error}");
            ExitCode::FAILURE
        }
    }
}
