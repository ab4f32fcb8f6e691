//! Reports an initialisation failure (bad configuration) through the Lambda Runtime API's
//! `/runtime/init/error`, so that it shows in the invocation result and the function's
//! metrics instead of as an unexplained crash. `lambda_runtime` only does this for SnapStart.

use http::{Method, Request};
use lambda_runtime::Diagnostic;
use lambda_runtime_api_client::body::Body;
use lambda_runtime_api_client::{build_request, Client};

/// Logs the failure and posts it to `/runtime/init/error` when running under Lambda.
pub async fn report(error_type: &str, message: &str) {
    tracing::error!(error_type, "{message}");
    let Ok(api) = std::env::var("AWS_LAMBDA_RUNTIME_API") else {
        return; // not under Lambda: the log line and the exit code say it all
    };
    if let Err(problem) = post(&api, error_type, message).await {
        tracing::error!("could not report the init error to the Runtime API at {api}: {problem}");
    }
}

async fn post(api: &str, error_type: &str, message: &str) -> Result<(), lambda_runtime::Error> {
    let endpoint: http::Uri = format!("http://{api}").parse()?;
    let client = Client::builder().with_endpoint(endpoint).build()?;
    let diagnostic = Diagnostic {
        error_type: error_type.to_owned(),
        error_message: message.to_owned(),
    };
    let request: Request<Body> = build_request()
        .method(Method::POST)
        .uri("/2018-06-01/runtime/init/error")
        .header("lambda-runtime-function-error-type", "Runtime.InitError")
        .body(Body::from(serde_json::to_vec(&diagnostic)?))?;
    let response = client.call(request).await?;
    if !response.status().is_success() {
        return Err(format!("status {}", response.status()).into());
    }
    Ok(())
}
