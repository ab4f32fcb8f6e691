//! What the mapping gives up on: the on-failure [`destination`] records go to, and the
//! [`documents`] such a destination holds, read back for a replay ([`crate::replay`]).

pub mod destination;
pub mod documents;
