//! The PostgreSQL server the tests of this process share.

use std::sync::OnceLock;

pub(crate) use test_support::pg::{PgOptions, PgServer};

/// The server the tests of this process share (each test makes its own database on it),
/// stopped when the process exits. `DATABASE_URL`, when set, names a server to use instead.
pub(crate) fn shared_admin_url() -> String {
    if let Ok(url) = std::env::var("DATABASE_URL") {
        return url;
    }
    static SHARED: OnceLock<PgServer> = OnceLock::new();
    let server = SHARED.get_or_init(|| {
        extern "C" fn stop_shared() {
            if let Some(server) = SHARED.get() {
                // Statics are never dropped: stop it explicitly on exit.
                server.stop_quietly();
                server.remove_files();
            }
        }
        let server = PgServer::start();
        unsafe { libc::atexit(stop_shared) };
        server
    });
    server.url("postgres")
}
