//! Integration tests: one binary (one link, one shared PostgreSQL server), one module per
//! behaviour. Every test that touches data talks to a real PostgreSQL.

mod broker;
mod pg;
mod support;

mod decoding;
mod enrichment;
mod esm_local_broker;
mod esm_local_stream;
mod faults;
mod kafka_auth;
mod moto;
mod outage;
mod output;
mod poison;
mod replay;
mod runtime;
mod secrets;
mod staging;
mod streamed_copy;
mod template;
mod tls;
