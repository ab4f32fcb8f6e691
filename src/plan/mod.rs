//! Pure planning: from decoded partitions, what to write, what to dead-letter, and what to
//! report for redelivery. No I/O here; the rules that keep retries safe live in this file.

pub(crate) mod stream;

use std::hash::BuildHasher as _;

use hashbrown::HashTable;

use crate::config::PoisonPolicy;
use crate::decode::event::{DecodedPartition, PartitionKey, Payload, Poison, SourcePosition};
use crate::decode::order::Order;

/// An order to write: the newest record of its order number in one partition of the batch.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedOrder {
    /// The order.
    pub order: Order,
    /// The record it came from.
    pub source: SourcePosition,
    /// The order's clock in its partition: the latest record timestamp of this order number
    /// in this partition up to this record (see [`supersedes`]).
    pub clock_ms: Option<i64>,
    /// Which write of the batch carries it: an order number present in several partitions
    /// of the batch is written once per partition, in successive statements (0, 1, ...).
    pub round: usize,
}

/// A record kept in `dead_letters` instead of being written as an order.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    /// The `records` key of its partition.
    pub partition_key: PartitionKey,
    /// Where it came from.
    pub source: SourcePosition,
    /// Its bytes and why it was set aside.
    pub poison: Poison,
}

/// Per `records` key: where redelivery must start if the write fails, and where the partition
/// stopped on a reported poison record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionProgress {
    /// The `records` key.
    pub key: PartitionKey,
    /// Offsets of all the partition's records in the batch, in order.
    pub offsets: Vec<i64>,
    /// Offset of the first record whose effect (an order or a dead letter) is in the write.
    pub first_pending: Option<i64>,
    /// Offset of the poison record reported under [`PoisonPolicy::Report`]; nothing from it on
    /// is written in this invocation.
    pub halted_at: Option<i64>,
    /// Why that record could not be decoded.
    pub halted_reason: Option<String>,
}

/// What the batch held, for the log line and the metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    /// Records in the batch.
    pub received: usize,
    /// Valid orders, including those superseded by a later record of the same batch.
    pub orders: usize,
    /// Orders not written because a later record of the same order is in the same partition
    /// of the batch.
    pub superseded: usize,
    /// Records without a value.
    pub tombstones: usize,
    /// Records planned as dead letters.
    pub dead_lettered: usize,
    /// Poison records reported for redelivery (policy `Report`).
    pub poison_reported: usize,
    /// Records after a reported poison record, left for the redelivery.
    pub held_back: usize,
    /// Records whose timestamp PostgreSQL cannot store: written with a null timestamp.
    pub timestamps_out_of_range: usize,
}

/// What an invocation writes and reports, decided before any I/O.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    /// One entry per order number and partition: the newest record of it there.
    pub orders: Vec<PlannedOrder>,
    /// Records kept in `dead_letters`.
    pub dead_letters: Vec<DeadLetter>,
    /// Per partition, where redelivery starts.
    pub partitions: Vec<PartitionProgress>,
    /// What the batch held.
    pub counts: Counts,
    /// The earliest record timestamp of the batch (epoch milliseconds).
    pub oldest_timestamp_ms: Option<i64>,
}

/// Whether the write reached the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOutcome {
    /// The transaction committed.
    Committed,
    /// Nothing of this invocation was committed (database failure or deadline).
    NotWritten,
}

/// The ordering rule, which the database write applies too (`store.rs`): a total order on the
/// records of one order number, `(clock, topic, partition, offset)`, where a record's clock is
/// the latest timestamp of that order number's records in its partition up to it. Clocks never
/// go back within a partition, so a higher offset always wins there; across partitions the
/// later clock wins, then topic and partition. The row ends as the greatest record under this
/// order, whatever order batches commit in (the commit-order property tests check it).
///
/// `current` is what the row holds. When both come from the same partition the row's clock
/// carries over: [`clock_after`].
pub fn supersedes(
    candidate: &SourcePosition,
    candidate_clock: Option<i64>,
    current: &SourcePosition,
    current_clock: Option<i64>,
) -> bool {
    if candidate.topic == current.topic && candidate.partition == current.partition {
        candidate.offset > current.offset
    } else {
        (
            candidate_clock.unwrap_or(i64::MIN),
            &candidate.topic,
            candidate.partition,
        ) > (
            current_clock.unwrap_or(i64::MIN),
            &current.topic,
            current.partition,
        )
    }
}

/// The clock a row gets when `candidate` replaces `current`: within one partition the later of
/// the two (a clock never goes back), across partitions the candidate's own.
pub fn clock_after(
    candidate: &SourcePosition,
    candidate_clock: Option<i64>,
    current: &SourcePosition,
    current_clock: Option<i64>,
) -> Option<i64> {
    if candidate.topic == current.topic && candidate.partition == current.partition {
        candidate_clock.max(current_clock)
    } else {
        candidate_clock
    }
}

/// Where the plan has an order number so far.
struct Seen {
    /// Partitions of the batch with a record of it.
    partitions: usize,
    /// The last of them (its position in the batch), and its entry in `Plan::orders`.
    partition: usize,
    index: usize,
}

/// Plans the batch: per partition, in offset order, what to write, dead-letter and report.
pub fn plan(partitions: Vec<DecodedPartition>, policy: PoisonPolicy) -> Plan {
    let records = partitions.iter().map(|p| p.records.len()).sum();
    let mut planner = Planner::new(records, policy);
    for partition in partitions {
        planner.add(partition);
    }
    planner.finish()
}

/// A plan built one partition at a time, so that the write can start on the first partitions
/// while later ones are still being decoded. Adding every partition, in the event's order,
/// gives exactly the plan [`plan`] gives.
pub struct Planner {
    plan: Plan,
    policy: PoisonPolicy,
    // One lookup per order record, keyed by the order number of the entry it points to in
    // `plan.orders` (no copy of the key; foldhash: SipHash showed in profiles), sized for the
    // batch so that it never grows.
    hasher: foldhash::fast::RandomState,
    seen: HashTable<Seen>,
}

impl Planner {
    /// A planner for a batch of about `records` records.
    pub fn new(records: usize, policy: PoisonPolicy) -> Self {
        let mut plan = Plan::default();
        // Most records are orders: growing the list would copy it again and again.
        plan.orders.reserve(records);
        Self {
            plan,
            policy,
            hasher: foldhash::fast::RandomState::default(),
            seen: HashTable::with_capacity(records),
        }
    }

    /// The plan so far.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Plans the batch's next partition. Its orders are appended to the plan's (earlier
    /// entries never change: a later record of an order replaces only the entry of its own
    /// partition), so `plan().orders[n..]`, with `n` their count before, are this partition's.
    pub fn add(&mut self, partition: DecodedPartition) {
        let partition_number = self.plan.partitions.len();
        let mut progress = PartitionProgress {
            offsets: partition.records.iter().map(|r| r.source.offset).collect(),
            key: partition.key,
            first_pending: None,
            halted_at: None,
            halted_reason: None,
        };
        if let Some(oldest) = partition
            .records
            .iter()
            .filter_map(|r| r.source.timestamp_ms)
            .min()
        {
            self.plan.oldest_timestamp_ms = Some(
                self.plan
                    .oldest_timestamp_ms
                    .map_or(oldest, |o| o.min(oldest)),
            );
        }
        let mut records = partition.records.into_iter();
        for record in records.by_ref() {
            self.plan.counts.received += 1;
            self.plan.counts.timestamps_out_of_range +=
                usize::from(record.source.timestamp_out_of_range);
            let offset = record.source.offset;
            match record.payload {
                Payload::Tombstone => self.plan.counts.tombstones += 1,
                Payload::Order(order) => {
                    self.plan.counts.orders += 1;
                    progress.first_pending.get_or_insert(offset);
                    self.add_order(partition_number, record.source, order);
                }
                Payload::Poison(poison) => match self.policy {
                    PoisonPolicy::DeadLetter => {
                        self.plan.counts.dead_lettered += 1;
                        progress.first_pending.get_or_insert(offset);
                        self.plan.dead_letters.push(DeadLetter {
                            partition_key: progress.key.clone(),
                            source: record.source,
                            poison,
                        });
                    }
                    PoisonPolicy::Report => {
                        self.plan.counts.poison_reported += 1;
                        progress.halted_at = Some(offset);
                        progress.halted_reason = Some(poison.reason);
                        break;
                    }
                },
            }
        }
        let held_back = records.len();
        self.plan.counts.held_back += held_back;
        self.plan.counts.received += held_back;
        self.plan.partitions.push(progress);
    }

    /// Plans `order`, from the record at `source` of the batch's partition `partition_number`:
    /// it replaces the earlier record of its number in the same partition, or is written in
    /// the next round after the partitions that had it before.
    fn add_order(&mut self, partition_number: usize, source: SourcePosition, order: Order) {
        let clock_ms = source.timestamp_ms;
        let index = self.plan.orders.len();
        let hash = self.hasher.hash_one(order.order_no());
        let mut first_record = false;
        let round = match self.seen.find_mut(hash, |seen| {
            self.plan.orders[seen.index].order.order_no() == order.order_no()
        }) {
            // A later record of the same order in the same partition: it wins, and the
            // order's clock in this partition never goes back.
            Some(earlier) if earlier.partition == partition_number => {
                self.plan.counts.superseded += 1;
                let earlier = &mut self.plan.orders[earlier.index];
                earlier.clock_ms = earlier.clock_ms.max(clock_ms);
                earlier.order = order;
                earlier.source = source;
                return;
            }
            // Its first record in this partition, after others: another round.
            Some(earlier) => {
                let round = earlier.partitions;
                *earlier = Seen {
                    partitions: round + 1,
                    partition: partition_number,
                    index,
                };
                round
            }
            None => {
                first_record = true;
                0
            }
        };
        self.plan.orders.push(PlannedOrder {
            order,
            source,
            clock_ms,
            round,
        });
        if first_record {
            let orders = &self.plan.orders;
            self.seen.insert_unique(
                hash,
                Seen {
                    partitions: 1,
                    partition: partition_number,
                    index,
                },
                |seen| self.hasher.hash_one(orders[seen.index].order.order_no()),
            );
        }
    }

    /// The plan of every partition added.
    pub fn finish(mut self) -> Plan {
        self.take()
    }

    /// The plan of every partition added, leaving the planner with none.
    pub fn take(&mut self) -> Plan {
        self.seen.clear();
        std::mem::take(&mut self.plan)
    }
}

impl Plan {
    /// Logs, once per record, each record that will not simply be written: dead-lettered, or
    /// reported for redelivery. Position and reason only: payloads stay out of logs.
    pub fn log_records_set_aside(&self) {
        for dead in &self.dead_letters {
            tracing::warn!(
                partition = dead.partition_key.as_str(),
                offset = dead.source.offset,
                reason = dead.poison.reason.as_str(),
                "record dead-lettered"
            );
        }
        for progress in &self.partitions {
            if let (Some(offset), Some(reason)) = (progress.halted_at, &progress.halted_reason) {
                tracing::warn!(
                    partition = progress.key.as_str(),
                    offset,
                    reason = reason.as_str(),
                    "record reported for redelivery (POISON_RECORD_POLICY=report)"
                );
            }
        }
    }

    /// The distinct customer names of the orders to write, sorted.
    pub fn distinct_customers(&self) -> Vec<&str> {
        // Hashed, then the few distinct names sorted: a sorted set would compare every order's
        // name with about log2(customers) others (memcmp showed in the function's profile).
        let names: hashbrown::HashSet<&str, foldhash::fast::RandomState> = self
            .orders
            .iter()
            .map(|planned| planned.order.customer())
            .collect();
        let mut names: Vec<&str> = names.into_iter().collect();
        names.sort_unstable();
        names
    }

    /// The orders of each write statement, in statement order: every order number at most
    /// once per statement (PostgreSQL's upsert cannot touch a row twice in one statement).
    pub fn rounds(&self) -> Vec<Vec<&PlannedOrder>> {
        let count = self.orders.iter().map(|o| o.round + 1).max().unwrap_or(0);
        let mut rounds: Vec<Vec<&PlannedOrder>> = vec![Vec::new(); count];
        for order in &self.orders {
            rounds[order.round].push(order);
        }
        rounds
    }

    /// Whether the plan has anything for the database.
    pub fn has_writes(&self) -> bool {
        !self.orders.is_empty() || !self.dead_letters.is_empty()
    }

    /// The partitions to redeliver and the offset of each to redeliver from, in the order of
    /// the event. At most one per partition, always an offset that is in the event: after a
    /// failed write, the first pending record; otherwise the reported poison record.
    pub fn reported(&self, outcome: WriteOutcome) -> Vec<(PartitionKey, i64)> {
        self.partitions
            .iter()
            .filter_map(|progress| {
                let offset = match outcome {
                    WriteOutcome::Committed => progress.halted_at,
                    WriteOutcome::NotWritten => progress.first_pending.or(progress.halted_at),
                }?;
                Some((progress.key.clone(), offset))
            })
            .collect()
    }

    /// How many records of the batch Lambda will deliver again after this outcome.
    pub fn redelivered_records(&self, outcome: WriteOutcome) -> usize {
        self.redelivered_from(&self.reported(outcome))
    }

    /// How many records of the batch Lambda delivers again when `reported` partitions are
    /// redelivered from their offsets.
    pub fn redelivered_from(&self, reported: &[(PartitionKey, i64)]) -> usize {
        reported
            .iter()
            .filter_map(|(key, offset)| {
                let progress = self.partitions.iter().find(|p| p.key == *key)?;
                Some(progress.offsets.iter().filter(|&&o| o >= *offset).count())
            })
            .sum()
    }

    /// Where `key` stands among the event's partitions.
    pub fn position_of(&self, key: &PartitionKey) -> Option<usize> {
        self.partitions
            .iter()
            .position(|progress| progress.key == *key)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::decode::event::DecodedRecord;

    fn source(topic: &str, partition: i32, offset: i64, timestamp_ms: i64) -> SourcePosition {
        SourcePosition {
            timestamp_out_of_range: false,
            topic: topic.into(),
            partition,
            offset,
            timestamp_ms: Some(timestamp_ms),
        }
    }

    fn order(order_no: &str, customer: &str) -> Payload {
        let json = format!(
            r#"{{"OrderNo":"{order_no}","OrderDate":"1/6/19","Region":"East","Customer":"{customer}","Item":"Pencil","Units":1,"Unit Cost":1.99,"Total":1.99}}"#
        );
        Payload::Order(Order::parse(json.as_bytes()).unwrap())
    }

    fn poison(reason: &str) -> Payload {
        Payload::Poison(Poison {
            reason: reason.into(),
            raw_key: None,
            raw_value: Some(b"x".to_vec()),
            headers: vec![],
        })
    }

    fn partition(topic: &str, number: i32, records: Vec<(i64, Payload)>) -> DecodedPartition {
        DecodedPartition {
            key: PartitionKey::new(format!("{topic}-{number}")),
            records: records
                .into_iter()
                .map(|(offset, payload)| DecodedRecord {
                    source: source(topic, number, offset, 1000 + offset),
                    payload,
                })
                .collect(),
        }
    }

    fn written(plan: &Plan) -> Vec<(String, i64)> {
        plan.orders
            .iter()
            .map(|p| (p.order.order_no().to_owned(), p.source.offset))
            .collect()
    }

    fn failures(plan: &Plan, outcome: WriteOutcome) -> Vec<(String, i64)> {
        plan.reported(outcome)
            .into_iter()
            .map(|(key, offset)| (key.as_str().to_owned(), offset))
            .collect()
    }

    fn mixed_batch() -> Vec<DecodedPartition> {
        vec![
            partition(
                "orders",
                0,
                vec![
                    (10, order("SO-1", "Jones")),
                    (11, poison("bad json")),
                    (12, order("SO-2", "Gill")),
                ],
            ),
            partition(
                "eu.orders-v2",
                3,
                vec![(5, Payload::Tombstone), (6, order("SO-3", "Jones"))],
            ),
            partition("orders", 1, vec![(7, Payload::Tombstone)]),
        ]
    }

    #[test]
    fn dead_letter_policy_writes_around_the_poison_record() {
        let plan = plan(mixed_batch(), PoisonPolicy::DeadLetter);
        assert_eq!(
            written(&plan),
            vec![("SO-1".into(), 10), ("SO-2".into(), 12), ("SO-3".into(), 6)]
        );
        assert_eq!(plan.dead_letters.len(), 1);
        assert_eq!(plan.dead_letters[0].source.offset, 11);
        assert_eq!(plan.dead_letters[0].partition_key.as_str(), "orders-0");
        assert_eq!(plan.dead_letters[0].poison.reason, "bad json");
        assert_eq!(
            plan.counts,
            Counts {
                received: 6,
                orders: 3,
                superseded: 0,
                tombstones: 2,
                dead_lettered: 1,
                poison_reported: 0,
                held_back: 0,
                timestamps_out_of_range: 0,
            }
        );
        assert_eq!(failures(&plan, WriteOutcome::Committed), vec![]);
        assert_eq!(plan.distinct_customers(), vec!["Gill", "Jones"]);
    }

    #[test]
    fn report_policy_stops_the_partition_at_the_poison_record_only() {
        let plan = plan(mixed_batch(), PoisonPolicy::Report);
        assert_eq!(
            written(&plan),
            vec![("SO-1".into(), 10), ("SO-3".into(), 6)]
        );
        assert!(plan.dead_letters.is_empty());
        assert_eq!(plan.counts.poison_reported, 1);
        assert_eq!(plan.counts.held_back, 1);
        assert_eq!(plan.counts.received, 6);
        assert_eq!(
            failures(&plan, WriteOutcome::Committed),
            vec![("orders-0".into(), 11)]
        );
    }

    #[test]
    fn failed_write_reports_first_pending_record_of_each_partition_with_writes() {
        let plan = plan(mixed_batch(), PoisonPolicy::DeadLetter);
        // eu.orders-v2-3 restarts at 6, not at the tombstone 5; orders-1 holds only a tombstone.
        assert_eq!(
            failures(&plan, WriteOutcome::NotWritten),
            vec![("orders-0".into(), 10), ("eu.orders-v2-3".into(), 6)]
        );
        assert_eq!(plan.redelivered_records(WriteOutcome::NotWritten), 4);
        assert_eq!(plan.redelivered_records(WriteOutcome::Committed), 0);
    }

    #[test]
    fn failed_write_under_report_policy_reports_poison_at_the_head_of_a_partition() {
        let batch = vec![
            partition(
                "orders",
                0,
                vec![(4, poison("bad")), (5, order("SO-1", "Jones"))],
            ),
            partition("orders", 1, vec![(8, order("SO-2", "Jones"))]),
        ];
        let plan = plan(batch, PoisonPolicy::Report);
        assert_eq!(
            failures(&plan, WriteOutcome::Committed),
            vec![("orders-0".into(), 4)]
        );
        assert_eq!(
            failures(&plan, WriteOutcome::NotWritten),
            vec![("orders-0".into(), 4), ("orders-1".into(), 8)]
        );
    }

    #[test]
    fn later_record_of_the_same_order_wins_within_a_batch() {
        let batch = vec![partition(
            "orders",
            0,
            vec![
                (1, order("SO-1", "Jones")),
                (2, order("SO-1", "Gill")),
                (3, order("SO-2", "Kivell")),
            ],
        )];
        let plan = plan(batch, PoisonPolicy::DeadLetter);
        assert_eq!(written(&plan), vec![("SO-1".into(), 2), ("SO-2".into(), 3)]);
        assert_eq!(plan.orders[0].order.customer(), "Gill");
        assert_eq!(plan.counts.superseded, 1);
        assert_eq!(plan.distinct_customers(), vec!["Gill", "Kivell"]);
    }

    #[test]
    fn ordering_rule() {
        let wins = |a: SourcePosition, b: SourcePosition| {
            supersedes(&a, a.timestamp_ms, &b, b.timestamp_ms)
        };
        assert!(
            wins(source("t", 0, 5, 1), source("t", 0, 4, 9)),
            "same partition: offset decides"
        );
        assert!(!wins(source("t", 0, 4, 9), source("t", 0, 5, 1)));
        assert!(
            !wins(source("t", 0, 4, 1), source("t", 0, 4, 1)),
            "a replay never supersedes itself"
        );
        assert!(
            wins(source("t", 1, 0, 2), source("t", 0, 99, 1)),
            "across partitions: the clock decides"
        );
        assert!(!wins(source("t", 0, 99, 1), source("t", 1, 0, 2)));
        assert!(
            wins(source("t", 1, 0, 1), source("t", 0, 9, 1)),
            "equal clocks: partition decides"
        );
        // The example that made the timestamp rule depend on commit order: the row holds
        // (p0, 100, ts 500); a = (p0, 101, ts 400) inherits clock 500 and so beats
        // b = (p1, 7, ts 450), whichever comes first.
        let row = source("t", 0, 100, 500);
        let (a, b) = (source("t", 0, 101, 400), source("t", 1, 7, 450));
        assert!(supersedes(&a, Some(400), &row, Some(500)));
        assert_eq!(clock_after(&a, Some(400), &row, Some(500)), Some(500));
        assert!(!supersedes(&b, Some(450), &a, Some(500)));
        assert!(!supersedes(&b, Some(450), &row, Some(500)));
    }

    #[test]
    fn an_order_in_two_partitions_is_written_once_per_partition_in_successive_rounds() {
        let batch = vec![
            partition(
                "orders",
                0,
                vec![(1, order("SO-1", "Jones")), (2, order("SO-1", "Gill"))],
            ),
            partition(
                "orders",
                1,
                vec![(7, order("SO-1", "Kivell")), (8, order("SO-2", "Gill"))],
            ),
        ];
        let plan = plan(batch, PoisonPolicy::DeadLetter);
        let rounds: Vec<Vec<(String, String, i64)>> = plan
            .rounds()
            .iter()
            .map(|round| {
                round
                    .iter()
                    .map(|o| {
                        (
                            o.order.order_no().to_owned(),
                            format!("{}-{}", o.source.topic, o.source.partition),
                            o.source.offset,
                        )
                    })
                    .collect()
            })
            .collect();
        assert_eq!(
            rounds,
            vec![
                vec![
                    ("SO-1".into(), "orders-0".into(), 2),
                    ("SO-2".into(), "orders-1".into(), 8)
                ],
                vec![("SO-1".into(), "orders-1".into(), 7)],
            ]
        );
        // SO-1 in orders-0: offsets 1 and 2 (timestamps 1001, 1002): the clock is the later.
        assert_eq!(plan.orders[0].clock_ms, Some(1002));
        assert_eq!(plan.counts.superseded, 1);
    }

    #[test]
    fn a_plan_built_a_partition_at_a_time_only_appends_and_equals_the_whole_plan() {
        let batch = || {
            vec![
                partition(
                    "orders",
                    0,
                    vec![
                        (1, order("SO-1", "Jones")),
                        (2, order("SO-2", "Gill")),
                        (3, order("SO-1", "Gill")),
                    ],
                ),
                partition(
                    "orders",
                    1,
                    vec![
                        (7, order("SO-1", "Kivell")),
                        (8, poison("bad json")),
                        (9, order("SO-1", "Jones")),
                    ],
                ),
                partition("orders", 2, vec![(4, order("SO-3", "Gill"))]),
            ]
        };
        let mut planner = Planner::new(7, PoisonPolicy::DeadLetter);
        let mut after_each: Vec<Vec<(String, i64)>> = Vec::new();
        for decoded in batch() {
            planner.add(decoded);
            after_each.push(written(planner.plan()));
        }
        // What the write has sent of a partition never changes when later ones are added: a
        // later record of SO-1 replaces only the entry of its own partition.
        assert_eq!(
            after_each,
            vec![
                vec![("SO-1".into(), 3), ("SO-2".into(), 2)],
                vec![("SO-1".into(), 3), ("SO-2".into(), 2), ("SO-1".into(), 9)],
                vec![
                    ("SO-1".into(), 3),
                    ("SO-2".into(), 2),
                    ("SO-1".into(), 9),
                    ("SO-3".into(), 4)
                ],
            ]
        );
        let rounds: Vec<usize> = planner.plan().orders.iter().map(|o| o.round).collect();
        assert_eq!(rounds, vec![0, 0, 1, 0]);
        assert_eq!(planner.finish(), plan(batch(), PoisonPolicy::DeadLetter));
    }

    /// The commit-order property: records of a few order numbers over three partitions, with
    /// timestamps that go back and forth; cut into invocations in many different ways and
    /// committed in every kind of order that keeps each partition's own order. Whatever the
    /// schedule, each row ends as the greatest record under `(clock, topic, partition,
    /// offset)`, the clock being the order's latest timestamp in its partition so far.
    #[test]
    fn the_final_rows_do_not_depend_on_the_order_invocations_commit_in() {
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = |n: u64| -> u64 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for _scenario in 0..300 {
            // (order number, timestamp) per offset, per partition.
            let partitions: Vec<Vec<(String, i64)>> = (0..3)
                .map(|_| {
                    (0..next(7))
                        .map(|_| (format!("SO-{}", next(3)), i64::try_from(next(5)).unwrap()))
                        .collect()
                })
                .collect();
            let expected: BTreeMap<String, (i32, i64)> =
                test_support::ordering::greatest_records(&partitions)
                    .into_iter()
                    .map(|(no, partition, offset)| (no, (partition, offset)))
                    .collect();
            for _schedule in 0..20 {
                let mut cursor = [0usize; 3];
                let mut rows: BTreeMap<String, (SourcePosition, Option<i64>)> = BTreeMap::new();
                while (0..3).any(|p| cursor[p] < partitions[p].len()) {
                    // One invocation: the next few records of some partitions.
                    let mut batch = Vec::new();
                    for p in 0..3 {
                        if cursor[p] == partitions[p].len() || next(2) == 0 {
                            continue;
                        }
                        let take = 1 + usize::try_from(next(3)).unwrap();
                        let end = (cursor[p] + take).min(partitions[p].len());
                        batch.push(decoded(p, &partitions[p][cursor[p]..end], cursor[p]));
                        cursor[p] = end;
                    }
                    apply(&mut rows, &plan(batch, PoisonPolicy::DeadLetter));
                }
                let got: BTreeMap<String, (i32, i64)> = rows
                    .into_iter()
                    .map(|(no, (source, _))| (no, (source.partition, source.offset)))
                    .collect();
                assert_eq!(got, expected, "{partitions:?}");
            }
        }
    }

    fn decoded(
        partition: usize,
        records: &[(String, i64)],
        first_offset: usize,
    ) -> DecodedPartition {
        let number = i32::try_from(partition).unwrap();
        DecodedPartition {
            key: PartitionKey::new(format!("t-{number}")),
            records: records
                .iter()
                .zip(first_offset..)
                .map(|((no, ts), offset)| DecodedRecord {
                    source: source("t", number, i64::try_from(offset).unwrap(), *ts),
                    payload: order(no, "Jones"),
                })
                .collect(),
        }
    }

    /// What the database does with a plan, statement by statement.
    fn apply(rows: &mut BTreeMap<String, (SourcePosition, Option<i64>)>, plan: &Plan) {
        for round in plan.rounds() {
            for candidate in round {
                let no = candidate.order.order_no().to_owned();
                let next = match rows.get(&no) {
                    None => Some((candidate.source.clone(), candidate.clock_ms)),
                    Some((current, clock)) => supersedes(
                        &candidate.source,
                        candidate.clock_ms,
                        current,
                        *clock,
                    )
                    .then(|| {
                        let clock =
                            clock_after(&candidate.source, candidate.clock_ms, current, *clock);
                        (candidate.source.clone(), clock)
                    }),
                };
                if let Some(row) = next {
                    rows.insert(no, row);
                }
            }
        }
    }

    /// Over many generated batches, both policies and both outcomes: at most one identifier
    /// per partition, always a (records key, offset) of the event, never an offset after a
    /// record that was written, and exactly the records from it on counted for redelivery.
    #[test]
    fn reported_identifiers_are_always_in_the_event() {
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = |n: i64| -> i64 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n.unsigned_abs()).cast_signed()
        };
        for _ in 0..500 {
            let partitions: Vec<DecodedPartition> = (0..i32::try_from(1 + next(4)).unwrap())
                .map(|number| {
                    let first = next(1_000);
                    let records = (0..next(6))
                        .map(|i| {
                            let payload = match next(4) {
                                0 => Payload::Tombstone,
                                1 => poison("bad"),
                                _ => order(&format!("SO-{}", next(5)), "Jones"),
                            };
                            (first + 2 * i, payload)
                        })
                        .collect();
                    partition("t.x-y", number, records)
                })
                .collect();
            let in_event: std::collections::BTreeSet<(String, i64)> = partitions
                .iter()
                .flat_map(|p| {
                    p.records
                        .iter()
                        .map(|r| (p.key.as_str().to_owned(), r.source.offset))
                })
                .collect();
            for policy in [PoisonPolicy::DeadLetter, PoisonPolicy::Report] {
                let plan = plan(partitions.clone(), policy);
                for outcome in [WriteOutcome::Committed, WriteOutcome::NotWritten] {
                    let reported = failures(&plan, outcome);
                    let keys: std::collections::BTreeSet<&String> =
                        reported.iter().map(|(k, _)| k).collect();
                    assert_eq!(keys.len(), reported.len(), "one identifier per partition");
                    let mut redelivered = 0;
                    for (key, offset) in &reported {
                        assert!(
                            in_event.contains(&(key.clone(), *offset)),
                            "{key}@{offset} not in the event"
                        );
                        if outcome == WriteOutcome::Committed {
                            let written_after = plan.orders.iter().any(|o| {
                                format!("t.x-y-{}", o.source.partition) == *key
                                    && o.source.offset >= *offset
                            });
                            assert!(
                                !written_after,
                                "a record at or after {key}@{offset} was written"
                            );
                        }
                        redelivered += in_event
                            .iter()
                            .filter(|(k, o)| k == key && o >= offset)
                            .count();
                    }
                    assert_eq!(plan.redelivered_records(outcome), redelivered);
                }
            }
        }
    }

    #[test]
    fn empty_event_plans_nothing_and_reports_nothing() {
        let plan = plan(vec![], PoisonPolicy::DeadLetter);
        assert!(!plan.has_writes());
        assert_eq!(plan.reported(WriteOutcome::NotWritten), []);
    }
}
