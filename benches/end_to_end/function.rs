//! The function binary under a local Runtime API: started, invoked, its log lines read.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use esm_local::runtime_api::{Answer, RuntimeApi};
use msk_order_enricher::decode::event::KafkaEvent;
use msk_order_enricher::report::response::BatchResponse;
use tokio::process::Child;

const FUNCTION: &str = env!("CARGO_BIN_EXE_msk-order-enricher");

pub(crate) struct Function {
    pub(crate) api: RuntimeApi,
    pub(crate) child: Child,
    pub(crate) startup: Duration,
    /// The function's log lines, collected as it runs.
    pub(crate) log: std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
}

impl Function {
    /// A number field of the last invocation's log line.
    pub(crate) fn last_field(&self, name: &str) -> Option<u64> {
        let log = self.log.lock().ok()?;
        log.iter()
            .rev()
            .find(|line| line.get("total_ms").is_some())?
            .get(name)
            .and_then(serde_json::Value::as_u64)
    }

    /// A number field of the last log line that has it (debug lines included).
    pub(crate) fn last_of(&self, name: &str) -> Option<u64> {
        let log = self.log.lock().ok()?;
        log.iter()
            .rev()
            .find_map(|line| line.get(name).and_then(serde_json::Value::as_u64))
    }

    /// `(decode_ms, lookup_ms, write_ms, total_ms)` of the last invocation, from its log line.
    pub(crate) fn last_breakdown(&self) -> Option<(u64, u64, u64, u64)> {
        let log = self.log.lock().ok()?;
        let line = log
            .iter()
            .rev()
            .find(|line| line.get("total_ms").is_some())?;
        let field = |name: &str| line.get(name).and_then(serde_json::Value::as_u64);
        Some((
            field("decode_ms")?,
            field("lookup_ms")?,
            field("write_ms")?,
            field("total_ms")?,
        ))
    }
}

pub(crate) async fn start_function(url: &str, vars: &[(&str, &str)]) -> Function {
    let api = RuntimeApi::start().await.expect("runtime API");
    let mut command = api.function_command(Path::new(FUNCTION));
    command
        .env("DATABASE_URL", url)
        .env("METRICS_NAMESPACE", "off")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (name, value) in vars {
        command.env(name, value);
    }
    let spawned = Instant::now();
    let mut child = command.spawn().expect("starting the function");
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let stdout = child.stdout.take().expect("piped stdout");
    let sink = log.clone();
    tokio::spawn(async move {
        use tokio::io::AsyncBufReadExt;
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if let (Ok(value), Ok(mut log)) = (serde_json::from_str(&line), sink.lock()) {
                log.push(value);
            }
        }
    });
    while api.first_poll().is_none() {
        // A function that exits during its init (a bad setting, a missing library) never
        // polls: say so instead of waiting for ever.
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the function exited before its first /next ({status}); its stderr is above");
        }
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    let startup = api.first_poll().expect("first poll") - spawned;
    Function {
        api,
        child,
        startup,
        log,
    }
}

/// Wall time of one invocation, as the Runtime API sees it: event delivered to response posted.
pub(crate) async fn invoke(function: &Function, event: &KafkaEvent<'_>) -> Duration {
    let body = serde_json::to_vec(event).expect("event JSON");
    let started = Instant::now();
    let outcome = function
        .api
        .invoke(body, Duration::from_secs(120))
        .await
        .expect("an answer");
    let elapsed = started.elapsed();
    match outcome {
        Answer::Response(body) => {
            let response: BatchResponse = serde_json::from_slice(&body).expect("a batch response");
            assert_eq!(response, BatchResponse::default(), "every record written");
        }
        Answer::Error(body) => panic!("function error: {}", String::from_utf8_lossy(&body)),
    }
    elapsed
}

/// The peak resident memory of `child` so far (`VmHWM`).
pub(crate) fn peak_rss_kib(child: &Child) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id()?)).ok()?;
    status.lines().find_map(|line| {
        line.strip_prefix("VmHWM:")?
            .trim()
            .strip_suffix(" kB")?
            .trim()
            .parse()
            .ok()
    })
}
