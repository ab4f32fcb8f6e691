//! `esm-local`: run the function on your machine the way Lambda's event source mapping does.
//!
//! - `esm-local setup-db --customers fixtures/customers.csv`: apply `migrations/` and load customers.
//! - `esm-local event --partitions 3 fixtures/orders.jsonl > event.json`: an MSK event from an order file.
//! - `esm-local show`: print what the function wrote.
//! - `esm-local invoke fixtures/events/sample-orders.json ...`: start the function binary against a
//!   local Lambda Runtime API, invoke it with each event and print each batch response.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use msk_order_enricher::local::db;
use msk_order_enricher::local::events::{build_event, RecordSpec};
use msk_order_enricher::local::runtime_api::{Outcome, RuntimeApi};
use sqlx::postgres::PgPoolOptions;

type Error = Box<dyn std::error::Error + Send + Sync>;

#[derive(Parser)]
#[command(about = "Run msk-order-enricher locally as Lambda's Kafka event source mapping would")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Apply the migrations to DATABASE_URL and load customers from a CSV file.
    SetupDb {
        #[arg(long)]
        customers: Option<PathBuf>,
    },
    /// Print an MSK event holding the lines of order files as records keyed by OrderNo.
    Event {
        #[arg(long, default_value = "orders")]
        topic: String,
        #[arg(long, default_value_t = 3)]
        partitions: i32,
        #[arg(long, default_value_t = 0)]
        first_offset: i64,
        files: Vec<PathBuf>,
    },
    /// Print the enriched orders and dead letters in DATABASE_URL.
    Show,
    /// Run the function binary against a local Runtime API and invoke it with each event file.
    Invoke {
        /// The function binary (default: the msk-order-enricher built next to this tool).
        #[arg(long)]
        function: Option<PathBuf>,
        /// The function timeout: the invocation deadline is this far from its start.
        #[arg(long, default_value_t = 30)]
        timeout_secs: u64,
        events: Vec<PathBuf>,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Cli::parse().command).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("esm-local: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> Result<(), Error> {
    match command {
        Command::SetupDb { customers } => setup_db(customers).await,
        Command::Event {
            topic,
            partitions,
            first_offset,
            files,
        } => {
            let mut specs = Vec::new();
            for file in &files {
                let text = std::fs::read_to_string(file)
                    .map_err(|e| format!("reading {}: {e}", file.display()))?;
                specs.extend(
                    text.lines()
                        .filter(|l| !l.trim().is_empty())
                        .map(RecordSpec::from_order_line),
                );
            }
            let event = build_event(&topic, partitions, specs, first_offset, 1_700_000_000_000);
            println!("{}", serde_json::to_string_pretty(&event)?);
            Ok(())
        }
        Command::Invoke {
            function,
            timeout_secs,
            events,
        } => invoke(function, timeout_secs, events).await,
        Command::Show => show().await,
    }
}

async fn connect() -> Result<sqlx::PgPool, Error> {
    let url = std::env::var("DATABASE_URL").map_err(|_| "DATABASE_URL is not set")?;
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await
        .map_err(|e| format!("connecting: {e}"))?;
    Ok(pool)
}

type OrderLine = (
    String,
    String,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    String,
);

async fn show() -> Result<(), Error> {
    let pool = connect().await?;
    let orders: Vec<OrderLine> = sqlx::query_as(
        "SELECT order_no, order_date::text, customer, units::text || ' x ' || unit_cost::text || ' = ' || total::text,
                item, address, longitude::text, latitude::text,
                source_topic || '-' || source_partition || '@' || source_offset
         FROM enriched_orders ORDER BY order_no",
    )
    .fetch_all(&pool)
    .await?;
    println!("enriched_orders ({} rows):", orders.len());
    for (no, date, customer, amount, item, address, longitude, latitude, source) in orders {
        let location = match (address, longitude, latitude) {
            (Some(a), Some(lo), Some(la)) => format!("{a} ({la}, {lo})"),
            _ => "customer not found".to_owned(),
        };
        println!("  {no}  {date}  {customer:<9} {item:<7} {amount:<22} {location}  [{source}]");
    }
    let dead: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT partition_key || '@' || source_offset, reason, encode(coalesce(raw_value, ''), 'escape')
         FROM dead_letters ORDER BY source_topic, source_partition, source_offset",
    )
    .fetch_all(&pool)
    .await?;
    println!("dead_letters ({} rows):", dead.len());
    for (position, reason, value) in dead {
        println!("  {position}  {reason}\n      value: {value}");
    }
    Ok(())
}

async fn setup_db(customers: Option<PathBuf>) -> Result<(), Error> {
    let pool = connect().await?;
    db::migrate(&pool).await?;
    println!("migrations applied from {}", db::migrations_dir().display());
    if let Some(file) = customers {
        let text = std::fs::read_to_string(&file)
            .map_err(|e| format!("reading {}: {e}", file.display()))?;
        let customers =
            db::parse_customers_csv(&text).map_err(|e| format!("{}: {e}", file.display()))?;
        db::upsert_customers(&pool, &customers).await?;
        println!(
            "{} customers loaded from {}",
            customers.len(),
            file.display()
        );
    }
    Ok(())
}

async fn invoke(
    function: Option<PathBuf>,
    timeout_secs: u64,
    events: Vec<PathBuf>,
) -> Result<(), Error> {
    let function = match function {
        Some(path) => path,
        None => std::env::current_exe()?.with_file_name("msk-order-enricher"),
    };
    if !function.exists() {
        return Err(format!(
            "no function binary at {} (cargo build first)",
            function.display()
        )
        .into());
    }
    let api = RuntimeApi::start().await?;
    let mut child = api.function_command(&function).spawn()?;
    let timeout = Duration::from_secs(timeout_secs);
    for file in &events {
        let body = std::fs::read(file).map_err(|e| format!("reading {}: {e}", file.display()))?;
        let outcome = tokio::select! {
            outcome = api.invoke(body, timeout) => outcome?,
            status = child.wait() => {
                let detail = match api.wait_for_init_error(Duration::from_millis(100)).await {
                    Some(body) => format!(": {}", String::from_utf8_lossy(&body)),
                    None => String::new(),
                };
                return Err(format!("the function exited ({}){detail}", status?).into());
            }
        };
        match outcome {
            Outcome::Response(body) => {
                println!("{}: {}", file.display(), String::from_utf8_lossy(&body))
            }
            Outcome::Error(body) => {
                return Err(format!(
                    "{}: the function returned an error: {}",
                    file.display(),
                    String::from_utf8_lossy(&body)
                )
                .into())
            }
        }
    }
    child.kill().await?;
    Ok(())
}
