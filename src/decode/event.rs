//! The MSK / self-managed Kafka event as Lambda's event source mapping sends it, and its
//! decoding into partitions of typed records.
//!
//! The wire model is written here rather than taken from `aws_lambda_events`, whose
//! `KafkaRecord` rejects payloads without `headers` (older events omit it) and cannot be
//! constructed outside its crate.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;

use crate::decode::order::Order;

/// One invocation's payload, borrowing its strings from the event's text: the 6 MB of base64
/// in a full batch are scanned once and never copied. Unknown fields (schema registry metadata,
/// future additions) are ignored; `records` is required so that an event of another source
/// (SQS, Kinesis) sent here by mistake fails loudly instead of succeeding with nothing processed.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KafkaEvent<'a> {
    /// `aws:kafka` (MSK) or `SelfManagedKafka`.
    #[serde(default)]
    pub event_source: Option<String>,
    /// The cluster (MSK only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_source_arn: Option<String>,
    /// The brokers, comma-separated.
    #[serde(default)]
    pub bootstrap_servers: Option<String>,
    /// Records by `topic-partition`, each list in offset order.
    #[serde(borrow)]
    pub records: BTreeMap<Text<'a>, Vec<KafkaRecord<'a>>>,
}

impl KafkaEvent<'_> {
    /// The event with every string copied out of the text it was parsed from.
    pub fn into_owned(self) -> KafkaEvent<'static> {
        KafkaEvent {
            event_source: self.event_source,
            event_source_arn: self.event_source_arn,
            bootstrap_servers: self.bootstrap_servers,
            records: self
                .records
                .into_iter()
                .map(|(key, records)| {
                    (
                        key.into_owned(),
                        records.into_iter().map(KafkaRecord::into_owned).collect(),
                    )
                })
                .collect(),
        }
    }
}

/// One record as the event carries it (base64 key and value).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KafkaRecord<'a> {
    /// The record's topic.
    #[serde(borrow)]
    pub topic: Text<'a>,
    /// The record's partition.
    pub partition: i32,
    /// The record's offset.
    pub offset: i64,
    /// Epoch milliseconds.
    #[serde(default)]
    pub timestamp: Option<i64>,
    /// `CREATE_TIME` or `LOG_APPEND_TIME`.
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    pub timestamp_type: Option<Text<'a>>,
    /// Base64; absent or null for records produced without a key.
    #[serde(default, borrow, deserialize_with = "base64_text")]
    pub key: Option<Base64Text<'a>>,
    /// Base64; absent or null for a tombstone.
    #[serde(default, borrow, deserialize_with = "base64_text")]
    pub value: Option<Base64Text<'a>>,
    /// One-entry objects whose values are Java `byte`s (-128..=127); absent in older payloads.
    /// Kept as raw JSON and decoded only for records that are dead-lettered: most records never
    /// need them, and decoding them for every record would cost more than the order itself.
    #[serde(
        default,
        borrow,
        deserialize_with = "raw_json",
        serialize_with = "raw_json_out"
    )]
    pub headers: Option<Cow<'a, RawValue>>,
}

impl KafkaRecord<'_> {
    /// The record with every string copied out of the text it was parsed from.
    pub fn into_owned(self) -> KafkaRecord<'static> {
        KafkaRecord {
            topic: self.topic.into_owned(),
            partition: self.partition,
            offset: self.offset,
            timestamp: self.timestamp,
            timestamp_type: self.timestamp_type.map(Text::into_owned),
            key: self.key.map(Base64Text::into_owned),
            value: self.value.map(Base64Text::into_owned),
            headers: self.headers.map(|raw| Cow::Owned(raw.into_owned())),
        }
    }
}

/// A JSON string of the event: borrowed from the event's text, or owned when the JSON spelled
/// it with escapes (or the event was built in code).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Text<'a>(Cow<'a, str>);

impl Text<'_> {
    /// The string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The string, owned.
    pub fn into_owned(self) -> Text<'static> {
        Text(Cow::Owned(self.0.into_owned()))
    }
}

impl PartialEq<str> for Text<'_> {
    fn eq(&self, other: &str) -> bool {
        *self.0 == *other
    }
}

impl PartialEq<&str> for Text<'_> {
    fn eq(&self, other: &&str) -> bool {
        *self.0 == **other
    }
}

impl fmt::Display for Text<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::borrow::Borrow<str> for Text<'_> {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl Deref for Text<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl From<String> for Text<'static> {
    fn from(text: String) -> Self {
        Text(Cow::Owned(text))
    }
}

impl<'a> From<&'a str> for Text<'a> {
    fn from(text: &'a str) -> Self {
        Text(Cow::Borrowed(text))
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(TextVisitor)
    }
}

/// A key or value as the event spells it, base64, kept as bytes: it is only ever decoded, and
/// the decoder checks every byte anyway (base64 is ASCII), so a UTF-8 check of the 6 MB of them
/// in a full event would be spent for nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Base64Text<'a>(Cow<'a, [u8]>);

impl Base64Text<'_> {
    /// The text, owned.
    pub fn into_owned(self) -> Base64Text<'static> {
        Base64Text(Cow::Owned(self.0.into_owned()))
    }
}

impl Deref for Base64Text<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl<'a> From<&'a str> for Base64Text<'a> {
    fn from(text: &'a str) -> Self {
        Base64Text(Cow::Borrowed(text.as_bytes()))
    }
}

impl Serialize for Base64Text<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // What was read from JSON text is UTF-8; anything else is written as its lossy form.
        serializer.serialize_str(&String::from_utf8_lossy(&self.0))
    }
}

/// Takes a JSON string as a [`Text`], borrowed when it has no escapes.
struct TextVisitor;

impl<'de> serde::de::Visitor<'de> for TextVisitor {
    type Value = Text<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_borrowed_str<E>(self, text: &'de str) -> Result<Self::Value, E> {
        Ok(Text(Cow::Borrowed(text)))
    }
    fn visit_str<E>(self, text: &str) -> Result<Self::Value, E> {
        Ok(Text(Cow::Owned(text.to_owned())))
    }
    fn visit_string<E>(self, text: String) -> Result<Self::Value, E> {
        Ok(Text(Cow::Owned(text)))
    }
}

/// Takes a JSON string, read as bytes (see [`base64_text`]), as a [`Base64Text`].
struct Base64Visitor;

impl<'de> serde::de::Visitor<'de> for Base64Visitor {
    type Value = Base64Text<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a base64 string")
    }
    fn visit_borrowed_bytes<E>(self, bytes: &'de [u8]) -> Result<Self::Value, E> {
        Ok(Base64Text(Cow::Borrowed(bytes)))
    }
    fn visit_bytes<E>(self, bytes: &[u8]) -> Result<Self::Value, E> {
        Ok(Base64Text(Cow::Owned(bytes.to_vec())))
    }
    fn visit_borrowed_str<E>(self, text: &'de str) -> Result<Self::Value, E> {
        Ok(Base64Text(Cow::Borrowed(text.as_bytes())))
    }
    fn visit_str<E>(self, text: &str) -> Result<Self::Value, E> {
        Ok(Base64Text(Cow::Owned(text.as_bytes().to_vec())))
    }
}

impl Serialize for Text<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

/// A base64 key or value, or null. It is read as bytes: serde_json checks every byte of a string
/// it reads as text for control characters, eight at a time, but finds the end of one read as
/// bytes with a SIMD search, and these strings are almost all of a full event's 6 MB. Nothing
/// is lost by not checking: a control character is not base64, so such a record still fails
/// to decode and is kept as a dead letter with the reason (rather than failing the whole event).
fn base64_text<'de: 'a, 'a, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Base64Text<'a>>, D::Error> {
    struct Nullable;
    impl<'de> serde::de::Visitor<'de> for Nullable {
        type Value = Option<Base64Text<'de>>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a base64 string or null")
        }
        fn visit_none<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(
            self,
            deserializer: D,
        ) -> Result<Self::Value, D::Error> {
            deserializer.deserialize_bytes(Base64Visitor).map(Some)
        }
    }
    deserializer.deserialize_option(Nullable)
}

/// Headers as raw JSON, borrowed from the event's text; `null` is no headers.
fn raw_json<'de: 'a, 'a, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Cow<'a, RawValue>>, D::Error> {
    let raw = <&'de RawValue>::deserialize(deserializer)?;
    Ok((raw.get() != "null").then_some(Cow::Borrowed(raw)))
}

fn raw_json_out<S: Serializer>(
    raw: &Option<Cow<'_, RawValue>>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    raw.as_deref().serialize(serializer)
}

/// The `records` map key of a partition (`"<topic>-<partition>"`), kept exactly as Lambda sent
/// it: it is the `partition` Lambda expects back in a batch item failure. Topic names may
/// contain `-` and `.`, so it is never split.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PartitionKey(String);

impl PartitionKey {
    /// The key as the event spells it.
    pub fn new(key: impl Into<String>) -> Self {
        Self(key.into())
    }

    /// The key as the response must spell it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PartitionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a record came from; orders and dead letters keep it so every row can be traced back
/// to its Kafka record and replays can be recognised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourcePosition {
    /// The topic (one allocation per partition, shared by its records).
    pub topic: Arc<str>,
    /// The partition.
    pub partition: i32,
    /// The offset.
    pub offset: i64,
    /// The record timestamp (epoch milliseconds), `None` when absent or out of PostgreSQL's range.
    pub timestamp_ms: Option<i64>,
    /// The record carried a timestamp PostgreSQL cannot store: the row keeps a flag instead.
    pub timestamp_out_of_range: bool,
}

/// A Kafka header with its value as bytes (`None` for a header without a value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The header name.
    pub name: String,
    /// The header value.
    pub value: Option<Vec<u8>>,
}

/// What a record turned out to be once decoded.
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    /// A valid order.
    Order(Order),
    /// No value: a deletion marker, skipped.
    Tombstone,
    /// A value that is not an order.
    Poison(Poison),
}

/// A record that cannot become an order. Everything needed to inspect and replay it is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Poison {
    /// Why it could not be decoded.
    pub reason: String,
    /// Decoded key bytes; the received text's bytes when the key was not valid base64.
    pub raw_key: Option<Vec<u8>>,
    /// Decoded value bytes; the received text's bytes when the value was not valid base64.
    pub raw_value: Option<Vec<u8>>,
    /// The record's headers.
    pub headers: Vec<Header>,
}

/// A record with its payload decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedRecord {
    /// Where it came from.
    pub source: SourcePosition,
    /// What it holds.
    pub payload: Payload,
}

/// The records of one `records` map entry, in offset order.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedPartition {
    /// The `records` key of the partition.
    pub key: PartitionKey,
    /// Its records, in offset order.
    pub records: Vec<DecodedRecord>,
}

/// Decodes every record of the event. Never fails: a record that cannot be decoded becomes a
/// [`Payload::Poison`] with the reason, so one bad record cannot fail the batch.
pub fn decode(event: KafkaEvent<'_>) -> Vec<DecodedPartition> {
    Partitions::new(event).collect()
}

/// The event's partitions, each decoded when it is asked for: the write can take the first
/// partitions while the later ones are still text. See [`decode`].
pub struct Partitions<'a> {
    records: std::collections::btree_map::IntoIter<Text<'a>, Vec<KafkaRecord<'a>>>,
    records_left: usize,
    // Buffers for every record's decoded key and value: an order copies out what it keeps,
    // and only a dead letter needs the bytes themselves.
    scratch: Scratch,
}

impl<'a> Partitions<'a> {
    /// The partitions of `event`, in its order.
    pub fn new(event: KafkaEvent<'a>) -> Self {
        Self {
            records_left: event.records.values().map(Vec::len).sum(),
            records: event.records.into_iter(),
            scratch: Scratch::default(),
        }
    }

    /// The records of the partitions not decoded yet.
    pub fn records_left(&self) -> usize {
        self.records_left
    }
}

impl Iterator for Partitions<'_> {
    type Item = DecodedPartition;

    fn next(&mut self) -> Option<DecodedPartition> {
        let (key, mut records) = self.records.next()?;
        self.records_left -= records.len();
        // Lambda delivers each partition in offset order; sorting costs nothing when that
        // holds and keeps the write order right if it ever does not.
        records.sort_by_key(|record| record.offset);
        let mut topic: Option<Arc<str>> = None;
        let scratch = &mut self.scratch;
        Some(DecodedPartition {
            key: PartitionKey::new(key.as_str()),
            records: records
                .into_iter()
                .map(|record| decode_record(record, &mut topic, scratch))
                .collect(),
        })
    }
}

/// The epoch milliseconds `timestamptz` can hold: 4714-11-24 BC to 294276-12-31 AD.
const POSTGRES_TIMESTAMP_MS: std::ops::Range<i64> = -210_866_803_200_000..9_224_318_016_000_000;

/// The decoded bytes of the record at hand, reused from record to record.
#[derive(Default)]
struct Scratch {
    key: Vec<u8>,
    value: Vec<u8>,
}

fn decode_record(
    record: KafkaRecord<'_>,
    topic: &mut Option<Arc<str>>,
    scratch: &mut Scratch,
) -> DecodedRecord {
    // A timestamp the database would refuse would fail the batch's one statement on every
    // delivery: it is kept as unknown instead (and counted), which the ordering rule already
    // handles as the earliest possible time.
    let timestamp_ms = record
        .timestamp
        .filter(|ms| POSTGRES_TIMESTAMP_MS.contains(ms));
    let timestamp_out_of_range = record.timestamp.is_some() && timestamp_ms.is_none();
    let shared_topic = match topic {
        Some(shared) if **shared == *record.topic => shared.clone(),
        _ => topic.insert(Arc::from(record.topic.as_str())).clone(),
    };
    let source = SourcePosition {
        topic: shared_topic,
        partition: record.partition,
        offset: record.offset,
        timestamp_ms,
        timestamp_out_of_range,
    };
    let payload = match &record.value {
        None => Payload::Tombstone,
        Some(value) => decode_payload(
            record.key.as_deref(),
            value,
            record.headers.as_deref(),
            scratch,
        ),
    };
    DecodedRecord { source, payload }
}

fn decode_payload(
    key: Option<&[u8]>,
    value: &[u8],
    headers: Option<&RawValue>,
    scratch: &mut Scratch,
) -> Payload {
    let mut reasons: Vec<String> = Vec::new();
    if let Some(text) = key {
        if let Err(reason) = decode_base64_field("key", text, &mut scratch.key) {
            reasons.push(reason);
        }
    }
    match decode_base64_field("value", value, &mut scratch.value) {
        Ok(()) if reasons.is_empty() => match Order::parse(&scratch.value) {
            Ok(order) => return Payload::Order(order),
            Err(problem) => reasons.push(problem.to_string()),
        },
        Ok(()) => {}
        Err(reason) => reasons.push(reason),
    }
    Payload::Poison(Poison {
        reason: reasons.join("; "),
        raw_key: key.map(|_| scratch.key.clone()),
        raw_value: Some(scratch.value.clone()),
        headers: headers.map(decode_headers).unwrap_or_default(),
    })
}

/// Base64-decodes a key or value into `bytes` (SIMD where the CPU has it). On failure `bytes`
/// holds the received text's bytes, so that nothing of the record is lost, and the reason says
/// what is wrong (from the scalar decoder, which tells where).
fn decode_base64_field(field: &str, text: &[u8], bytes: &mut Vec<u8>) -> Result<(), String> {
    bytes.clear();
    if base64_simd::STANDARD.decode_append(text, bytes).is_ok() {
        return Ok(());
    }
    bytes.clear();
    match BASE64.decode_vec(text, bytes) {
        Ok(()) => Ok(()),
        Err(error) => {
            bytes.clear();
            bytes.extend_from_slice(text);
            Err(format!(
                "{field} is not valid base64 ({error}); stored as received"
            ))
        }
    }
}

/// Turns the event's header form (one-entry objects of Java signed bytes) into names and byte
/// values. Headers that do not have that form are kept whole, as one entry, rather than lost.
pub fn decode_headers(raw: &RawValue) -> Vec<Header> {
    type WireHeaders = Vec<BTreeMap<String, Option<Vec<i8>>>>;
    match serde_json::from_str::<Option<WireHeaders>>(raw.get()) {
        Ok(headers) => headers
            .unwrap_or_default()
            .into_iter()
            .flat_map(|entry| entry.into_iter())
            .map(|(name, value)| Header {
                name,
                // Java bytes are two's complement: -61 is 0xC3.
                value: value.map(|bytes| bytes.into_iter().map(i8::cast_unsigned).collect()),
            })
            .collect(),
        Err(_) => vec![Header {
            name: "(headers not in the Kafka event form, kept as received)".to_owned(),
            value: Some(raw.get().as_bytes().to_vec()),
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(json: &str) -> KafkaRecord<'static> {
        serde_json::from_str::<KafkaRecord<'_>>(json)
            .unwrap()
            .into_owned()
    }

    /// The record decoded, which must be poison whose reason starts with `reason`.
    fn poison_with_reason(r: KafkaRecord<'_>, reason: &str) -> Poison {
        let Payload::Poison(poison) = decode_record(r, &mut None, &mut Scratch::default()).payload
        else {
            panic!("expected poison")
        };
        assert!(poison.reason.starts_with(reason), "{}", poison.reason);
        poison
    }

    #[test]
    fn signed_header_bytes_decode_to_utf8() {
        let raw =
            RawValue::from_string(r#"[{"city":[77,111,110,116,114,-61,-87,97,108]}]"#.to_owned())
                .unwrap();
        let headers = decode_headers(&raw);
        assert_eq!(
            headers,
            vec![Header {
                name: "city".into(),
                value: Some("Montréal".as_bytes().to_vec())
            }]
        );
    }

    #[test]
    fn record_without_key_headers_or_timestamp_type_is_accepted() {
        let r =
            record(r#"{"topic":"orders","partition":0,"offset":3,"timestamp":1,"value":"e30="}"#);
        assert_eq!(r.key, None);
        assert!(r.headers.is_none());
        assert_eq!(r.value.as_deref(), Some(&b"e30="[..]));
    }

    #[test]
    fn headers_in_another_form_are_kept_whole() {
        let raw = RawValue::from_string(r#"{"source":"web"}"#.to_owned()).unwrap();
        let headers = decode_headers(&raw);
        assert_eq!(headers.len(), 1);
        assert_eq!(
            headers[0].value.as_deref(),
            Some(&br#"{"source":"web"}"#[..])
        );
        let null = RawValue::from_string("null".to_owned()).unwrap();
        assert_eq!(decode_headers(&null), vec![]);
    }

    #[test]
    fn null_and_absent_values_are_tombstones() {
        let event: KafkaEvent = serde_json::from_str(
            r#"{"eventSource":"aws:kafka","records":{"orders-0":[
                {"topic":"orders","partition":0,"offset":1,"timestamp":1,"key":"YQ==","value":null,"headers":[]},
                {"topic":"orders","partition":0,"offset":2,"timestamp":1,"key":"Yg=="}]}}"#,
        )
        .unwrap();
        let partitions = decode(event);
        let payloads: Vec<_> = partitions[0]
            .records
            .iter()
            .map(|r| r.payload.clone())
            .collect();
        assert_eq!(payloads, vec![Payload::Tombstone, Payload::Tombstone]);
    }

    #[test]
    fn bad_base64_value_is_poison_kept_as_received() {
        let r = record(
            r#"{"topic":"orders","partition":0,"offset":3,"timestamp":1,"key":"U08tMDAx","value":"not base64!","headers":[{"h":[104]}]}"#,
        );
        let poison = poison_with_reason(r, "value is not valid base64");
        assert_eq!(poison.raw_key.as_deref(), Some(&b"SO-001"[..]));
        assert_eq!(poison.raw_value.as_deref(), Some(&b"not base64!"[..]));
        assert_eq!(
            poison.headers,
            vec![Header {
                name: "h".into(),
                value: Some(vec![104])
            }]
        );
    }

    #[test]
    fn base64_spelled_with_json_escapes_is_read_as_the_string_it_spells() {
        // `\/` and `\u003d` are how some JSON writers spell `/` and `=`.
        let r = record(
            r#"{"topic":"orders","partition":0,"offset":3,"timestamp":1,"key":"Lz8\/","value":"e30\u003d"}"#,
        );
        assert_eq!(r.key.as_deref(), Some(&b"Lz8/"[..]));
        assert_eq!(r.value.as_deref(), Some(&b"e30="[..]));
    }

    #[test]
    fn a_control_character_in_a_value_costs_its_record_not_the_event() {
        let r = record(
            "{\"topic\":\"orders\",\"partition\":0,\"offset\":3,\"timestamp\":1,\"value\":\"e3\u{1}0=\"}",
        );
        let poison = poison_with_reason(r, "value is not valid base64");
        assert_eq!(poison.raw_value.as_deref(), Some(&b"e3\x010="[..]));
    }

    #[test]
    fn a_value_that_is_not_a_string_fails_the_event_with_its_field() {
        let error = serde_json::from_str::<KafkaRecord<'_>>(
            r#"{"topic":"orders","partition":0,"offset":3,"value":12}"#,
        )
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            "invalid type: integer `12`, expected a base64 string at line 1 column 53"
        );
    }

    #[test]
    fn bad_base64_key_is_poison_even_when_value_is_a_valid_order() {
        let value = BASE64.encode(
            br#"{"OrderNo":"SO-1","OrderDate":"1/6/19","Region":"East","Customer":"Jones","Item":"Pencil","Units":1,"Unit Cost":1,"Total":1}"#,
        );
        let r = record(&format!(
            r#"{{"topic":"t","partition":0,"offset":0,"timestamp":1,"key":"%%%","value":"{value}"}}"#
        ));
        let poison = poison_with_reason(r, "key is not valid base64");
        assert_eq!(poison.raw_key.as_deref(), Some(&b"%%%"[..]));
    }

    #[test]
    fn partition_records_are_put_in_offset_order() {
        let event: KafkaEvent = serde_json::from_str(
            r#"{"records":{"t-0":[
                {"topic":"t","partition":0,"offset":9,"timestamp":1},
                {"topic":"t","partition":0,"offset":7,"timestamp":1}]}}"#,
        )
        .unwrap();
        let offsets: Vec<i64> = decode(event)[0]
            .records
            .iter()
            .map(|r| r.source.offset)
            .collect();
        assert_eq!(offsets, vec![7, 9]);
    }

    #[test]
    fn an_event_without_records_is_rejected() {
        let error = serde_json::from_str::<KafkaEvent>(r#"{"Records":[]}"#).unwrap_err();
        assert!(
            error.to_string().contains("missing field `records`"),
            "{error}"
        );
    }
}
