//! Real Secrets Manager, SQS and S3 APIs for the tests: moto in server mode on a free localhost port,
//! shared by the tests of this process and stopped when it exits.

use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};

use aws_config::{BehaviorVersion, Region};
use aws_sdk_secretsmanager::config::Credentials;

static MOTO: OnceLock<(String, Mutex<Child>)> = OnceLock::new();

/// The endpoint URL of the shared moto server, started on first use.
pub(crate) fn endpoint() -> String {
    let (endpoint, _) = MOTO.get_or_init(|| {
        extern "C" fn stop_moto() {
            if let Some((_, child)) = MOTO.get() {
                if let Ok(mut child) = child.lock() {
                    let _ = child.kill();
                    let _ = child.wait();
                }
            }
        }
        let port = crate::support::free_port();
        let mut child = Command::new("python3")
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting moto: python3 is missing (moto's server needs Python 3: pip install 'moto[server]')");
        crate::support::wait_until_listening(&mut child, port, "moto's server (install it with pip install 'moto[server]')");
        unsafe { libc::atexit(stop_moto) };
        (format!("http://127.0.0.1:{port}"), Mutex::new(child))
    });
    endpoint.clone()
}

/// The environment that points the function's AWS SDK at moto.
pub(crate) fn function_env() -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ENDPOINT_URL", endpoint()),
        ("AWS_ACCESS_KEY_ID", "testing".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "testing".to_owned()),
        ("AWS_REGION", "us-east-1".to_owned()),
    ]
}

async fn config() -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "tests"))
        .load()
        .await
}

pub(crate) async fn client() -> aws_sdk_secretsmanager::Client {
    aws_sdk_secretsmanager::Client::new(&config().await)
}

pub(crate) async fn sqs_client() -> aws_sdk_sqs::Client {
    aws_sdk_sqs::Client::new(&config().await)
}

/// An S3 client for moto (path-style bucket addresses).
pub(crate) async fn s3_client() -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&config().await)
            .force_path_style(true)
            .build(),
    )
}
