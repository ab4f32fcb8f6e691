//! Throwaway PostgreSQL servers for tests and benchmarks: `initdb` in a temporary directory, a
//! free port on 127.0.0.1, stopped and deleted when dropped. Run as the `postgres` user when the
//! caller is root, since the server refuses to run as root. Panics, with what is missing, when
//! it cannot: it exists for tests.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tempfile::TempDir;

/// A throwaway PostgreSQL server, stopped and deleted when dropped.
pub struct PgServer {
    bin_dir: PathBuf,
    dir: TempDir,
    port: u16,
    run_as_postgres: bool,
    options: PgOptions,
}

/// How a test server differs from the default (trust authentication, no TLS).
#[derive(Default, Clone)]
pub struct PgOptions {
    /// Require passwords (SCRAM) on TCP; the superuser `postgres` gets this password.
    pub superuser_password: Option<String>,
    /// Serve TLS with this certificate chain and key (PEM).
    pub tls: Option<(String, String)>,
    /// Load pg_stat_statements, to count the statements a client sends.
    pub track_statements: bool,
}

impl PgServer {
    /// Initialises and starts a new server. Panics with what is missing when it cannot.
    pub fn start() -> Self {
        Self::start_with(PgOptions::default())
    }

    /// Initialises and starts a new server with `options`.
    pub fn start_with(options: PgOptions) -> Self {
        let bin_dir = find_bin_dir().unwrap_or_else(|| {
            panic!(
                "PostgreSQL server binaries (initdb, pg_ctl) not found on PATH, in PG_BIN_DIR or under \
                 /usr/lib/postgresql/*/bin. Install them (Debian: apt-get install -y postgresql) or set \
                 DATABASE_URL to a server where this user may create databases."
            )
        });
        let run_as_postgres = unsafe { libc::geteuid() } == 0;
        let dir = tempfile::Builder::new()
            .prefix("enricher-pg-")
            .tempdir()
            .expect("creating a temporary directory");
        let server = Self {
            bin_dir,
            dir,
            port: free_port(),
            run_as_postgres,
            options,
        };
        server.give_to_postgres(server.dir.path());
        let data_dir = server.data_dir();
        let mut args = vec![
            "-D",
            &data_dir,
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ];
        let password_file = server.dir.path().join("superuser-password");
        let password_file_arg = format!("--pwfile={}", password_file.display());
        match &server.options.superuser_password {
            Some(password) => {
                std::fs::write(&password_file, password).expect("writing the password file");
                server.give_to_postgres(&password_file);
                args.extend([
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                    &password_file_arg,
                ]);
            }
            None => args.push("--auth=trust"),
        }
        server.run("initdb", &args);
        if let Some((certificate, key)) = &server.options.tls {
            let data = server.dir.path().join("data");
            for (name, pem) in [("server.crt", certificate), ("server.key", key)] {
                let path = data.join(name);
                std::fs::write(&path, pem).expect("writing TLS files");
                std::fs::set_permissions(
                    &path,
                    std::os::unix::fs::PermissionsExt::from_mode(0o600),
                )
                .expect("restricting the key");
                server.give_to_postgres(&path);
            }
        }
        server.start_again();
        server
    }

    fn give_to_postgres(&self, path: &Path) {
        if self.run_as_postgres {
            let (uid, gid) = postgres_ids();
            std::os::unix::fs::chown(path, Some(uid), Some(gid))
                .expect("giving a file to postgres");
        }
    }

    /// Its port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A connection URL for `database` as the superuser.
    pub fn url(&self, database: &str) -> String {
        match &self.options.superuser_password {
            Some(password) => format!(
                "postgres://postgres:{password}@127.0.0.1:{}/{database}",
                self.port
            ),
            None => format!("postgres://postgres@127.0.0.1:{}/{database}", self.port),
        }
    }

    /// Stops the server, cutting existing connections (as a failover or crash would).
    pub fn stop(&self) {
        self.run(
            "pg_ctl",
            &["-D", &self.data_dir(), "-m", "fast", "-w", "stop"],
        );
    }

    /// Starts the server again on the same port and data (after `stop`).
    pub fn start_again(&self) {
        let mut options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off",
            self.port,
            self.dir.path().display()
        );
        if self.options.tls.is_some() {
            options.push_str(" -c ssl=on -c ssl_cert_file=server.crt -c ssl_key_file=server.key");
        }
        if self.options.track_statements {
            options.push_str(
                " -c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track=all",
            );
        }
        let log = self.dir.path().join("server.log");
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data_dir(),
                "-l",
                &log.display().to_string(),
                "-o",
                &options,
                "-w",
                "-t",
                "60",
                "start",
            ],
        );
    }

    /// Its data directory.
    pub fn data_dir(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    /// Runs a PostgreSQL program (as the server's owner), panicking with its output on failure.
    pub fn run(&self, program: &str, args: &[&str]) -> Output {
        let binary = self.bin_dir.join(program);
        let mut command = if self.run_as_postgres {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(&binary);
            command
        } else {
            Command::new(&binary)
        };
        let output = command
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .unwrap_or_else(|error| panic!("running {}: {error}", binary.display()));
        if !output.status.success() {
            let log =
                std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
            panic!(
                "{} {args:?} failed ({}):\n{}\n{}\nserver log:\n{log}",
                binary.display(),
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        output
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        self.stop_quietly();
    }
}

impl PgServer {
    /// Stops the server without waiting for clients and without panicking (for Drop and exit).
    /// Deletes the server's directory (for servers that are never dropped).
    pub fn remove_files(&self) {
        let _ = std::fs::remove_dir_all(self.dir.path());
    }

    /// Stops the server, ignoring failures (for exit handlers).
    pub fn stop_quietly(&self) {
        let binary = self.bin_dir.join("pg_ctl");
        let data = self.data_dir();
        let args = ["-D", data.as_str(), "-m", "immediate", "-w", "stop"];
        let _ = if self.run_as_postgres {
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(&binary)
                .args(args)
                .output()
        } else {
            Command::new(&binary).args(args).output()
        };
    }
}

fn find_bin_dir() -> Option<PathBuf> {
    if let Ok(dir) = std::env::var("PG_BIN_DIR") {
        return Some(PathBuf::from(dir)).filter(|dir| dir.join("initdb").exists());
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .find(|dir| dir.join("initdb").exists() && dir.join("pg_ctl").exists());
    if let Some(dir) = on_path {
        // Follow links (/usr/local/bin/initdb -> /usr/lib/postgresql/15/bin/initdb) so that
        // pg_ctl finds the matching postgres binary beside it.
        let real = std::fs::canonicalize(dir.join("initdb")).ok();
        return real
            .and_then(|path| path.parent().map(Path::to_path_buf))
            .or(Some(dir));
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| entry.ok().map(|entry| entry.path().join("bin")))
        .filter(|dir| dir.join("initdb").exists())
        .collect();
    versions.sort();
    versions.pop()
}

fn postgres_ids() -> (u32, u32) {
    let id = |flag: &str| -> u32 {
        let output = Command::new("id")
            .args([flag, "postgres"])
            .output()
            .expect("running id");
        String::from_utf8_lossy(&output.stdout).trim().parse().unwrap_or_else(|_| {
            panic!("running as root but there is no `postgres` user to run the server as (useradd postgres)")
        })
    };
    (id("-u"), id("-g"))
}

pub(crate) fn free_port() -> u16 {
    TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("finding a free port")
}
