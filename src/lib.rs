//! An AWS Lambda function for Amazon MSK's event source mapping: it decodes batches of order
//! records, enriches each order with the customer's location from PostgreSQL, writes them so
//! that retries never duplicate or reorder anything, and answers with a Kafka partial batch
//! response naming exactly the records to redeliver.
//!
//! The flow, one module a step: [`event`] (decode) → [`plan`] (pure: what to write, what to
//! dead-letter, what to report) → [`enrich`] (lookup through [`cache`]) → [`store`] (one
//! statement) → [`response`]. [`handler`] strings them together.

pub mod cache;
pub mod config;
pub mod credentials;
pub mod enrich;
pub mod event;
pub mod handler;
pub mod init_error;
pub mod local;
pub mod metrics;
pub mod order;
pub mod plan;
pub mod response;
pub mod store;
pub mod telemetry;
