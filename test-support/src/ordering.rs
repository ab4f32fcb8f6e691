//! The ordering rule's test oracle: what a row must end as, computed the slow and obvious way
//! from all the records, for the commit-order property tests to compare against.

use std::collections::BTreeMap;

/// Per order number, the greatest record under (clock, topic, partition, offset) among
/// `partitions` (one topic; each partition a list of (order number, timestamp) by offset), the
/// clock being the order's latest timestamp in its partition up to that record. Returns
/// (order number, partition, offset), sorted by order number.
pub fn greatest_records(partitions: &[Vec<(String, i64)>]) -> Vec<(String, i32, i64)> {
    let mut best: BTreeMap<String, (i64, i32, i64)> = BTreeMap::new();
    for (partition, records) in (0..).zip(partitions) {
        let mut clocks: BTreeMap<&str, i64> = BTreeMap::new();
        for (offset, (order_no, timestamp)) in (0..).zip(records) {
            let clock = clocks.entry(order_no).or_insert(i64::MIN);
            *clock = (*clock).max(*timestamp);
            let key = (*clock, partition, offset);
            let entry = best.entry(order_no.clone()).or_insert(key);
            *entry = (*entry).max(key);
        }
    }
    best.into_iter()
        .map(|(order_no, (_, partition, offset))| (order_no, partition, offset))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_later_clock_wins_across_partitions_and_a_later_offset_within_one() {
        let partitions = vec![
            // p0: SO-1 at ts 500, then SO-1 at ts 400 (inherits clock 500).
            vec![("SO-1".to_owned(), 500), ("SO-1".to_owned(), 400)],
            // p1: SO-1 at ts 450, SO-2 at ts 1.
            vec![("SO-1".to_owned(), 450), ("SO-2".to_owned(), 1)],
        ];
        assert_eq!(
            greatest_records(&partitions),
            vec![("SO-1".to_owned(), 0, 1), ("SO-2".to_owned(), 1, 1)]
        );
    }
}
