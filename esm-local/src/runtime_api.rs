//! A Lambda Runtime API served on localhost, so the real function binary can be run and
//! invoked exactly as Lambda does: it polls `/next`, posts a response or an error, or posts an
//! init error and exits.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tokio::process::Command;
use tokio::sync::{oneshot, Notify};

const PREFIX: &str = "/2018-06-01/runtime";

/// The ARN Lambda would give a function of this name (in a made-up account).
pub fn function_arn(name: &str) -> String {
    format!("arn:aws:lambda:us-east-1:000000000000:function:{name}")
}

/// Lambda names a function; locally the binary's file name stands for it, as cargo-lambda does.
pub fn function_name(binary: &Path) -> String {
    binary.file_name().map_or_else(
        || "function".to_owned(),
        |name| name.to_string_lossy().into_owned(),
    )
}

/// How an invocation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The body the function posted to `/response`.
    Response(Bytes),
    /// The body the function posted to `/error`.
    Error(Bytes),
}

/// An invocation that got no outcome.
#[derive(Debug)]
pub enum InvokeError {
    /// No response within the timeout plus a grace period: the function hung or died.
    NoAnswer(Duration),
}

impl std::fmt::Display for InvokeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NoAnswer(waited) => write!(f, "the function did not answer within {waited:?}"),
        }
    }
}

impl std::error::Error for InvokeError {}

struct Pending {
    request_id: String,
    deadline_ms: u64,
    body: Bytes,
}

#[derive(Default)]
struct Shared {
    queue: Mutex<VecDeque<Pending>>,
    queued: Notify,
    waiting: Mutex<HashMap<String, oneshot::Sender<Answer>>>,
    init_error: Mutex<Option<Bytes>>,
    init_error_posted: Notify,
    first_poll: Mutex<Option<Instant>>,
    polls: AtomicU64,
    next_id: AtomicU64,
    /// The ARN `/next` names, set when a function command is made.
    function_arn: Mutex<String>,
}

/// The Runtime API. Dropping it stops the server.
pub struct RuntimeApi {
    address: SocketAddr,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl RuntimeApi {
    /// Serves the API on a free port of 127.0.0.1.
    pub async fn start() -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let address = listener.local_addr()?;
        let shared = Arc::new(Shared::default());
        let router = Router::new()
            .route(&format!("{PREFIX}/invocation/next"), get(next))
            .route(
                &format!("{PREFIX}/invocation/{{id}}/response"),
                post(respond),
            )
            .route(&format!("{PREFIX}/invocation/{{id}}/error"), post(fail))
            .route(&format!("{PREFIX}/init/error"), post(init_error))
            .with_state(shared.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Ok(Self {
            address,
            shared,
            server,
        })
    }

    /// The value for `AWS_LAMBDA_RUNTIME_API`.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Queues an invocation with a deadline `timeout` from now and waits for its outcome.
    pub async fn invoke(
        &self,
        body: impl Into<Bytes>,
        timeout: Duration,
    ) -> Result<Answer, InvokeError> {
        let request_id = format!(
            "local-{:06}",
            self.shared.next_id.fetch_add(1, Ordering::Relaxed) + 1
        );
        let deadline_ms = epoch_ms().saturating_add(crate::clock::millis(timeout).unsigned_abs());
        let (sender, receiver) = oneshot::channel();
        lock(&self.shared.waiting).insert(request_id.clone(), sender);
        lock(&self.shared.queue).push_back(Pending {
            request_id,
            deadline_ms,
            body: body.into(),
        });
        self.shared.queued.notify_one();
        // Lambda gives a function its timeout and then stops it; allow a little for transport.
        let wait = timeout + Duration::from_secs(2);
        match tokio::time::timeout(wait, receiver).await {
            Ok(Ok(outcome)) => Ok(outcome),
            _ => Err(InvokeError::NoAnswer(wait)),
        }
    }

    /// Waits up to `timeout` for the function to post an init error, and returns its body.
    pub async fn wait_for_init_error(&self, timeout: Duration) -> Option<Bytes> {
        let posted = self.shared.init_error_posted.notified();
        if let Some(body) = lock(&self.shared.init_error).clone() {
            return Some(body);
        }
        let _ = tokio::time::timeout(timeout, posted).await;
        lock(&self.shared.init_error).clone()
    }

    /// When the function first polled `/next`: the end of its start-up.
    pub fn first_poll(&self) -> Option<Instant> {
        *lock(&self.shared.first_poll)
    }

    /// How many times the function has polled `/next`.
    pub fn polls(&self) -> u64 {
        self.shared.polls.load(Ordering::Relaxed)
    }

    /// A command that starts `binary` as Lambda would, pointed at this API. Add the function's
    /// own configuration with `env` and spawn it.
    pub fn function_command(&self, binary: &Path) -> Command {
        let name = function_name(binary);
        *lock(&self.shared.function_arn) = function_arn(&name);
        let mut command = Command::new(binary);
        command
            .env("AWS_LAMBDA_RUNTIME_API", self.address.to_string())
            .env("AWS_LAMBDA_FUNCTION_NAME", &name)
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "local")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}"))
            .env("AWS_REGION", "us-east-1")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        command
    }
}

async fn next(State(shared): State<Arc<Shared>>) -> Response {
    lock(&shared.first_poll).get_or_insert_with(Instant::now);
    shared.polls.fetch_add(1, Ordering::Relaxed);
    let pending = loop {
        if let Some(pending) = lock(&shared.queue).pop_front() {
            break pending;
        }
        shared.queued.notified().await;
    };
    let mut headers = HeaderMap::new();
    let mut set = |name: &'static str, value: &str| {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(name, value);
        }
    };
    set("lambda-runtime-aws-request-id", &pending.request_id);
    set(
        "lambda-runtime-deadline-ms",
        &pending.deadline_ms.to_string(),
    );
    let arn = lock(&shared.function_arn).clone();
    set("lambda-runtime-invoked-function-arn", &arn);
    set(
        "lambda-runtime-trace-id",
        "Root=1-00000000-000000000000000000000000;Sampled=0",
    );
    set("content-type", "application/json");
    (StatusCode::OK, headers, pending.body).into_response()
}

async fn respond(
    State(shared): State<Arc<Shared>>,
    UrlPath(id): UrlPath<String>,
    body: Bytes,
) -> StatusCode {
    complete(&shared, &id, Answer::Response(body))
}

async fn fail(
    State(shared): State<Arc<Shared>>,
    UrlPath(id): UrlPath<String>,
    body: Bytes,
) -> StatusCode {
    complete(&shared, &id, Answer::Error(body))
}

fn complete(shared: &Shared, id: &str, outcome: Answer) -> StatusCode {
    match lock(&shared.waiting).remove(id) {
        Some(sender) => {
            let _ = sender.send(outcome);
            StatusCode::ACCEPTED
        }
        None => StatusCode::BAD_REQUEST,
    }
}

async fn init_error(State(shared): State<Arc<Shared>>, body: Bytes) -> StatusCode {
    *lock(&shared.init_error) = Some(body);
    shared.init_error_posted.notify_waiters();
    StatusCode::ACCEPTED
}

fn epoch_ms() -> u64 {
    crate::clock::now_ms().unsigned_abs()
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
