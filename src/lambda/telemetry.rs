//! The one place that sets up logging: JSON lines by default (what CloudWatch Logs Insights
//! queries best), plain text when `AWS_LAMBDA_LOG_FORMAT=Text`; the level from
//! `AWS_LAMBDA_LOG_LEVEL`, else `RUST_LOG`, else `info`.
//!
//! `lambda_runtime::tracing::init_default_subscriber` reads the same variables but does not
//! fit: it writes text unless `AWS_LAMBDA_LOG_FORMAT=JSON` is set (so a function deployed
//! without `LoggingConfig` would log text), its JSON nests each event's fields under `fields`
//! (Logs Insights queries then need `fields.orders` instead of `orders`), and it panics when a
//! subscriber is already set, which the integration tests do once per process.

use tracing_subscriber::EnvFilter;

/// Installs the subscriber; a second call keeps the first.
pub fn init() {
    let level = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .ok()
        .map(|level| level.to_lowercase())
        .or_else(|| std::env::var("RUST_LOG").ok())
        .unwrap_or_else(|| "info".to_owned());
    let filter = EnvFilter::try_new(&level).unwrap_or_else(|_| EnvFilter::new("info"));
    let text = std::env::var("AWS_LAMBDA_LOG_FORMAT")
        .is_ok_and(|format| format.eq_ignore_ascii_case("text"));
    // At debug level the I/O steps' spans (database attempt, lookup, write) close with their
    // busy and idle time, so a slow invocation shows where its time went.
    let builder = tracing_subscriber::fmt()
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stdout);
    // A second initialisation (tests) is harmless: keep the first subscriber.
    let _ = if text {
        builder.without_time().try_init()
    } else {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init()
    };
}
