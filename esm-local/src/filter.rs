//! Event filtering (`FilterCriteria`), as Lambda applies it to Kafka records: patterns on the
//! record's `value` (the decoded JSON, or the text when the value is not JSON), matched with
//! quamina (a Rust port of the matcher family EventBridge's patterns come from). A record that
//! matches no pattern never reaches the function; the mapping commits past it.
//!
//! Lambda's Kafka mappings filter on `value` only; a pattern on any other field matches
//! nothing, as there.

use quamina::Quamina;

use crate::batch::SourceRecord;

/// The filters of a mapping; empty means every record is delivered.
pub struct Filter {
    matcher: Option<Quamina<usize>>,
}

impl Filter {
    /// A filter keeping the records that match any of `patterns` (each a JSON pattern such as
    /// `{"value": {"Region": ["East"]}}`). No pattern: everything is kept.
    pub fn new(patterns: &[String]) -> Result<Self, String> {
        if patterns.is_empty() {
            return Ok(Self { matcher: None });
        }
        let mut matcher = Quamina::new();
        for (index, pattern) in patterns.iter().enumerate() {
            matcher
                .add_pattern(index, pattern)
                .map_err(|e| format!("filter pattern {pattern}: {e}"))?;
        }
        Ok(Self {
            matcher: Some(matcher),
        })
    }

    /// Whether `record` reaches the function.
    pub fn keeps(&self, record: &SourceRecord) -> bool {
        let Some(matcher) = &self.matcher else {
            return true;
        };
        let value = match &record.value {
            None => serde_json::Value::Null,
            Some(bytes) => serde_json::from_slice(bytes).unwrap_or_else(|_| {
                serde_json::Value::String(String::from_utf8_lossy(bytes).into_owned())
            }),
        };
        let event = serde_json::json!({ "value": value }).to_string();
        // An event quamina cannot read matches nothing, as a record Lambda cannot parse.
        matcher.has_matches(event.as_bytes()).unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::TimestampType;

    fn record(value: Option<&str>) -> SourceRecord {
        SourceRecord {
            topic: "t".into(),
            partition: 0,
            offset: 0,
            timestamp_ms: 0,
            timestamp_type: TimestampType::CreateTime,
            key: None,
            value: value.map(|v| v.as_bytes().to_vec()),
            headers: vec![],
        }
    }

    #[test]
    fn patterns_match_the_decoded_value() {
        let filter = Filter::new(&[
            r#"{"value": {"Region": ["East"], "Units": [{"numeric": [">", 10]}]}}"#.into(),
        ])
        .unwrap();
        assert!(filter.keeps(&record(Some(r#"{"Region":"East","Units":20}"#))));
        assert!(!filter.keeps(&record(Some(r#"{"Region":"East","Units":5}"#))));
        assert!(!filter.keeps(&record(Some(r#"{"Region":"West","Units":20}"#))));
        assert!(!filter.keeps(&record(None)), "a tombstone has no Region");
    }

    #[test]
    fn several_patterns_keep_what_any_matches_and_plain_text_is_a_string() {
        let filter = Filter::new(&[
            r#"{"value": {"device_ID": [{"prefix": "AB"}]}}"#.into(),
            r#"{"value": [{"prefix": "hello"}]}"#.into(),
        ])
        .unwrap();
        assert!(filter.keeps(&record(Some(r#"{"device_ID":"AB1234"}"#))));
        assert!(filter.keeps(&record(Some("hello, this is a test"))));
        assert!(!filter.keeps(&record(Some(r#"{"device_ID":"XY1"}"#))));
        assert!(
            Filter::new(&[]).unwrap().keeps(&record(None)),
            "no filter keeps all"
        );
    }

    #[test]
    fn a_pattern_on_anything_but_value_matches_nothing_and_a_bad_one_is_refused() {
        let filter = Filter::new(&[r#"{"topic": ["t"]}"#.into()]).unwrap();
        assert!(!filter.keeps(&record(Some("{}"))));
        let error = Filter::new(&[r#"{"value": "East"}"#.into()]).err().unwrap();
        assert!(
            error.starts_with(r#"filter pattern {"value": "East"}: "#),
            "{error}"
        );
    }
}
