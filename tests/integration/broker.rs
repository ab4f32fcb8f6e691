//! A real Kafka-compatible broker for the tests: tansu with in-memory storage on a free
//! localhost port, shared by the tests of this process (each uses its own topics and consumer
//! groups) and stopped when it exits.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};

static TANSU: OnceLock<(String, Mutex<Child>)> = OnceLock::new();

/// `TANSU_BIN`, else `tansu` on the PATH, else cargo's install folder.
fn tansu_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("TANSU_BIN") {
        return PathBuf::from(path);
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
        .unwrap_or_else(|| {
            panic!(
                "the Kafka tests need the tansu broker: scripts/test installs it, or run \
                 `cargo install tansu --locked --features dynostore` (about 15 minutes), \
                 or set TANSU_BIN to its path"
            )
        })
}

/// The bootstrap servers of the shared broker, started on first use.
pub fn bootstrap_servers() -> String {
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
