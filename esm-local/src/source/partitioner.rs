//! Kafka's default partitioner for keyed records, so that a file topic spreads its records over
//! partitions exactly as a Java producer would put them on a broker.

/// `toPositive(murmur2(key)) % partitions`, as `org.apache.kafka.clients.producer.internals.
/// BuiltInPartitioner.partitionForKey`.
pub fn partition_for(key: &[u8], partitions: i32) -> i32 {
    let positive = murmur2(key) & 0x7fff_ffff;
    let partitions = partitions.max(1).unsigned_abs();
    // The remainder is below `partitions`, an i32: the conversion cannot fail.
    i32::try_from(positive % partitions).unwrap_or(0)
}

/// Kafka's murmur2 (seed 0x9747b28c), as in `org.apache.kafka.common.utils.Utils.murmur2`.
pub fn murmur2(data: &[u8]) -> u32 {
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    // Kafka hashes the length as a Java int: lengths wrap the same way here.
    #[allow(clippy::cast_possible_truncation)]
    let mut h: u32 = 0x9747_b28c ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for chunk in chunks.by_ref() {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = chunks.remainder();
    if rest.len() >= 3 {
        h ^= u32::from(rest[2]) << 16;
    }
    if rest.len() >= 2 {
        h ^= u32::from(rest[1]) << 8;
    }
    if !rest.is_empty() {
        h ^= u32::from(rest[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_kafka() {
        // Vectors from Kafka's UtilsTest, as Java ints.
        let java = |data: &[u8]| i32::from_ne_bytes(murmur2(data).to_ne_bytes());
        assert_eq!(java(b"21"), -973932308);
        assert_eq!(java(b"foobar"), -790332482);
        assert_eq!(java(b"a-little-bit-long-string"), -985981536);
        assert_eq!(java(b"a-little-bit-longer-string"), -1486304829);
        assert_eq!(
            java(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8"),
            -58897971
        );
        assert_eq!(java(b"abc"), 479470107);
    }

    #[test]
    fn keys_land_where_a_java_producer_puts_them() {
        // murmur2("foobar") = -790332482 -> positive 1357151166; % 3 = 0, % 4 = 2.
        assert_eq!(partition_for(b"foobar", 3), 0);
        assert_eq!(partition_for(b"foobar", 4), 2);
        assert_eq!(partition_for(b"foobar", 0), 0, "no partitions: partition 0");
    }
}
