//! An AWS Lambda function for Amazon MSK's event source mapping: it decodes batches of order
//! records, enriches each order with the customer's location from PostgreSQL, writes them so
//! that retries never duplicate or reorder anything, and answers with a Kafka partial batch
//! response naming exactly the records to redeliver.
//!
//! Start-up (once per execution environment): [`config`] (the environment) → [`credentials`]
//! (a Secrets Manager secret, or `DATABASE_URL`) → [`startup`] (pool, cache); [`telemetry`]
//! sets up logging, [`memory`] the allocator, and [`init_error`] reports a failed start to
//! Lambda.
//!
//! One invocation, one module a step, strung together by [`handler`]:
//! 1. [`event`]: decode the Kafka event; [`order`] parses each value into an order.
//! 2. [`plan`] (pure): what to write, what to dead-letter, what to report.
//! 3. [`writer`]: one connection, one transaction bounded by the deadline, transient failures
//!    ([`db_error`]) waited out inside the invocation; in it, [`enrich`] (customer locations,
//!    [`location`], through [`cache`], one query for the misses) and [`store`] (the orders
//!    streamed in by one binary `COPY`, [`pg_copy`], then one upsert; the dead letters in one
//!    statement).
//! 4. With the Kafka sink: [`output`] (pure) builds the output topic's records and [`producer`]
//!    produces them after the commit ([`msk_iam`] signs its tokens, [`delivery`] collects each
//!    record's delivery report).
//! 5. [`response`]: the partial batch response; [`summary`] (the log line) and [`metrics`] (EMF).

pub mod cache;
pub mod config;
pub mod credentials;
pub mod db_error;
pub mod delivery;
pub mod enrich;
pub mod event;
pub mod handler;
pub mod init_error;
pub mod location;
mod locks;
pub mod memory;
pub mod metrics;
pub mod msk_iam;
pub mod order;
pub mod output;
pub mod pg_copy;
pub mod plan;
pub mod producer;
pub mod raw_body;
pub mod response;
pub mod startup;
pub mod store;
pub mod summary;
pub mod telemetry;
pub mod writer;
