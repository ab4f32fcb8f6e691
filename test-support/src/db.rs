//! Database set-up for local runs, tests and benchmarks: the schema from `migrations/` and the
//! customer table from a CSV file shaped like the original `customers.csv`.

use std::path::Path;
use std::str::FromStr;

use rust_decimal::Decimal;
use sqlx::migrate::Migrator;
use sqlx::PgPool;

/// The function's `migrations/` folder, at the top of the workspace.
pub fn migrations_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../migrations"))
}

/// Applies `migrations/` to the database of `pool`.
pub async fn migrate(pool: &PgPool) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let migrator = Migrator::new(migrations_dir())
        .await
        .map_err(|error| format!("reading {}: {error}", migrations_dir().display()))?;
    migrator
        .run(pool)
        .await
        .map_err(|error| format!("applying migrations: {error}"))?;
    Ok(())
}

/// A row of the `customers` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Customer {
    /// The customer's name (the key).
    pub name: String,
    /// The street address.
    pub address: Option<String>,
    /// Degrees east.
    pub longitude: Option<Decimal>,
    /// Degrees north.
    pub latitude: Option<Decimal>,
}

/// Parses `customer_name,address,longitude,latitude` rows (with a header line).
pub fn parse_customers_csv(text: &str) -> Result<Vec<Customer>, String> {
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let mut customers = Vec::new();
    for (index, record) in reader.records().enumerate() {
        let line = index + 2;
        let record = record.map_err(|error| format!("line {line}: {error}"))?;
        let field = |i: usize| record.get(i).map(str::trim).filter(|v| !v.is_empty());
        let decimal = |i: usize, name: &str| {
            field(i)
                .map(|v| {
                    Decimal::from_str(v)
                        .map_err(|_| format!("line {line}: {name} {v:?} is not a decimal"))
                })
                .transpose()
        };
        customers.push(Customer {
            name: field(0)
                .ok_or_else(|| format!("line {line}: customer_name is empty"))?
                .to_owned(),
            address: field(1).map(str::to_owned),
            longitude: decimal(2, "longitude")?,
            latitude: decimal(3, "latitude")?,
        });
    }
    Ok(customers)
}

/// `count` customers named `Customer <i>`, each with an address and coordinates.
pub fn synthetic_customers(count: usize) -> Vec<Customer> {
    (0..i64::try_from(count).unwrap_or(i64::MAX))
        .map(|i| Customer {
            name: format!("Customer {i}"),
            address: Some(format!("{} Market Street", 100 + i)),
            longitude: Some(Decimal::new(-122_419_416 + i * 1_000, 6)),
            latitude: Some(Decimal::new(37_774_929 - i * 1_000, 6)),
        })
        .collect()
}

/// Inserts or updates the customers in one statement.
pub async fn upsert_customers(pool: &PgPool, customers: &[Customer]) -> Result<u64, sqlx::Error> {
    let names: Vec<&str> = customers.iter().map(|c| c.name.as_str()).collect();
    let addresses: Vec<Option<&str>> = customers.iter().map(|c| c.address.as_deref()).collect();
    let longitudes: Vec<Option<Decimal>> = customers.iter().map(|c| c.longitude).collect();
    let latitudes: Vec<Option<Decimal>> = customers.iter().map(|c| c.latitude).collect();
    let result = sqlx::query(
        "INSERT INTO customers (customer_name, address, longitude, latitude)
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::numeric[], $4::numeric[])
         ON CONFLICT (customer_name) DO UPDATE
         SET address = EXCLUDED.address, longitude = EXCLUDED.longitude, latitude = EXCLUDED.latitude",
    )
    .bind(names)
    .bind(addresses)
    .bind(longitudes)
    .bind(latitudes)
    .execute(pool)
    .await?;
    Ok(result.rows_affected())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_customers_parse_exactly() {
        let customers = parse_customers_csv(include_str!("../../fixtures/customers.csv")).unwrap();
        assert_eq!(customers.len(), 11);
        assert_eq!(
            customers[0],
            Customer {
                name: "Jones".into(),
                address: Some("1745 T Street Southeast".into()),
                longitude: Some(Decimal::from_str("-76.979235").unwrap()),
                latitude: Some(Decimal::from_str("38.867033").unwrap()),
            }
        );
        assert_eq!(
            customers[6].latitude.unwrap().to_string(),
            "38.1047699999999"
        );
    }

    #[test]
    fn bad_rows_are_named_by_line() {
        let error =
            parse_customers_csv("customer_name,address,longitude,latitude\nA,x,1,2\nB,y,east,2\n")
                .unwrap_err();
        assert_eq!(error, "line 3: longitude \"east\" is not a decimal");
    }
}
