//! Response out: the partial batch response ([`response`]), what the invocation did as one
//! value and one log line ([`summary`]), and the metrics derived from it ([`metrics`]).

pub mod metrics;
pub mod response;
pub mod summary;
