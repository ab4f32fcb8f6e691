//! The Kafka partial batch response, exactly as Lambda's event source mapping reads it:
//! `{"batchItemFailures":[{"itemIdentifier":{"partition":"orders-3","offset":42}}]}`.
//! `aws_lambda_events` has no released type for it, hence these.

use serde::{Deserialize, Serialize};

use crate::decode::event::PartitionKey;
use crate::kafka::records::Undelivered;
use crate::plan::{Plan, WriteOutcome};

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

/// The batch response after the database outcome and the deliveries: a partition is reported
/// from the earliest of its first pending record (when nothing was written), its first
/// undelivered record, and its reported poison record.
pub fn for_batch(plan: &Plan, outcome: WriteOutcome, undelivered: &[Undelivered]) -> BatchResponse {
    let mut reported = plan.reported(outcome);
    for failure in undelivered {
        match reported
            .iter_mut()
            .find(|(key, _)| *key == failure.partition)
        {
            Some((_, offset)) => *offset = (*offset).min(failure.offset),
            None => reported.push((failure.partition.clone(), failure.offset)),
        }
    }
    // Partitions in the order of the event, as the response without deliveries has them.
    reported.sort_by_key(|(key, _)| plan.position_of(key));
    BatchResponse::retry_from(reported)
}

impl BatchResponse {
    /// The `(partition, offset)` pairs this response reports.
    pub fn reported(&self) -> Vec<(PartitionKey, i64)> {
        self.batch_item_failures
            .iter()
            .map(|failure| {
                let id = &failure.item_identifier;
                (PartitionKey::new(id.partition.clone()), id.offset)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::config::PoisonPolicy;
    use crate::plan::plan;
    use crate::testing::{order, partition, poison, record};

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

    fn reported(response: &BatchResponse) -> BTreeMap<String, i64> {
        response
            .batch_item_failures
            .iter()
            .map(|f| {
                (
                    f.item_identifier.partition.clone(),
                    f.item_identifier.offset,
                )
            })
            .collect()
    }

    #[test]
    fn an_undelivered_record_reports_its_partition_from_it_and_no_other() {
        let plan = plan(
            vec![
                partition(
                    0,
                    vec![
                        record(0, 10, order("SO-1", "Jones")),
                        record(0, 11, order("SO-2", "Jones")),
                        record(0, 12, order("SO-3", "Jones")),
                    ],
                ),
                partition(1, vec![record(1, 20, order("SO-4", "Jones"))]),
            ],
            PoisonPolicy::DeadLetter,
        );
        let undelivered = [Undelivered {
            partition: PartitionKey::new("orders-0"),
            offset: 11,
            reason: "broker down".into(),
        }];
        let response = for_batch(&plan, WriteOutcome::Committed, &undelivered);
        assert_eq!(
            reported(&response),
            BTreeMap::from([("orders-0".into(), 11)])
        );
        assert_eq!(plan.redelivered_from(&response.reported()), 2);
        assert_eq!(
            reported(&for_batch(&plan, WriteOutcome::NotWritten, &undelivered)),
            BTreeMap::from([("orders-0".into(), 10), ("orders-1".into(), 20)]),
            "nothing written: every partition from its first pending record"
        );
        assert!(for_batch(&plan, WriteOutcome::Committed, &[])
            .batch_item_failures
            .is_empty());
    }

    #[test]
    fn a_reported_poison_record_and_a_failed_delivery_report_the_earlier_offset() {
        let plan = plan(
            vec![partition(
                0,
                vec![
                    record(0, 1, order("SO-1", "Jones")),
                    record(0, 2, order("SO-2", "Jones")),
                    record(0, 3, poison()),
                ],
            )],
            PoisonPolicy::Report,
        );
        let late = [Undelivered {
            partition: PartitionKey::new("orders-0"),
            offset: 2,
            reason: "timed out".into(),
        }];
        assert_eq!(
            reported(&for_batch(&plan, WriteOutcome::Committed, &late)),
            BTreeMap::from([("orders-0".into(), 2)])
        );
        assert_eq!(
            reported(&for_batch(&plan, WriteOutcome::Committed, &[])),
            BTreeMap::from([("orders-0".into(), 3)])
        );
    }
}
