//! The database write: one transaction per invocation bounded by the deadline, with transient
//! failures waited out inside the invocation ([`write`](mod@write)); the statements it runs
//! ([`statements`]), the binary `COPY` framing ([`copy`]) and what each database error means
//! for the batch ([`errors`]).

pub(crate) mod copy;
pub(crate) mod database;
pub mod errors;
pub mod statements;
pub(crate) mod write;

pub use write::WriteFailure;
