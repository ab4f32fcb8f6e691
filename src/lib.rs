//! An AWS Lambda function for Amazon MSK's event source mapping: it decodes batches of order
//! records, enriches each order with the customer's location from PostgreSQL, writes them so
//! that retries never duplicate or reorder anything, and answers with a Kafka partial batch
//! response naming exactly the records to redeliver.
//!
//! The modules are the pipeline's stages, in its order; a stage uses only the stages before
//! it (`scripts/tools/module_cycles.py` checks this):
//!
//! | stage | what it does |
//! |---|---|
//! | [`lambda`] | runtime glue: the raw body, the init error report, logging, the allocator, the deadline |
//! | [`config`] | the environment's settings and the secrets they name, read once at start |
//! | [`decode`] | the Kafka event and each record's order (pure) |
//! | [`plan`] | what to write, dead-letter and report, a partition at a time (pure) |
//! | [`enrich`] | customer locations: cache first, one query for the misses |
//! | [`postgres`] | the write: one transaction bounded by the deadline, transient failures waited out |
//! | [`kafka`] | the output topic: records (pure), the producer, delivery reports, MSK IAM |
//! | [`report`] | the partial batch response, the summary log line, the metrics |
//!
//! [`startup`] builds what an execution environment shares (pool, cache, producer) and
//! [`handler`] strings the stages together for one invocation.

pub mod config;
pub mod decode;
pub mod enrich;
pub mod handler;
pub mod kafka;
pub mod lambda;
mod locks;
pub mod plan;
pub mod postgres;
pub mod report;
pub mod startup;
#[cfg(test)]
mod testing;
