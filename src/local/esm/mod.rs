//! A local stand-in for Lambda's Kafka event source mapping: it reads a topic (a broker, or a
//! file), cuts batches as the mapping does, invokes the function and handles its response with
//! the mapping's rules for redelivery, retries, bisection, record age and the on-failure
//! destination. `esm-local run` is its command line.
//!
//! - [`batch`]: records, batches, the event JSON and the 6 MB cap (pure).
//! - [`rules`]: what an outcome means and what follows it (pure).
//! - [`file_topic`], `kafka`: sources. [`function`]: the function. [`destination`]: where
//!   given-up records go. [`runner`]: the loop that ties them together.

pub mod batch;
pub mod destination;
pub mod file_topic;
pub mod function;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod rules;
pub mod runner;
