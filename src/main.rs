//! The Lambda function's entry point: read the configuration, build what every invocation
//! shares, then serve invocations until the environment is shut down.

use std::process::ExitCode;

use lambda_runtime::{layers::TracingLayer, service_fn, LambdaEvent, Runtime};
use msk_order_enricher::config::Config;
use msk_order_enricher::handler;
use msk_order_enricher::lambda::raw_body::{RawBodies, RawBodyLayer};
use msk_order_enricher::lambda::{init_error, memory, telemetry};
use msk_order_enricher::startup::App;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    telemetry::init();
    if !memory::reuse_large_buffers() {
        tracing::debug!("the allocator keeps its own thresholds");
    }
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
    // The body reaches the handler unparsed: the handler parses it once (see raw_body).
    let bodies = RawBodies::default();
    let taken = bodies.clone();
    let handler = service_fn(move |event: LambdaEvent<()>| {
        let body = taken.take(&event.context.request_id);
        handler::handle(app, body, event.context)
    });
    let runtime = Runtime::new(handler)
        .layer(RawBodyLayer::new(bodies))
        .layer(TracingLayer::new());
    match runtime.run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("runtime stopped: {error}");
            ExitCode::FAILURE
        }
    }
}
