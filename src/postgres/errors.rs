//! What a database error means for the batch, decided by its kind and SQLSTATE, never by its
//! message: wait and try again inside the invocation, re-read the credentials, give up because
//! the time budget ran out, or give up because a value was refused.

use std::time::Duration;

/// How the invocation reacts to a database error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The connection or the server is briefly unavailable, or the transaction lost a race
    /// (serialization failure, deadlock): waiting a little and trying again may succeed.
    Transient,
    /// The credentials were refused (SQLSTATE class 28): re-read the secret once.
    Authentication,
    /// The server-side time budget (`statement_timeout`, `lock_timeout`) ran out: the
    /// deadline is near, and the transaction was rolled back.
    OutOfTime,
    /// A value was refused (SQLSTATE classes 22 and 23, and 54000 for a row over one of the
    /// server's limits, such as an index entry too large for a B-tree page): trying again
    /// cannot help, but the batch without that row can be written.
    Data,
    /// Anything else (configuration, TLS verification, a bug): not retried.
    Permanent,
}

/// The class of `error`.
pub fn classify(error: &sqlx::Error) -> ErrorClass {
    match error {
        sqlx::Error::Database(database) => database
            .code()
            .map_or(ErrorClass::Permanent, |code| classify_sqlstate(&code)),
        // Refused, reset or broken connections; a failed certificate check also arrives as
        // an I/O error from rustls, and waiting does not fix that.
        sqlx::Error::Io(io) => {
            let certificate = io
                .get_ref()
                .is_some_and(|inner| inner.to_string().contains("certificate"));
            if certificate {
                ErrorClass::Permanent
            } else {
                ErrorClass::Transient
            }
        }
        sqlx::Error::PoolTimedOut | sqlx::Error::WorkerCrashed => ErrorClass::Transient,
        _ => ErrorClass::Permanent,
    }
}

/// The class of a SQLSTATE.
pub fn classify_sqlstate(code: &str) -> ErrorClass {
    match code {
        // connection_exception (08xxx); admin, crash and cannot-connect-now shutdowns (a
        // failover); too many connections; serialization failure and deadlock.
        c if c.starts_with("08") => ErrorClass::Transient,
        "57P01" | "57P02" | "57P03" | "53300" | "40001" | "40P01" => ErrorClass::Transient,
        // query_canceled (statement_timeout) and lock_not_available (lock_timeout).
        "57014" | "55P03" => ErrorClass::OutOfTime,
        c if c.starts_with("28") => ErrorClass::Authentication,
        // program_limit_exceeded: what one row holds is over a limit of the server (an order
        // number longer than a B-tree entry may be); the other rows of the batch are not.
        c if c.starts_with("22") || c.starts_with("23") || c == "54000" => ErrorClass::Data,
        _ => ErrorClass::Permanent,
    }
}

/// The SQLSTATE of `error`, if the server sent one.
pub fn sqlstate(error: &sqlx::Error) -> Option<String> {
    match error {
        sqlx::Error::Database(database) => database.code().map(|code| code.into_owned()),
        _ => None,
    }
}

/// The wait before retry `attempt` (1, 2, ...): exponential from 100 ms, capped at 2 s, with
/// full jitter (`jitter` in 0..1) so that environments that failed together do not come back
/// together.
pub fn backoff(attempt: u32, jitter: f64) -> Duration {
    let ceiling_ms = 100u64
        .saturating_mul(1u64 << attempt.saturating_sub(1).min(10))
        .min(2_000);
    // Jitter keeps at least half of the ceiling, so a retry never hammers the server.
    Duration::from_millis(ceiling_ms / 2).mul_f64(1.0 + jitter.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstates_are_classified_by_what_helps() {
        let cases = [
            ("08006", ErrorClass::Transient),
            ("08001", ErrorClass::Transient),
            ("57P01", ErrorClass::Transient),
            ("57P03", ErrorClass::Transient),
            ("53300", ErrorClass::Transient),
            ("40001", ErrorClass::Transient),
            ("40P01", ErrorClass::Transient),
            ("57014", ErrorClass::OutOfTime),
            ("55P03", ErrorClass::OutOfTime),
            ("28P01", ErrorClass::Authentication),
            ("28000", ErrorClass::Authentication),
            ("22008", ErrorClass::Data),
            ("23505", ErrorClass::Data),
            ("42P01", ErrorClass::Permanent),
        ];
        for (code, class) in cases {
            assert_eq!(classify_sqlstate(code), class, "{code}");
        }
    }

    #[test]
    fn a_row_over_a_server_limit_is_a_data_error_and_other_limits_are_not() {
        assert_eq!(classify_sqlstate("54000"), ErrorClass::Data);
        assert_eq!(
            classify_sqlstate("54001"),
            ErrorClass::Permanent,
            "statement too complex"
        );
    }

    #[test]
    fn connection_failures_are_transient_and_certificate_failures_are_not() {
        let refused = sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert_eq!(classify(&refused), ErrorClass::Transient);
        assert_eq!(classify(&sqlx::Error::PoolTimedOut), ErrorClass::Transient);
        let certificate = sqlx::Error::Io(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "invalid peer certificate: UnknownIssuer",
        ));
        assert_eq!(classify(&certificate), ErrorClass::Permanent);
        assert_eq!(classify(&sqlx::Error::RowNotFound), ErrorClass::Permanent);
    }

    #[test]
    fn backoff_doubles_to_a_cap_and_keeps_half_of_it() {
        let ms = |attempt, jitter| backoff(attempt, jitter).as_millis();
        assert_eq!([ms(1, 0.0), ms(2, 0.0), ms(3, 0.0)], [50, 100, 200]);
        assert_eq!([ms(1, 1.0), ms(2, 1.0), ms(3, 1.0)], [100, 200, 400]);
        assert_eq!(ms(5, 1.0), 1_600);
        assert_eq!(ms(6, 1.0), 2_000, "capped");
        assert_eq!(ms(40, 0.5), 1_500, "no overflow on long outages");
    }
}
