//! Local tooling shared by the `esm-local` binary, the integration tests and the benchmarks:
//! a Lambda Runtime API on localhost, throwaway PostgreSQL servers, database set-up, MSK
//! events built from order files, and an event source mapping emulator.
//! Nothing here is used by the Lambda function itself.

pub mod db;
pub mod esm;
pub mod events;
pub mod pg;
pub mod runtime_api;
