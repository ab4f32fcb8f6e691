//! The order domain type: an `Order` exists only when every field of a record value parsed.
//! Money stays an exact decimal from the JSON text to the database column.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, NaiveDate};
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::value::RawValue;

/// An order whose every field parsed: money as exact decimals, the date as a date.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    /// The four text fields one after the other (order number, region, customer, item), so
    /// that an order costs one allocation instead of four.
    text: Box<str>,
    /// Where the first three text fields end in `text`; the item runs to its end.
    ends: [u32; 3],
    order_date: NaiveDate,
    units: i32,
    unit_cost: Decimal,
    total: Decimal,
}

/// Why a record value is not an order; becomes the dead letter's `reason`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidOrder(String);

impl fmt::Display for InvalidOrder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InvalidOrder {}

/// The record value as the producers write it (field names of the original topic).
/// Numbers are taken as raw JSON text so that `1.99` never passes through a float.
#[derive(Deserialize)]
struct WireOrder<'a> {
    #[serde(rename = "OrderNo", borrow)]
    order_no: Cow<'a, str>,
    #[serde(rename = "OrderDate", borrow)]
    order_date: Cow<'a, str>,
    #[serde(rename = "Region", borrow)]
    region: Cow<'a, str>,
    #[serde(rename = "Customer", borrow)]
    customer: Cow<'a, str>,
    #[serde(rename = "Item", borrow)]
    item: Cow<'a, str>,
    #[serde(rename = "Units")]
    units: i32,
    #[serde(rename = "Unit Cost", borrow)]
    unit_cost: &'a RawValue,
    #[serde(rename = "Total", borrow)]
    total: &'a RawValue,
}

impl Order {
    /// Parses a record value (JSON bytes).
    pub fn parse(value: &[u8]) -> Result<Self, InvalidOrder> {
        // One UTF-8 check of the whole value, then a parse that checks no string again.
        // SIMD check first; the standard library's only to say where a bad value goes wrong.
        let value = simdutf8::basic::from_utf8(value)
            .or_else(|_| std::str::from_utf8(value))
            .map_err(|error| {
                InvalidOrder(format!(
                    "value is not a valid order: it is not UTF-8 ({error})"
                ))
            })?;
        let wire: WireOrder<'_> = serde_json::from_str(value).map_err(|error| {
            InvalidOrder(format!(
                "value is not a valid order: {}",
                without_values(&error.to_string())
            ))
        })?;
        let fields = [
            text("OrderNo", &wire.order_no)?,
            text("Region", &wire.region)?,
            text("Customer", &wire.customer)?,
            text("Item", &wire.item)?,
        ];
        let mut joined = String::with_capacity(fields.iter().map(|f| f.len()).sum());
        let mut ends = [0u32; 3];
        for (index, field) in fields.iter().enumerate() {
            joined.push_str(field);
            if let Some(end) = ends.get_mut(index) {
                // A record value is at most a few MB (Lambda's 6 MB payload cap).
                *end = u32::try_from(joined.len())
                    .map_err(|_| InvalidOrder("the order's text fields exceed 4 GB".to_owned()))?;
            }
        }
        Ok(Self {
            text: joined.into_boxed_str(),
            ends,
            order_date: parse_date(&wire.order_date)?,
            units: wire.units,
            unit_cost: parse_decimal("Unit Cost", wire.unit_cost)?,
            total: parse_decimal("Total", wire.total)?,
        })
    }

    /// Text field `index` (0 order number, 1 region, 2 customer, 3 item).
    fn text_field(&self, index: usize) -> &str {
        let at = |i: usize| {
            self.ends
                .get(i)
                .map_or(self.text.len(), |&end| end as usize)
        };
        let start = if index == 0 { 0 } else { at(index - 1) };
        self.text.get(start..at(index)).unwrap_or_default()
    }

    /// The order number, the row's key.
    pub fn order_no(&self) -> &str {
        self.text_field(0)
    }
    /// The order date.
    pub fn order_date(&self) -> NaiveDate {
        self.order_date
    }
    /// The sales region.
    pub fn region(&self) -> &str {
        self.text_field(1)
    }
    /// The customer's name, the lookup key.
    pub fn customer(&self) -> &str {
        self.text_field(2)
    }
    /// The item ordered.
    pub fn item(&self) -> &str {
        self.text_field(3)
    }
    /// Units ordered.
    pub fn units(&self) -> i32 {
        self.units
    }
    /// Price per unit.
    pub fn unit_cost(&self) -> Decimal {
        self.unit_cost
    }
    /// The order total.
    pub fn total(&self) -> Decimal {
        self.total
    }

    /// The order as a record value again, with the producers' field names and the decimals
    /// exactly as parsed: what a dead letter keeps when the database refuses an order.
    pub fn to_json(&self) -> String {
        let text = |value: &str| serde_json::Value::from(value).to_string();
        format!(
            r#"{{"OrderNo":{},"OrderDate":"{}","Region":{},"Customer":{},"Item":{},"Units":{},"Unit Cost":{},"Total":{}}}"#,
            text(self.order_no()),
            self.order_date,
            text(self.region()),
            text(self.customer()),
            text(self.item()),
            self.units,
            self.unit_cost,
            self.total,
        )
    }
}

/// Non-empty text that PostgreSQL can store: a NUL character would make the whole write
/// transaction fail on every retry, so it is rejected here, per record.
// Takes the `Cow` itself, not `&str`: whether it is borrowed is what the NUL check needs.
#[allow(clippy::ptr_arg)]
fn text<'a>(field: &str, value: &'a Cow<'_, str>) -> Result<&'a str, InvalidOrder> {
    let unescaped = matches!(value, Cow::Borrowed(_));
    let value: &str = value;
    // Stops at the first character that is not white space (`trim` would scan both ends).
    if value.chars().all(char::is_whitespace) {
        return Err(InvalidOrder(format!("field `{field}` is empty")));
    }
    // JSON cannot carry a raw NUL in a string, only the escape `\u0000`, and a string with
    // escapes is the only kind the parser hands over owned: borrowed text needs no scan.
    if !unescaped && value.contains('\0') {
        return Err(InvalidOrder(format!(
            "field `{field}` contains a NUL character"
        )));
    }
    Ok(value)
}

/// `m/d/yy` or `m/d/yyyy` (as in the original topic; two-digit years 00-69 are 20xx, 70-99
/// 19xx), `yyyy-mm-dd`, or an RFC 3339 timestamp, whose calendar date as written is kept.
/// The two common forms are parsed by hand: a format-string parser costs more than the rest of
/// the order's decoding.
fn parse_date(value: &str) -> Result<NaiveDate, InvalidOrder> {
    let parsed = if value.contains('/') {
        slash_date(value)
    } else if value.len() == 10 {
        iso_date(value)
    } else {
        DateTime::parse_from_rfc3339(value)
            .ok()
            .map(|t| t.date_naive())
    };
    parsed.ok_or_else(|| {
        InvalidOrder(format!(
            "field `OrderDate`: {} is not a date (expected m/d/yy or ISO-8601)",
            a_string_of(value)
        ))
    })
}

fn digits(text: &str, min: usize, max: usize) -> Option<u32> {
    if text.len() < min || text.len() > max {
        return None;
    }
    ascii_number(text.as_bytes())
}

/// The value of a run of ASCII digits (at most 9, so it fits), without `str::parse`'s sign
/// and overflow handling: dates are parsed for every order.
fn ascii_number(digits: &[u8]) -> Option<u32> {
    if digits.is_empty() || digits.len() > 9 {
        return None;
    }
    digits.iter().try_fold(0u32, |number, &byte| {
        byte.is_ascii_digit()
            .then(|| number * 10 + u32::from(byte - b'0'))
    })
}

fn slash_date(value: &str) -> Option<NaiveDate> {
    let mut parts = value.split('/');
    let (month, day, year) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let year = match year.len() {
        2 => match digits(year, 2, 2)? {
            short @ 0..=69 => 2000 + short,
            short => 1900 + short,
        },
        4 => digits(year, 4, 4)?,
        _ => return None,
    };
    NaiveDate::from_ymd_opt(
        i32::try_from(year).ok()?,
        digits(month, 1, 2)?,
        digits(day, 1, 2)?,
    )
}

/// `yyyy-mm-dd`, exactly ten bytes (the caller checked the length).
fn iso_date(value: &str) -> Option<NaiveDate> {
    let bytes = value.as_bytes();
    if bytes.get(4) != Some(&b'-') || bytes.get(7) != Some(&b'-') {
        return None;
    }
    NaiveDate::from_ymd_opt(
        i32::try_from(ascii_number(bytes.get(0..4)?)?).ok()?,
        ascii_number(bytes.get(5..7)?)?,
        ascii_number(bytes.get(8..10)?)?,
    )
}

/// A JSON number, or a string holding one, as an exact decimal.
fn parse_decimal(field: &str, raw: &RawValue) -> Result<Decimal, InvalidOrder> {
    let text = raw.get();
    let number = text
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(text);
    if let Some(decimal) = plain_decimal(number) {
        return Ok(decimal);
    }
    let parsed = if number.contains(['e', 'E']) {
        Decimal::from_scientific(number)
    } else {
        Decimal::from_str(number)
    };
    parsed.map_err(|_| {
        let what = match text {
            "null" | "true" | "false" => text.to_owned(),
            _ if text.starts_with('"') => a_string_of(number),
            _ => format!("a JSON value of {} characters", text.chars().count()),
        };
        InvalidOrder(format!("field `{field}`: {what} is not a decimal number"))
    })
}

/// The common spelling of money, `digits[.digits]` with at most 18 digits and no sign, read
/// without the general parser (two per order, and it costs more than the rest of the number's
/// handling). Gives the same value and scale as `Decimal::from_str`; `None` sends anything else
/// (a sign, an exponent, more digits, a stray character) to it.
fn plain_decimal(number: &str) -> Option<Decimal> {
    let bytes = number.as_bytes();
    if bytes.is_empty() || bytes.len() > 19 {
        return None;
    }
    // At most 19 digits: they fit a u64, and 18 of them an i64.
    let mut mantissa: u64 = 0;
    let mut digits: u32 = 0;
    let mut whole_digits: Option<u32> = None;
    for &byte in bytes {
        match byte {
            b'0'..=b'9' => {
                mantissa = mantissa * 10 + u64::from(byte - b'0');
                digits += 1;
            }
            b'.' if whole_digits.is_none() && digits > 0 => whole_digits = Some(digits),
            _ => return None,
        }
    }
    let scale = match whole_digits {
        Some(whole) if whole == digits => return None,
        Some(whole) => digits - whole,
        None => 0,
    };
    if digits > 18 {
        return None;
    }
    Some(Decimal::new(i64::try_from(mantissa).ok()?, scale))
}

/// How a reason names a string of the record: by its length, never its text. A reason is
/// logged and stored beside the raw value, and must not carry the payload (a 1 MB field would
/// be a 1 MB log line, and a value may be personal data).
fn a_string_of(value: &str) -> String {
    format!("a string of {} characters", value.chars().count())
}

/// `message` (serde_json's) with each string of the record it quotes (`"..."`) named by its
/// length instead, and each backquoted value (`` `2.5` ``) longer than a field name could be
/// too: the message keeps what is wrong and where, not the payload.
fn without_values(message: &str) -> String {
    const LONGEST_NAME: usize = 32;
    let mut out = String::with_capacity(message.len().min(256));
    let mut chars = message.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                let mut length = 0;
                let mut escaped = false;
                for inner in chars.by_ref() {
                    if escaped {
                        escaped = false;
                    } else if inner == '\\' {
                        escaped = true;
                        continue;
                    } else if inner == '"' {
                        break;
                    }
                    length += 1;
                }
                out.push_str(&format!("({length} characters)"));
            }
            '`' => {
                let quoted: String = chars.by_ref().take_while(|&inner| inner != '`').collect();
                let length = quoted.chars().count();
                if length > LONGEST_NAME {
                    out.push_str(&format!("({length} characters)"));
                } else {
                    out.push('`');
                    out.push_str(&quoted);
                    out.push('`');
                }
            }
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SO_001: &str = r#"{"OrderNo":"SO-001","OrderDate":"1/6/19","Region":"East","Customer":"Jones","Item":"Pencil","Units":95,"Unit Cost":1.99,"Total":189.05}"#;

    /// SO-001 with one field's raw JSON replaced or added (text, so numbers stay exact).
    fn with(field: &str, json_value: &str) -> String {
        let mut fields = vec![
            ("OrderNo", "\"SO-001\""),
            ("OrderDate", "\"1/6/19\""),
            ("Region", "\"East\""),
            ("Customer", "\"Jones\""),
            ("Item", "\"Pencil\""),
            ("Units", "95"),
            ("Unit Cost", "1.99"),
            ("Total", "189.05"),
        ];
        match fields.iter_mut().find(|(name, _)| *name == field) {
            Some(entry) => entry.1 = json_value,
            None => fields.push((field, json_value)),
        }
        let body: Vec<String> = fields
            .iter()
            .map(|(name, value)| format!("\"{name}\":{value}"))
            .collect();
        format!("{{{}}}", body.join(","))
    }

    fn reason(value: &str) -> String {
        Order::parse(value.as_bytes()).unwrap_err().to_string()
    }

    #[test]
    fn sample_order_parses_with_exact_money() {
        let order = Order::parse(SO_001.as_bytes()).unwrap();
        assert_eq!(order.order_no(), "SO-001");
        assert_eq!(
            order.order_date(),
            NaiveDate::from_ymd_opt(2019, 1, 6).unwrap()
        );
        assert_eq!(order.region(), "East");
        assert_eq!(order.customer(), "Jones");
        assert_eq!(order.item(), "Pencil");
        assert_eq!(order.units(), 95);
        assert_eq!(order.unit_cost().to_string(), "1.99");
        assert_eq!(order.total().to_string(), "189.05");
        assert_eq!(
            order.unit_cost() * Decimal::from(order.units()),
            order.total()
        );
    }

    #[test]
    fn money_keeps_digits_a_float_would_lose() {
        let order = Order::parse(with("Total", "12345678901234567.89").as_bytes()).unwrap();
        assert_eq!(order.total().to_string(), "12345678901234567.89");
        let order = Order::parse(with("Unit Cost", "\"0.10\"").as_bytes()).unwrap();
        assert_eq!(order.unit_cost().to_string(), "0.10");
        let order = Order::parse(with("Unit Cost", "1.5e2").as_bytes()).unwrap();
        assert_eq!(order.unit_cost(), Decimal::from(150));
    }

    #[test]
    fn dates_in_both_formats() {
        let cases = [
            ("\"12/31/99\"", (1999, 12, 31)),
            ("\"2/9/19\"", (2019, 2, 9)),
            ("\"02/09/2019\"", (2019, 2, 9)),
            ("\"2019-02-09\"", (2019, 2, 9)),
            ("\"1/1/00\"", (2000, 1, 1)),
            ("\"1/1/69\"", (2069, 1, 1)),
            ("\"1/1/70\"", (1970, 1, 1)),
            ("\"2019-02-09T23:30:00-05:00\"", (2019, 2, 9)),
        ];
        for (value, (year, month, day)) in cases {
            let order = Order::parse(with("OrderDate", value).as_bytes()).unwrap();
            assert_eq!(
                order.order_date(),
                NaiveDate::from_ymd_opt(year, month, day).unwrap(),
                "{value}"
            );
        }
    }

    #[test]
    fn malformed_dates_are_rejected() {
        for bad in [
            "1/6",
            "1/6/19/1",
            "13/1/19",
            "2/30/19",
            "1/6/019",
            "a/6/19",
            "+1/6/19",
            "2019-2-09",
            "2019/02/09x",
            "2019-02-09 ",
            "",
        ] {
            let error =
                Order::parse(with("OrderDate", &format!("{bad:?}")).as_bytes()).unwrap_err();
            assert!(
                error.to_string().starts_with("field `OrderDate`"),
                "{bad}: {error}"
            );
        }
    }

    #[test]
    fn invalid_values_give_readable_reasons() {
        assert_eq!(
            reason(&with("OrderDate", "\"2/30/19\"")),
            "field `OrderDate`: a string of 7 characters is not a date (expected m/d/yy or ISO-8601)"
        );
        assert_eq!(
            reason(&with("Total", "\"abc\"")),
            "field `Total`: a string of 3 characters is not a decimal number"
        );
        assert_eq!(
            reason(&with("Total", "null")),
            "field `Total`: null is not a decimal number"
        );
        assert_eq!(
            reason(&with("Customer", "\"  \"")),
            "field `Customer` is empty"
        );
        assert_eq!(
            reason(&with("Item", "\"a\\u0000b\"")),
            "field `Item` contains a NUL character"
        );
        assert!(reason(&with("Units", "2.5")).starts_with(
            "value is not a valid order: invalid type: floating point `2.5`, expected i32"
        ));
        assert!(reason(r#"{"OrderNo":"SO-1"}"#)
            .starts_with("value is not a valid order: missing field `OrderDate`"));
        assert!(reason("{not json").starts_with("value is not a valid order: key must be a string"));
    }

    #[test]
    fn reasons_name_a_value_by_its_length_never_its_text() {
        assert_eq!(
            reason(&with("Units", "\"Jane Doe, 12 \\\"Main\\\" St\"")),
            format!(
                "value is not a valid order: invalid type: string (22 characters), expected i32 at line 1 column {}",
                with("Units", "\"Jane Doe, 12 \\\"Main\\\" St\"").find("\"Unit Cost\"").unwrap() - 1
            )
        );
        let huge = "x".repeat(1_000_000);
        let long_date = reason(&with("OrderDate", &format!("\"{huge}\"")));
        assert_eq!(
            long_date,
            "field `OrderDate`: a string of 1000000 characters is not a date (expected m/d/yy or ISO-8601)"
        );
        let long_number = reason(&with("Total", &format!("\"1{}\"", "9".repeat(100))));
        assert_eq!(
            long_number,
            "field `Total`: a string of 101 characters is not a decimal number"
        );
        // A number is quoted as the f64 it parses to: bounded, whatever the record held.
        let long_float = reason(&with("Units", &format!("1.{}", "5".repeat(40))));
        assert_eq!(
            long_float,
            "value is not a valid order: invalid type: floating point `1.5555555555555556`, expected i32 at line 1 column 142"
        );
    }

    #[test]
    fn plain_decimals_read_by_hand_equal_the_general_parser_in_value_and_scale() {
        let cases = [
            "0",
            "7",
            "19.99",
            "1.990",
            "0.10",
            "007.50",
            "100",
            "123456789012345678",
            "12345678.9012345678",
            "0.00000000000000001",
            "999999999999999999",
        ];
        for case in cases {
            let fast = plain_decimal(case).unwrap_or_else(|| panic!("{case} is plain"));
            let general = Decimal::from_str(case).unwrap();
            assert_eq!(fast, general, "{case}");
            assert_eq!(fast.scale(), general.scale(), "{case}");
            assert_eq!(fast.to_string(), general.to_string(), "{case}");
        }
        for cents in (0..200_000i64).step_by(7) {
            let text = format!("{}.{:02}", cents / 100, cents % 100);
            assert_eq!(
                plain_decimal(&text),
                Decimal::from_str(&text).ok(),
                "{text}"
            );
        }
    }

    #[test]
    fn other_spellings_go_to_the_general_parser() {
        for case in [
            "-1.5",
            "+1.5",
            "1.",
            ".5",
            "1e3",
            "1_000",
            "1.2.3",
            "",
            "1234567890123456789",
            "12345678901234567.89",
            " 1",
            "1 ",
            "0x10",
        ] {
            assert_eq!(plain_decimal(case), None, "{case}");
        }
        let order = Order::parse(with("Total", "-0.50").as_bytes()).unwrap();
        assert_eq!(order.total().to_string(), "-0.50");
    }

    #[test]
    fn unknown_fields_are_ignored() {
        let order = Order::parse(with("Discount", "0.5").as_bytes()).unwrap();
        assert_eq!(order.order_no(), "SO-001");
    }

    #[test]
    fn an_order_turns_back_into_a_value_that_parses_to_the_same_order() {
        let order = Order::parse(
            br#"{"OrderNo":"SO-\"1","OrderDate":"1/6/19","Region":"East","Customer":"Jones","Item":"Pencil","Units":95,"Unit Cost":"1.990","Total":189.05}"#,
        )
        .unwrap();
        assert_eq!(
            order.to_json(),
            r#"{"OrderNo":"SO-\"1","OrderDate":"2019-01-06","Region":"East","Customer":"Jones","Item":"Pencil","Units":95,"Unit Cost":1.990,"Total":189.05}"#
        );
        assert_eq!(Order::parse(order.to_json().as_bytes()).unwrap(), order);
    }
}
