//! A customer's location, the one thing this function adds to an order. Shared by the lookup
//! ([`crate::enrich`]) and the cache ([`crate::enrich::cache`]).

use std::collections::HashMap;

use rust_decimal::Decimal;

/// Where a customer is, as the `customers` table has it (any part may be missing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The street address.
    pub address: Option<String>,
    /// Degrees east.
    pub longitude: Option<Decimal>,
    /// Degrees north.
    pub latitude: Option<Decimal>,
}

/// Locations by customer name; `None` for a customer not in the `customers` table.
pub type Locations = HashMap<String, Option<Location>>;
