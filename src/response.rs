//! The Kafka partial batch response, exactly as Lambda's event source mapping reads it:
//! `{"batchItemFailures":[{"itemIdentifier":{"partition":"orders-3","offset":42}}]}`.
//! `aws_lambda_events` has no released type for it, hence these.

use serde::{Deserialize, Serialize};

use crate::event::PartitionKey;

/// The Kafka partial batch response: the partitions Lambda must deliver again, and from where.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchResponse {
    /// One entry per partition to redeliver (empty: the whole batch succeeded).
    pub batch_item_failures: Vec<BatchItemFailure>,
}

/// One partition to redeliver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchItemFailure {
    /// The first record to deliver again.
    pub item_identifier: ItemIdentifier,
}

/// `partition` is the `records` map key of the failed record; Lambda redelivers that
/// partition from `offset` on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemIdentifier {
    /// The `records` key of the partition.
    pub partition: String,
    /// The offset to redeliver from.
    pub offset: i64,
}

impl BatchResponse {
    /// A response naming each `(partition, offset)` to redeliver from.
    pub fn retry_from(failures: impl IntoIterator<Item = (PartitionKey, i64)>) -> Self {
        Self {
            batch_item_failures: failures
                .into_iter()
                .map(|(partition, offset)| BatchItemFailure {
                    item_identifier: ItemIdentifier {
                        partition: partition.as_str().to_owned(),
                        offset,
                    },
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_format_is_exact() {
        let response = BatchResponse::retry_from([(PartitionKey::new("orders-3"), 42)]);
        assert_eq!(
            serde_json::to_string(&response).unwrap(),
            r#"{"batchItemFailures":[{"itemIdentifier":{"partition":"orders-3","offset":42}}]}"#
        );
        assert_eq!(
            serde_json::to_string(&BatchResponse::default()).unwrap(),
            r#"{"batchItemFailures":[]}"#
        );
    }
}
