//! Throwaway Kafka-compatible brokers for tests and benchmarks: tansu, in memory, on a free
//! localhost port, killed when dropped.

use std::path::{Path, PathBuf};
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
             `cargo install tansu --version 0.6.0 --locked --features dynostore,libsql` \
             (10 to 25 minutes), or set TANSU_BIN to its path"
                .to_owned()
        })
}

/// tansu's in-memory storage, which every broker here uses unless told otherwise.
const IN_MEMORY: &str = "memory://tansu/";

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
        Self::launch(IN_MEMORY, None, advertised_port, args)
    }

    /// As [`Tansu::start`], storing topics, records and SCRAM users in the sqlite file `file`,
    /// which keeps them across restarts (in memory, tansu stores no users at all).
    pub fn start_on_file(
        file: &Path,
        advertised_port: Option<u16>,
        args: &[&str],
    ) -> Result<Self, String> {
        let (Some(dir), Some(name)) = (file.parent(), file.file_name()) else {
            return Err(format!("{} is not a file path", file.display()));
        };
        // tansu reads a sqlite:// path as relative to its working directory.
        Self::launch(
            &format!("sqlite://{}", name.to_string_lossy()),
            Some(dir),
            advertised_port,
            args,
        )
    }

    fn launch(
        storage: &str,
        working_dir: Option<&Path>,
        advertised_port: Option<u16>,
        args: &[&str],
    ) -> Result<Self, String> {
        let port = crate::pg::free_port();
        let advertised = advertised_port.unwrap_or(port);
        let binary = binary()?;
        let mut command = Command::new(&binary);
        if let Some(dir) = working_dir {
            command.current_dir(dir);
        }
        let mut child = command
            .args([
                "broker",
                "--listener-url",
                &format!("tcp://127.0.0.1:{port}"),
                "--advertised-listener-url",
                &format!("tcp://127.0.0.1:{advertised}"),
                "--storage-engine",
                storage,
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
                let hint = if storage.starts_with("sqlite:") {
                    " (sqlite storage needs tansu built with the libsql feature: scripts/test installs it so)"
                } else {
                    ""
                };
                return Err(format!(
                    "tansu exited ({status}) before listening on {port}{hint}"
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

    /// Stores the SCRAM-SHA-512 user `name` with `password` in the broker (which must run
    /// without `--authentication`, and on storage that keeps users), with tansu's own client.
    pub fn create_scram_user(&self, name: &str, password: &str) -> Result<(), String> {
        let binary = binary()?;
        let output = Command::new(&binary)
            .args(["user", "create", "--broker"])
            .arg(format!("tcp://127.0.0.1:{}", self.port))
            .args(["--mechanism", "scram512", name, password])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("running {} user create: {e}", binary.display()))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(format!(
                "tansu user create {name} failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            ))
        }
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
