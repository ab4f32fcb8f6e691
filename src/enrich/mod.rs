//! Customer locations for a batch: from the cache when fresh, otherwise from one query for
//! all the batch's missing customers.

pub mod cache;
pub mod location;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};

use crate::enrich::cache::LocationCache;
use crate::enrich::location::{Location, Locations};
use crate::locks::lock;

/// What the lookup did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LookupStats {
    /// Distinct customers answered by the cache.
    pub cache_hits: usize,
    /// Distinct customers fetched from the database.
    pub looked_up: usize,
    /// Lookup queries sent (0 or 1).
    pub round_trips: usize,
    /// Customers whose row could not be read (a `NaN` or out-of-range coordinate): their orders
    /// are written without a location, as for an unknown customer, and the row is named in the
    /// log so that an operator can fix it.
    pub unreadable: usize,
}

/// The locations of `customers` if the cache holds a fresh entry for every one of them, else
/// `None`. Reads only: [`lookup`] is what counts hits and fills the cache.
pub fn cached(cache: &Mutex<LocationCache>, customers: &[&str]) -> Option<Locations> {
    let now = Instant::now();
    let mut cache = lock(cache);
    customers
        .iter()
        .map(|&customer| {
            cache
                .get(customer, now)
                .map(|location| (customer.to_owned(), location))
        })
        .collect()
}

/// The locations of `customers`, from the cache and, for the missing ones, one query on `conn`
/// (inside the invocation's transaction).
#[tracing::instrument(name = "lookup", level = "debug", skip_all, fields(customers = customers.len()), err(level = "debug"))]
pub async fn lookup(
    conn: &mut PgConnection,
    cache: &Mutex<LocationCache>,
    customers: &[&str],
) -> Result<(Locations, LookupStats), sqlx::Error> {
    let now = Instant::now();
    let mut locations = Locations::with_capacity(customers.len());
    let mut missing: Vec<&str> = Vec::new();
    {
        let mut cache = lock(cache);
        for &customer in customers {
            match cache.get(customer, now) {
                Some(location) => {
                    locations.insert(customer.to_owned(), location);
                }
                None => missing.push(customer),
            }
        }
    }
    let mut stats = LookupStats {
        cache_hits: locations.len(),
        looked_up: missing.len(),
        ..LookupStats::default()
    };
    if missing.is_empty() {
        return Ok((locations, stats));
    }

    let rows = sqlx::query(
        "SELECT customer_name, address, longitude, latitude FROM customers WHERE customer_name = ANY($1::text[])",
    )
    .bind(&missing)
    .fetch_all(conn)
    .await?;
    stats.round_trips = 1;

    let mut found: HashMap<String, Location> = HashMap::with_capacity(rows.len());
    for row in rows {
        let customer: String = row.try_get("customer_name")?;
        match read_location(&row) {
            Ok(location) => {
                found.insert(customer, location);
            }
            // One bad reference row must not fail every batch with that customer: it counts
            // as not found (cached so, until the row is fixed and the entry expires).
            Err(error @ sqlx::Error::ColumnDecode { .. }) => {
                stats.unreadable += 1;
                tracing::warn!(
                    customer = customer.as_str(),
                    reason = %error,
                    "customer row unreadable; its orders are written without a location"
                );
            }
            Err(error) => return Err(error),
        }
    }
    let mut cache = lock(cache);
    for customer in missing {
        let location = found.remove(customer);
        cache.insert(customer.to_owned(), location.clone(), now);
        locations.insert(customer.to_owned(), location);
    }
    Ok((locations, stats))
}

/// The location a `customers` row holds.
fn read_location(row: &PgRow) -> Result<Location, sqlx::Error> {
    Ok(Location {
        address: row.try_get("address")?,
        longitude: row.try_get("longitude")?,
        latitude: row.try_get("latitude")?,
    })
}
