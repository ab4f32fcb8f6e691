//! The function the mapping invokes: the real binary, started against a local Runtime API and
//! started again after a crash or a timeout (as Lambda replaces an execution environment), or
//! a function already served by `cargo lambda watch`, through the Lambda Invoke API.

use std::path::PathBuf;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::process::Child;

use crate::rules::Invocation;
use crate::runtime_api::{Answer, RuntimeApi};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// The function the mapping invokes.
pub enum Function {
    /// A binary this tool runs against its own Runtime API.
    Spawned(Spawned),
    /// A function served elsewhere (`cargo lambda watch`).
    Remote(Remote),
}

impl Function {
    /// Starts `binary` against a new local Runtime API. The function inherits this process's
    /// environment (`DATABASE_URL`, `POISON_POLICY`, ...).
    pub async fn spawn(binary: PathBuf) -> Result<Self, Error> {
        Self::spawn_with_env(binary, Vec::new()).await
    }

    /// As [`Function::spawn`], with `env` added to the function's environment.
    pub async fn spawn_with_env(
        binary: PathBuf,
        env: Vec<(String, String)>,
    ) -> Result<Self, Error> {
        if !binary.exists() {
            return Err(format!(
                "no function binary at {} (build it first, e.g. cargo build --bin NAME)",
                binary.display()
            )
            .into());
        }
        let api = RuntimeApi::start().await?;
        Ok(Self::Spawned(Spawned {
            api,
            binary,
            env,
            log: None,
            child: None,
            starts: 0,
        }))
    }

    /// A function served by `cargo lambda watch` at `endpoint` (e.g. `http://127.0.0.1:9000`).
    pub fn remote(endpoint: &str, name: &str) -> Self {
        Self::Remote(Remote {
            name: name.to_owned(),
            url: format!(
                "{}/2015-03-31/functions/{name}/invocations",
                endpoint.trim_end_matches('/')
            ),
            client: Client::builder(TokioExecutor::new()).build_http(),
        })
    }

    /// Invokes the function with `event`, its deadline `timeout` from now.
    pub async fn invoke(&mut self, event: String, timeout: Duration) -> Result<Invocation, Error> {
        match self {
            Self::Spawned(spawned) => spawned.invoke(event, timeout).await,
            Self::Remote(remote) => remote.invoke(event).await,
        }
    }

    /// Appends the function's output (its logs and metrics) to `path` instead of printing it.
    pub fn log_to(&mut self, path: PathBuf) {
        if let Self::Spawned(spawned) = self {
            spawned.log = Some(path);
        }
    }

    /// The function's ARN, as on-failure records name it.
    pub fn arn(&self) -> String {
        crate::runtime_api::function_arn(&match self {
            Self::Spawned(spawned) => crate::runtime_api::function_name(&spawned.binary),
            Self::Remote(remote) => remote.name.clone(),
        })
    }

    /// How many times the function process was started (0 for a remote function).
    pub fn starts(&self) -> u32 {
        match self {
            Self::Spawned(spawned) => spawned.starts,
            Self::Remote(_) => 0,
        }
    }

    /// Stops a spawned function's process.
    pub async fn stop(&mut self) {
        if let Self::Spawned(spawned) = self {
            if let Some(mut child) = spawned.child.take() {
                let _ = child.kill().await;
            }
        }
    }
}

/// A function binary run against the local Runtime API, restarted after a crash or timeout.
pub struct Spawned {
    api: RuntimeApi,
    binary: PathBuf,
    env: Vec<(String, String)>,
    /// Where the function's stdout and stderr go (default: this process's).
    log: Option<PathBuf>,
    child: Option<Child>,
    starts: u32,
}

impl Spawned {
    async fn invoke(&mut self, event: String, timeout: Duration) -> Result<Invocation, Error> {
        let mut child = match self.child.take() {
            Some(child) => child,
            None => {
                self.starts += 1;
                let mut command = self.api.function_command(&self.binary);
                command.envs(self.env.iter().map(|(k, v)| (k, v)));
                if let Some(path) = &self.log {
                    let file = std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(path)
                        .map_err(|e| format!("opening {}: {e}", path.display()))?;
                    command.stdout(file.try_clone()?).stderr(file);
                }
                command
                    .spawn()
                    .map_err(|e| format!("starting {}: {e}", self.binary.display()))?
            }
        };
        let outcome = tokio::select! {
            outcome = self.api.invoke(event, timeout) => outcome,
            status = child.wait() => {
                let status = status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
                let why = match self.api.wait_for_init_error(Duration::from_millis(100)).await {
                    Some(body) => format!("exited ({status}): {}", String::from_utf8_lossy(&body)),
                    None => format!("exited ({status})"),
                };
                if self.starts == 1 && self.api.polls() == 0 {
                    // It never got as far as asking for an event: starting it again will not help.
                    return Err(format!("the function {why}").into());
                }
                return Ok(Invocation::Crashed(why));
            }
        };
        match outcome {
            Ok(Answer::Response(body)) => {
                self.child = Some(child);
                Ok(Invocation::Response(body.to_vec()))
            }
            Ok(Answer::Error(body)) => {
                self.child = Some(child);
                Ok(Invocation::Error(body.to_vec()))
            }
            Err(_) => {
                // Lambda stops a timed-out environment; the next invocation gets a fresh one.
                let _ = child.kill().await;
                Ok(Invocation::Timeout)
            }
        }
    }
}

/// A function reached through the Invoke API.
pub struct Remote {
    name: String,
    url: String,
    client: Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
}

impl Remote {
    async fn invoke(&mut self, event: String) -> Result<Invocation, Error> {
        let request = hyper::Request::post(&self.url)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(event)))?;
        let response = self.client.request(request).await.map_err(|e| {
            format!(
                "invoking {}: {e} (is `cargo lambda watch` running?)",
                self.url
            )
        })?;
        let status = response.status();
        // The Invoke API answers 200 with X-Amz-Function-Error when the function failed;
        // cargo lambda watch answers 500 with the function's error document.
        let mut function_error = response.headers().contains_key("x-amz-function-error");
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("reading the response of {}: {e}", self.url))?
            .to_bytes()
            .to_vec();
        if status == hyper::StatusCode::INTERNAL_SERVER_ERROR {
            function_error |= serde_json::from_slice::<serde_json::Value>(&body)
                .is_ok_and(|error| error.get("errorMessage").is_some());
        }
        Ok(if function_error {
            Invocation::Error(body)
        } else if status.is_success() {
            Invocation::Response(body)
        } else {
            Invocation::Crashed(format!(
                "{} answered {status}: {}",
                self.url,
                String::from_utf8_lossy(&body)
            ))
        })
    }
}
