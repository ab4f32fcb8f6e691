//! Lambda's Kafka event source mapping, on your machine, for any function.
//!
//! It reads a topic (a Kafka-compatible broker, or a file), cuts batches as the mapping does,
//! invokes the function through a local Lambda Runtime API (or a running `cargo lambda watch`),
//! and handles each answer with the mapping's rules: partial batch responses, whole-batch
//! retries, bisection, record age, and the on-failure destination. It knows nothing about the
//! function it drives.
//!
//! The flow, one module a step:
//! - [`source`]: records from a file topic, a broker (feature `kafka`) or an on-failure
//!   document's payload.
//! - [`filter`]: `FilterCriteria`, records that never reach the function.
//! - [`batch`] (pure): records, batches, the event JSON and the 6 MB cap.
//! - [`function`]: the function, spawned against [`runtime_api`] or reached over HTTP.
//! - [`rules`] (pure): what an answer means and what follows it.
//! - [`on_failure`]: where given-up records go, and the documents they are kept in.
//! - [`runner`]: the loop that ties them together (`esm-local run`); [`template`]: its
//!   settings as a SAM or CloudFormation template deploys them; [`replay`]: on-failure
//!   documents delivered again through the runner (`esm-local replay`).
//! - [`clock`]: the time of day in epoch milliseconds, as events carry it.

pub mod batch;
pub mod clock;
pub mod filter;
pub mod function;
pub mod on_failure;
pub mod replay;
pub mod rules;
pub mod runner;
pub mod runtime_api;
pub mod source;
pub mod template;

/// The ARN the events of an `aws:kafka` source carry (a made-up MSK cluster).
pub const EVENT_SOURCE_ARN: &str =
    "arn:aws:kafka:us-east-1:123456789012:cluster/esm-local/751d2973-a626-431c-9d4e-d7975eb44dd7-2";
