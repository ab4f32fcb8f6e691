//! The Lambda function's entry point: read the configuration, build what every invocation
//! shares, then serve invocations until the environment is shut down.

use std::process::ExitCode;

use lambda_runtime::{service_fn, LambdaEvent};
use msk_order_enricher::config::Config;
use msk_order_enricher::handler;
use msk_order_enricher::startup::App;
use msk_order_enricher::{init_error, telemetry};
use serde_json::value::RawValue;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    telemetry::init();
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(error) => {
            init_error::report("Runtime.ConfigurationError", &error.to_string()).await;
            return ExitCode::FAILURE;
        }
    };
    let app = match App::new(&config).await {
        Ok(app) => app,
        Err(error) => {
            init_error::report(error.error_type(), &error.to_string()).await;
            return ExitCode::FAILURE;
        }
    };
    let app = &app;
    let handler = service_fn(move |event: LambdaEvent<Box<RawValue>>| handler::handle(app, event));
    match lambda_runtime::run(handler).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("runtime stopped: {error}");
            ExitCode::FAILURE
        }
    }
}
