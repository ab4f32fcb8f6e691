//! Decoding: the Kafka event as Lambda sends it ([`event`]), and each record's value as an
//! order ([`order`]). Pure: no I/O.

pub mod event;
pub mod order;
