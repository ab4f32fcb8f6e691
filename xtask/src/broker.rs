//! Throwaway Kafka-compatible brokers for tests and benchmarks: tansu, in memory, on a free
//! localhost port, killed when dropped.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `TANSU_BIN`, else `tansu` on the PATH, else cargo's install folder.
pub fn binary() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("TANSU_BIN") {
        return Ok(PathBuf::from(path));
    }
    let on_path = std::env::var_os("PATH")
        .map(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join("tansu"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo")));
    on_path
        .into_iter()
        .chain(cargo_home.map(|home| home.join("bin/tansu")))
        .find(|path| path.is_file())
        .ok_or_else(|| {
            "the Kafka tests need the tansu broker: scripts/test installs it, or run \
             `cargo install tansu --locked --features dynostore` (about 15 minutes), \
             or set TANSU_BIN to its path"
                .to_owned()
        })
}

/// A running tansu.
pub struct Tansu {
    child: Child,
    /// Where it listens (127.0.0.1).
    pub port: u16,
}

impl Tansu {
    /// Starts tansu on a free port with `args` (e.g. `--authentication`), advertising
    /// `advertised_port` to clients (a proxy in front of it), or its own port when `None`.
    pub fn start(advertised_port: Option<u16>, args: &[&str]) -> Result<Self, String> {
        let port = crate::pg::free_port();
        let advertised = advertised_port.unwrap_or(port);
        let binary = binary()?;
        let mut child = Command::new(&binary)
            .args([
                "broker",
                "--listener-url",
                &format!("tcp://127.0.0.1:{port}"),
                "--advertised-listener-url",
                &format!("tcp://127.0.0.1:{advertised}"),
                "--storage-engine",
                "memory://tansu/",
            ])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting {}: {e}", binary.display()))?;
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!(
                    "tansu exited ({status}) before listening on {port}"
                ));
            }
            if started.elapsed() > Duration::from_secs(30) {
                let _ = child.kill();
                return Err(format!("tansu did not listen on {port} within 30 s"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(Self { child, port })
    }

    /// `127.0.0.1:port`, for `bootstrap.servers`.
    pub fn bootstrap_servers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Kills it now (also done on drop).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        self.stop();
    }
}
