//! `cargo xtask`: development tasks that know this function's schema.
//!
//! - `cargo xtask setup-db --customers fixtures/customers.csv`: apply `migrations/` to
//!   DATABASE_URL and load customers.
//! - `cargo xtask show`: print the enriched orders and dead letters in DATABASE_URL.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use sqlx::postgres::PgPoolOptions;
use test_support::db;

type Error = Box<dyn std::error::Error + Send + Sync>;

#[derive(Parser)]
#[command(about = "Development tasks for msk-order-enricher")]
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
    /// Print the enriched orders and dead letters in DATABASE_URL.
    Show,
}

#[tokio::main]
async fn main() -> ExitCode {
    // `cargo xtask show | head` ends quietly, as command-line tools do, instead of panicking on
    // the closed pipe.
    // SAFETY: restoring the default disposition of SIGPIPE before any thread relies on it.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let result = match Cli::parse().command {
        Command::SetupDb { customers } => setup_db(customers).await,
        Command::Show => show().await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("xtask: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn connect() -> Result<sqlx::PgPool, Error> {
    let url = std::env::var("DATABASE_URL").map_err(|_| "DATABASE_URL is not set")?;
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await
        .map_err(|e| format!("connecting to DATABASE_URL: {e}"))?;
    Ok(pool)
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
