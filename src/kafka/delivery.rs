//! Delivery reports of the records one invocation hands to the producer, collected without a
//! future, a channel or an allocation per record: librdkafka's polling thread writes each
//! record's outcome into a slot of the batch it belongs to, and the invocation waits once, for
//! the last report, instead of once per record.
//!
//! A record is known to librdkafka by one number (its delivery opaque): the batch's generation
//! and the record's slot. A report whose batch has ended (its invocation answered, say at the
//! deadline, and a purged or late-acknowledged record reports afterwards) finds no open batch
//! of its generation and is dropped, so it can never mark a later invocation's record as
//! delivered.

use std::sync::atomic::{AtomicU16, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use rdkafka::error::KafkaError;
use tokio::sync::Notify;

use crate::locks::lock;

// The opaque holds a generation above bit 32 and a slot below it.
const _: () = assert!(
    usize::BITS >= 64,
    "the delivery opaque needs 64-bit pointers"
);
const SLOT_BITS: u32 = 32;
const SLOT_MASK: usize = (1 << SLOT_BITS) - 1;

const PENDING: u8 = 0;
const DELIVERED: u8 = 1;
const FAILED: u8 = 2;

/// What became of one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Delivery {
    /// No report yet.
    Pending,
    /// Acknowledged by the brokers.
    Delivered,
    /// Not delivered, for this reason.
    Failed(KafkaError),
}

/// The open batches of one producer (normally one: Lambda sends an execution environment one
/// invocation at a time).
#[derive(Default)]
pub(crate) struct Deliveries {
    open: Mutex<Vec<Arc<Batch>>>,
    generation: AtomicU16,
}

/// One invocation's records, from enqueueing to the last report.
pub(crate) struct Batch {
    generation: u16,
    outcomes: Vec<AtomicU8>,
    /// The reasons of the failed slots (rare, so a list rather than one per slot).
    failures: Mutex<Vec<(usize, KafkaError)>>,
    outstanding: AtomicUsize,
    all_reported: Notify,
}

/// An open batch; closing it (dropping this) drops the reports that still arrive for it.
pub(crate) struct OpenBatch<'a> {
    deliveries: &'a Deliveries,
    batch: Arc<Batch>,
}

impl Deliveries {
    /// Opens a batch of at most `capacity` records (at most 2^32).
    pub(crate) fn open(&self, capacity: usize) -> OpenBatch<'_> {
        let generation = self.generation.fetch_add(1, Ordering::Relaxed);
        let batch = Arc::new(Batch {
            generation,
            outcomes: (0..capacity.min(SLOT_MASK + 1))
                .map(|_| AtomicU8::new(PENDING))
                .collect(),
            failures: Mutex::new(Vec::new()),
            outstanding: AtomicUsize::new(0),
            all_reported: Notify::new(),
        });
        lock(&self.open).push(Arc::clone(&batch));
        OpenBatch {
            deliveries: self,
            batch,
        }
    }

    /// Records the report of the record `opaque` names (called on librdkafka's thread).
    pub(crate) fn report(&self, opaque: usize, result: Result<(), &KafkaError>) {
        let generation = u16::try_from(opaque >> SLOT_BITS).ok();
        let slot = opaque & SLOT_MASK;
        let open = lock(&self.open);
        let Some(batch) = open.iter().find(|b| Some(b.generation) == generation) else {
            tracing::debug!(opaque, "a delivery report for a batch that has ended");
            return;
        };
        let Some(outcome) = batch.outcomes.get(slot) else {
            return;
        };
        // Only the first report of a slot counts (librdkafka sends one).
        let state = if result.is_ok() { DELIVERED } else { FAILED };
        if outcome
            .compare_exchange(PENDING, state, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return;
        }
        if let Err(error) = result {
            lock(&batch.failures).push((slot, error.clone()));
        }
        if batch.outstanding.fetch_sub(1, Ordering::AcqRel) == 1 {
            batch.all_reported.notify_one();
        }
    }
}

impl OpenBatch<'_> {
    /// The opaque to enqueue the record of `slot` with, counted as awaiting its report. `None`
    /// past the batch's capacity.
    pub(crate) fn expect(&self, slot: usize) -> Option<usize> {
        if slot >= self.batch.outcomes.len() {
            return None;
        }
        self.batch.outstanding.fetch_add(1, Ordering::AcqRel);
        Some((usize::from(self.batch.generation) << SLOT_BITS) | slot)
    }

    /// The record just expected was not enqueued after all: no report is coming for it.
    pub(crate) fn not_enqueued(&self) {
        if self.batch.outstanding.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.batch.all_reported.notify_one();
        }
    }

    /// Waits until every enqueued record has its report.
    pub(crate) async fn all_reported(&self) {
        while self.batch.outstanding.load(Ordering::Acquire) > 0 {
            self.batch.all_reported.notified().await;
        }
    }

    /// What became of the record of `slot` so far.
    pub(crate) fn outcome(&self, slot: usize) -> Delivery {
        match self
            .batch
            .outcomes
            .get(slot)
            .map(|o| o.load(Ordering::Acquire))
        {
            Some(DELIVERED) => Delivery::Delivered,
            Some(FAILED) => lock(&self.batch.failures)
                .iter()
                .find(|(failed, _)| *failed == slot)
                .map_or(Delivery::Pending, |(_, error)| {
                    Delivery::Failed(error.clone())
                }),
            _ => Delivery::Pending,
        }
    }
}

impl Drop for OpenBatch<'_> {
    fn drop(&mut self) {
        lock(&self.deliveries.open).retain(|b| !Arc::ptr_eq(b, &self.batch));
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rdkafka::error::RDKafkaErrorCode;

    use super::*;

    fn timed_out() -> KafkaError {
        KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut)
    }

    #[tokio::test]
    async fn every_slot_gets_its_own_outcome_and_the_wait_ends_with_the_last_report() {
        let deliveries = Deliveries::default();
        let batch = deliveries.open(3);
        let opaques: Vec<usize> = (0..3).filter_map(|slot| batch.expect(slot)).collect();
        deliveries.report(opaques[2], Ok(()));
        deliveries.report(opaques[0], Err(&timed_out()));
        assert!(
            tokio::time::timeout(Duration::from_millis(50), batch.all_reported())
                .await
                .is_err(),
            "one report is still outstanding"
        );
        deliveries.report(opaques[1], Ok(()));
        tokio::time::timeout(Duration::from_secs(1), batch.all_reported())
            .await
            .expect("all three reported");
        assert_eq!(
            (0..3).map(|slot| batch.outcome(slot)).collect::<Vec<_>>(),
            [
                Delivery::Failed(timed_out()),
                Delivery::Delivered,
                Delivery::Delivered
            ]
        );
    }

    #[tokio::test]
    async fn a_report_for_an_ended_batch_never_marks_a_later_batch() {
        let deliveries = Deliveries::default();
        let first = deliveries.open(1);
        let stale = first.expect(0).expect("slot 0");
        drop(first);
        let second = deliveries.open(1);
        let current = second.expect(0).expect("slot 0");
        assert_ne!(stale, current);
        deliveries.report(stale, Ok(()));
        assert_eq!(second.outcome(0), Delivery::Pending);
        deliveries.report(current, Ok(()));
        assert_eq!(second.outcome(0), Delivery::Delivered);
    }

    #[tokio::test]
    async fn a_record_that_was_not_enqueued_is_not_waited_for() {
        let deliveries = Deliveries::default();
        let batch = deliveries.open(2);
        let delivered = batch.expect(0).expect("slot 0");
        let _refused = batch.expect(1).expect("slot 1");
        batch.not_enqueued();
        deliveries.report(delivered, Ok(()));
        tokio::time::timeout(Duration::from_secs(1), batch.all_reported())
            .await
            .expect("nothing outstanding");
        assert_eq!(batch.outcome(1), Delivery::Pending);
    }

    #[test]
    fn a_second_report_of_a_slot_changes_nothing() {
        let deliveries = Deliveries::default();
        let batch = deliveries.open(1);
        let opaque = batch.expect(0).expect("slot 0");
        deliveries.report(opaque, Err(&timed_out()));
        deliveries.report(opaque, Ok(()));
        assert_eq!(batch.outcome(0), Delivery::Failed(timed_out()));
        assert_eq!(batch.expect(1), None, "past the capacity");
    }
}
