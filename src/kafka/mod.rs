//! The output topic: the records a plan gives ([`records`], pure), the producer that sends them
//! after the commit ([`producer`]), the delivery reports it waits for ([`delivery`]) and the
//! MSK IAM tokens it signs ([`msk_iam`]).

pub(crate) mod delivery;
pub(crate) mod msk_iam;
pub(crate) mod producer;
pub mod records;

pub use producer::ProducerError;
