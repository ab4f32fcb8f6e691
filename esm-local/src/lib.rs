//! Lambda's Kafka event source mapping, on your machine, for any function.
//!
//! It reads a topic (a Kafka-compatible broker, or a file), cuts batches as the mapping does,
//! invokes the function through a local Lambda Runtime API (or a running `cargo lambda watch`),
//! and handles each answer with the mapping's rules: partial batch responses, whole-batch
//! retries, bisection, record age, and the on-failure destination. It knows nothing about the
//! function it drives.
//!
//! The flow, one module a step:
//! - [`file_topic`], `kafka` (feature `kafka`): sources of [`batch::SourceRecord`]s;
//!   [`partitioner`]: Kafka's default partitioner for file topics.
//! - [`filter`]: `FilterCriteria`, records that never reach the function.
//! - [`batch`] (pure): records, batches, the event JSON and the 6 MB cap.
//! - [`function`]: the function, spawned against [`runtime_api`] or reached over HTTP.
//! - [`rules`] (pure): what an answer means and what follows it.
//! - [`destination`]: where given-up records go; [`replay`]: re-driving them, each
//!   document's payload ([`payload`]) as a source of its own.
//! - [`runner`]: the loop that ties them together (`esm-local run`); [`template`]: its
//!   settings as a SAM or CloudFormation template deploys them.

pub mod batch;
pub mod clock;
pub mod destination;
pub mod file_topic;
pub mod filter;
pub mod function;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod partitioner;
pub mod payload;
pub mod replay;
pub mod rules;
pub mod runner;
pub mod runtime_api;
pub mod template;

/// The ARN the events of an `aws:kafka` source carry (a made-up MSK cluster).
pub const EVENT_SOURCE_ARN: &str =
    "arn:aws:kafka:us-east-1:123456789012:cluster/esm-local/751d2973-a626-431c-9d4e-d7975eb44dd7-2";
