//! A real Kafka-compatible broker for the tests: tansu with in-memory storage on a free
//! localhost port, shared by the tests of this process (each uses its own topics and consumer
//! groups) and stopped when it exits.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};

static TANSU: OnceLock<(String, Mutex<Child>)> = OnceLock::new();

fn tansu_binary() -> PathBuf {
    test_support::broker::binary().unwrap_or_else(|why| panic!("{why}"))
}

/// The bootstrap servers of the shared broker, started on first use.
pub(crate) fn bootstrap_servers() -> String {
    let (servers, _) = TANSU.get_or_init(|| {
        extern "C" fn stop_tansu() {
            if let Some((_, child)) = TANSU.get() {
                if let Ok(mut child) = child.lock() {
                    let _ = child.kill();
                    let _ = child.wait();
                }
            }
        }
        let port = crate::support::free_port();
        let url = format!("tcp://127.0.0.1:{port}");
        let binary = tansu_binary();
        let mut child = Command::new(&binary)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "memory://tansu/"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", binary.display()));
        crate::support::wait_until_listening(&mut child, port, "tansu");
        unsafe { libc::atexit(stop_tansu) };
        (format!("127.0.0.1:{port}"), Mutex::new(child))
    });
    servers.clone()
}

/// A tansu of one test's own, for tests that take the broker away. Killed when dropped.
pub(crate) struct Dedicated(test_support::broker::Tansu);

impl Dedicated {
    /// Starts tansu on a free port, telling clients to connect to `advertised_port` (a proxy in
    /// front of it, so that cutting the proxy cuts every connection the clients make).
    pub(crate) fn behind(advertised_port: u16) -> Self {
        Self::start(Some(advertised_port), &[])
    }

    /// Starts tansu with `args`, advertising `advertised_port`, or its own port when `None`.
    pub(crate) fn start(advertised_port: Option<u16>, args: &[&str]) -> Self {
        Self(
            test_support::broker::Tansu::start(advertised_port, args)
                .unwrap_or_else(|why| panic!("{why}")),
        )
    }
}

impl Dedicated {
    /// Starts tansu storing in the sqlite file `file` (see `test_support::broker::Tansu::start_on_file`).
    pub(crate) fn start_on_file(
        file: &std::path::Path,
        advertised_port: Option<u16>,
        args: &[&str],
    ) -> Self {
        Self(
            test_support::broker::Tansu::start_on_file(file, advertised_port, args)
                .unwrap_or_else(|why| panic!("{why}")),
        )
    }
}

impl std::ops::Deref for Dedicated {
    type Target = test_support::broker::Tansu;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

/// A TCP proxy on a fixed port that can be cut (every connection closed, new ones refused)
/// and restored: to the clients behind it, the broker is gone and comes back.
pub(crate) struct Proxy {
    pub port: u16,
    running: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Proxy {
    /// A proxy on a free port; call [`Proxy::restore`] to start it.
    pub(crate) fn new() -> Self {
        Self {
            port: crate::support::free_port(),
            running: Mutex::new(None),
        }
    }

    /// Accepts connections and forwards them to `upstream`.
    pub(crate) async fn restore(&self, upstream: u16) {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", self.port))
            .await
            .expect("binding the proxy port");
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    continue;
                };
                connections.spawn(async move {
                    if let Ok(mut outbound) =
                        tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await
                    {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        *self.running.lock().unwrap() = Some(task);
    }

    /// Closes the listener and every connection through it.
    pub(crate) async fn cut(&self) {
        let task = self.running.lock().unwrap().take();
        if let Some(task) = task {
            // Aborting the task drops the listener and the JoinSet, which aborts every
            // connection's task and closes both of its sockets.
            task.abort();
            let _ = task.await;
        }
    }
}

/// A server that accepts connections and reads what clients send, but never answers: a broker
/// that has stopped acknowledging.
pub(crate) async fn silent_broker() -> (u16, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let mut connections = tokio::task::JoinSet::new();
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                continue;
            };
            connections.spawn(async move {
                let mut sink = tokio::io::sink();
                let _ = tokio::io::copy(&mut socket, &mut sink).await;
            });
        }
    });
    (port, task)
}
