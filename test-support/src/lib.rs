//! Test support and development tasks for the msk-order-enricher function: what knows this
//! project's schema and fixtures but never runs in Lambda.
//!
//! - [`pg`]: throwaway PostgreSQL servers for tests and benchmarks.
//! - [`broker`]: throwaway Kafka-compatible brokers (tansu) for tests and benchmarks.
//! - [`db`]: the schema from `migrations/` and customers from a CSV file.
//! - [`events`]: order events, rendered by `esm-local`'s event code.
//! - [`ordering`]: the ordering rule's oracle for the commit-order property tests.
//!
//! Its binary, `xtask` (run as `cargo xtask`), sets up a database and shows what the function
//! wrote.

pub mod broker;
pub mod db;
pub mod events;
pub mod ordering;
pub mod pg;
