//! Glue to the Lambda runtime: the invocation's raw body, the init error report, logging, the
//! allocator's settings, and the invocation's deadline.

pub(crate) mod deadline;
pub mod init_error;
pub mod memory;
pub mod raw_body;
pub mod telemetry;
