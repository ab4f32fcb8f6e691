//! Where records come from: a file topic ([`file_topic`], partitioned by [`partitioner`] as
//! Kafka's default partitioner would), a Kafka-compatible broker ([`kafka`], feature `kafka`),
//! or the payload of an on-failure document ([`payload`]), each yielding
//! [`crate::batch::SourceRecord`]s.

pub mod file_topic;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod partitioner;
pub mod payload;
