//! The batch decoded and planned a partition at a time, for a write that starts on the first
//! partitions while the later ones are still text. Pure, like the rest of planning: the plan
//! it completes is the one [`super::plan`] makes of the whole event.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Plan, Planner};
use crate::config::PoisonPolicy;
use crate::decode::event::{KafkaEvent, Partitions};

/// The event's partitions turned into the plan one at a time, on demand.
pub(crate) struct PlanStream<'a> {
    partitions: Partitions<'a>,
    planner: Planner,
    /// Time spent decoding and planning.
    time: Duration,
    /// The plan, once every partition is in it.
    complete: Option<Arc<Plan>>,
}

impl<'a> PlanStream<'a> {
    /// A stream over `event`'s partitions, in the event's order; nothing is decoded yet.
    pub(crate) fn new(event: KafkaEvent<'a>, policy: PoisonPolicy) -> Self {
        let partitions = Partitions::new(event);
        Self {
            planner: Planner::new(partitions.records_left(), policy),
            partitions,
            time: Duration::ZERO,
            complete: None,
        }
    }

    /// Decodes and plans the next partition; `false` when there is none left. The orders it
    /// added are the last ones of [`Self::plan`], its progress the last partition.
    pub(crate) fn advance(&mut self) -> bool {
        let started = Instant::now();
        let Some(partition) = self.partitions.next() else {
            return false;
        };
        self.planner.add(partition);
        self.time += started.elapsed();
        true
    }

    /// The plan of the partitions planned so far.
    pub(crate) fn plan(&self) -> &Plan {
        self.complete
            .as_deref()
            .unwrap_or_else(|| self.planner.plan())
    }

    /// Whether every partition is planned and the plan taken by [`Self::complete`].
    pub(crate) fn is_complete(&self) -> bool {
        self.complete.is_some()
    }

    /// The complete plan, decoding what is left first. Every call gives the same plan.
    pub(crate) fn complete(&mut self) -> Arc<Plan> {
        if let Some(plan) = &self.complete {
            return Arc::clone(plan);
        }
        while self.advance() {}
        let plan = Arc::new(self.planner.take());
        self.complete = Some(Arc::clone(&plan));
        plan
    }

    /// Time spent decoding and planning so far.
    pub(crate) fn decode_time(&self) -> Duration {
        self.time
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::event;

    const EVENT: &str = r#"{"eventSource":"aws:kafka","records":{
        "orders-0":[
          {"topic":"orders","partition":0,"offset":4,"timestamp":1,"value":"eyJPcmRlck5vIjoiU08tMSIsIk9yZGVyRGF0ZSI6IjEvNi8xOSIsIlJlZ2lvbiI6IkVhc3QiLCJDdXN0b21lciI6IkpvbmVzIiwiSXRlbSI6IlBlbmNpbCIsIlVuaXRzIjoxLCJVbml0IENvc3QiOjEuOTksIlRvdGFsIjoxLjk5fQ=="},
          {"topic":"orders","partition":0,"offset":5,"timestamp":2,"value":"bm90IGpzb24="}],
        "orders-1":[
          {"topic":"orders","partition":1,"offset":9,"timestamp":3,"value":"eyJPcmRlck5vIjoiU08tMSIsIk9yZGVyRGF0ZSI6IjEvNi8xOSIsIlJlZ2lvbiI6IkVhc3QiLCJDdXN0b21lciI6IkpvbmVzIiwiSXRlbSI6IlBlbmNpbCIsIlVuaXRzIjoxLCJVbml0IENvc3QiOjEuOTksIlRvdGFsIjoxLjk5fQ=="}]
    }}"#;

    fn parsed() -> KafkaEvent<'static> {
        serde_json::from_str(EVENT).unwrap()
    }

    #[test]
    fn a_plan_streamed_a_partition_at_a_time_is_the_plan_of_the_whole_event() {
        let whole = super::super::plan(event::decode(parsed()), PoisonPolicy::DeadLetter);
        let mut stream = PlanStream::new(parsed(), PoisonPolicy::DeadLetter);
        assert_eq!(
            stream.plan().orders.len(),
            0,
            "nothing decoded before it is asked for"
        );
        assert!(stream.advance());
        assert_eq!(stream.plan().partitions.len(), 1);
        assert_eq!(stream.plan().orders.len(), 1);
        assert_eq!(
            stream.plan().dead_letters.len(),
            1,
            "the value that is not JSON"
        );
        assert!(!stream.is_complete());
        let complete = stream.complete();
        assert!(stream.is_complete());
        assert_eq!(*complete, whole);
        assert_eq!(complete.orders.len(), 2, "SO-1 once in each partition");
        assert_eq!(*stream.complete(), whole, "the same plan every call");
        assert!(!stream.advance(), "nothing left after the plan is complete");
    }
}
