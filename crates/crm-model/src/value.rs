//! Typed field values: parsed and validated from user text, mapped to JSON and to Automerge.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, NaiveDate, NaiveDateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value as Json, json};

use crate::error::ValidationError;
use crate::id::RecordId;
use crate::schema::{FieldDef, FieldType, SetOf};

/// Longest accepted single-line text, in characters.
pub const MAX_TEXT_CHARS: usize = 1_000;
/// Longest accepted prose (notes, descriptions and every other long-text field), in
/// characters (Unicode scalar values, so a Chinese character counts once, as a Latin letter
/// does). 131,072 is what Salesforce's long text areas hold: about 40 pages of English or
/// 100 of Chinese. Even at 4 bytes a character the text is 512 KiB, so replacing all of it
/// makes a change far below the relay's limit of one change ([`crate::MAX_CHANGE_BYTES`]),
/// and replacing it costs milliseconds (`doc::replace_text`).
pub const MAX_PROSE_CHARS: usize = 131_072;

/// Checks that a long text fits in a text field.
pub(crate) fn check_prose(field: &str, text: &str) -> Result<(), ValidationError> {
    // Bytes bound characters from above: most texts need no count.
    if text.len() <= MAX_PROSE_CHARS {
        return Ok(());
    }
    let chars = text.chars().count();
    if chars > MAX_PROSE_CHARS {
        return Err(ValidationError::TextTooLong {
            field: field.to_string(),
            chars,
            max: MAX_PROSE_CHARS,
        });
    }
    Ok(())
}

/// A fixed-point decimal with two fraction digits (money, quantities), held as minor units so
/// sums are exact.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Amount(pub i64);

impl Amount {
    pub fn minor_units(self) -> i64 {
        self.0
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        write!(f, "{sign}{}.{:02}", abs / 100, abs % 100)
    }
}

/// Text that is not an amount.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an amount: {0:?}")]
pub struct ParseAmountError(pub String);

impl FromStr for Amount {
    type Err = ParseAmountError;

    /// Accepts `12000`, `12,000.5`, `-3.25`; at most two fraction digits.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseAmountError(s.to_string());
        let t: String = s
            .trim()
            .chars()
            .filter(|c| *c != ',' && *c != '_')
            .collect();
        let (neg, t) = match t.strip_prefix('-') {
            Some(rest) => (true, rest.to_string()),
            None => (false, t.trim_start_matches('+').to_string()),
        };
        let (int, frac) = t.split_once('.').unwrap_or((&t, ""));
        if int.is_empty() && frac.is_empty()
            || !int.chars().all(|c| c.is_ascii_digit())
            || !frac.chars().all(|c| c.is_ascii_digit())
            || frac.len() > 2
        {
            return Err(err());
        }
        let int: i64 = if int.is_empty() {
            0
        } else {
            int.parse().map_err(|_| err())?
        };
        let frac: i64 = format!("{frac:0<2}").parse().map_err(|_| err())?;
        let minor = int
            .checked_mul(100)
            .and_then(|v| v.checked_add(frac))
            .ok_or_else(err)?;
        Ok(Amount(if neg { -minor } else { minor }))
    }
}

impl Serialize for Amount {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Amount {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            S(String),
            I(i64),
            F(f64),
        }
        match Raw::deserialize(d)? {
            Raw::S(s) => s.parse().map_err(serde::de::Error::custom),
            Raw::I(i) => i
                .checked_mul(100)
                .map(Amount)
                .ok_or_else(|| serde::de::Error::custom("amount out of range")),
            Raw::F(f) => format!("{f:.2}").parse().map_err(serde::de::Error::custom),
        }
    }
}

/// One line of a quote or order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LineItem {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product: Option<RecordId>,
    #[serde(default)]
    pub description: String,
    pub qty: Amount,
    pub unit_price: Amount,
    /// Discount in percent, 0–100.
    #[serde(default)]
    pub discount: Amount,
}

impl LineItem {
    /// qty × unit price × (1 − discount), rounded to minor units.
    pub fn total(&self) -> Amount {
        let gross = i128::from(self.qty.0) * i128::from(self.unit_price.0) / 100;
        let net = gross * (10_000 - i128::from(self.discount.0)) / 10_000;
        Amount(i64::try_from(net).unwrap_or(i64::MAX))
    }
}

/// A validated field value.
#[derive(Clone, Debug, PartialEq)]
pub enum FieldValue {
    /// Text, prose, email, phone, domain and enum values.
    Text(String),
    Int(i64),
    Amount(Amount),
    Bool(bool),
    Date(NaiveDate),
    DateTime(DateTime<Utc>),
    Ref(RecordId),
    Set(BTreeSet<String>),
    LineItems(Vec<LineItem>),
    List(Vec<String>),
    Answers(BTreeMap<String, String>),
}

impl FieldValue {
    /// Parses and normalises what a user typed for `field`.
    pub fn parse(field: &FieldDef, input: &str) -> Result<Self, ValidationError> {
        let invalid = |why: String| ValidationError::InvalidValue {
            field: field.name.to_string(),
            value: shorten(input),
            expected: why,
        };
        let v = input.trim();
        Ok(match field.ty {
            FieldType::Text => FieldValue::Text(parse_line(v).map_err(invalid)?),
            FieldType::Prose => {
                check_prose(field.name, input)?;
                FieldValue::Text(input.to_string())
            }
            FieldType::Email => FieldValue::Text(normalize_email(v).map_err(invalid)?),
            FieldType::Phone => FieldValue::Text(normalize_phone(v).map_err(invalid)?),
            FieldType::Domain => FieldValue::Text(normalize_domain(v).map_err(invalid)?),
            FieldType::Enum(values) => {
                FieldValue::Text(parse_enum(values, v).map_err(invalid)?.to_string())
            }
            FieldType::Int { min, max } => {
                let n: i64 = v.parse().map_err(|_| invalid(field.ty.describe()))?;
                if n < min || n > max {
                    return Err(invalid(field.ty.describe()));
                }
                FieldValue::Int(n)
            }
            FieldType::Money => {
                FieldValue::Amount(v.parse().map_err(|_| invalid(field.ty.describe()))?)
            }
            FieldType::Bool => FieldValue::Bool(match v.to_ascii_lowercase().as_str() {
                "true" | "yes" | "y" | "1" | "on" => true,
                "false" | "no" | "n" | "0" | "off" => false,
                _ => return Err(invalid(field.ty.describe())),
            }),
            FieldType::Date => FieldValue::Date(
                NaiveDate::parse_from_str(v, "%Y-%m-%d")
                    .map_err(|_| invalid(field.ty.describe()))?,
            ),
            FieldType::DateTime => {
                FieldValue::DateTime(parse_datetime(v).ok_or_else(|| invalid(field.ty.describe()))?)
            }
            FieldType::Ref(_) => {
                FieldValue::Ref(v.parse().map_err(|_| invalid(field.ty.describe()))?)
            }
            FieldType::Set(elem) => {
                let mut set = BTreeSet::new();
                for item in v
                    .split([',', '，'])
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                {
                    let item = match elem {
                        SetOf::Text => parse_line(item),
                        SetOf::Email => normalize_email(item),
                        SetOf::Phone => normalize_phone(item),
                        SetOf::Enum(values) => parse_enum(values, item).map(str::to_string),
                        SetOf::Ref(_) => item
                            .parse::<RecordId>()
                            .map(|id| id.to_string())
                            .map_err(|e| e.to_string()),
                    }
                    .map_err(|why| ValidationError::InvalidValue {
                        field: field.name.to_string(),
                        value: shorten(item),
                        expected: why,
                    })?;
                    set.insert(item);
                }
                FieldValue::Set(set)
            }
            FieldType::LineItems => FieldValue::LineItems(
                serde_json::from_str(v)
                    .map_err(|e| invalid(format!("{}: {e}", field.ty.describe())))?,
            ),
            FieldType::List => FieldValue::List(
                serde_json::from_str(v)
                    .map_err(|e| invalid(format!("{}: {e}", field.ty.describe())))?,
            ),
            FieldType::Answers => FieldValue::Answers(
                serde_json::from_str(v)
                    .map_err(|e| invalid(format!("{}: {e}", field.ty.describe())))?,
            ),
        })
    }

    /// Checks an already typed value against `field` as [`FieldValue::parse`] checks text,
    /// and returns it normalised the same way (trimmed text, lowercase emails, enum names).
    pub fn validate(field: &FieldDef, value: FieldValue) -> Result<Self, ValidationError> {
        let invalid = |shown: String| ValidationError::InvalidValue {
            field: field.name.to_string(),
            value: shorten(&shown),
            expected: field.ty.describe(),
        };
        match (field.ty, value) {
            (
                FieldType::Text
                | FieldType::Prose
                | FieldType::Email
                | FieldType::Phone
                | FieldType::Domain
                | FieldType::Enum(_),
                FieldValue::Text(s),
            ) => FieldValue::parse(field, &s),
            (FieldType::Int { min, max }, FieldValue::Int(n)) if (min..=max).contains(&n) => {
                Ok(FieldValue::Int(n))
            }
            (FieldType::Set(_), FieldValue::Set(items)) => {
                let mut out = BTreeSet::new();
                for item in items {
                    match FieldValue::parse(field, &item)? {
                        FieldValue::Set(one) if one.len() == 1 => out.extend(one),
                        _ => return Err(invalid(item)),
                    }
                }
                Ok(FieldValue::Set(out))
            }
            (FieldType::Money, v @ FieldValue::Amount(_))
            | (FieldType::Bool, v @ FieldValue::Bool(_))
            | (FieldType::Date, v @ FieldValue::Date(_))
            | (FieldType::DateTime, v @ FieldValue::DateTime(_))
            | (FieldType::Ref(_), v @ FieldValue::Ref(_))
            | (FieldType::LineItems, v @ FieldValue::LineItems(_))
            | (FieldType::List, v @ FieldValue::List(_))
            | (FieldType::Answers, v @ FieldValue::Answers(_)) => Ok(v),
            (_, v) => Err(invalid(v.display())),
        }
    }

    /// The value as it appears in a JSON record.
    pub fn to_json(&self) -> Json {
        match self {
            FieldValue::Text(s) => json!(s),
            FieldValue::Int(n) => json!(n),
            FieldValue::Amount(a) => json!(a.to_string()),
            FieldValue::Bool(b) => json!(b),
            FieldValue::Date(d) => json!(d.format("%Y-%m-%d").to_string()),
            FieldValue::DateTime(t) => json!(format_time(t)),
            FieldValue::Ref(id) => json!(id.to_string()),
            FieldValue::Set(s) => json!(s),
            FieldValue::LineItems(items) => json!(items),
            FieldValue::List(items) => json!(items),
            FieldValue::Answers(map) => json!(map),
        }
    }

    /// The value as one line of text for tables.
    pub fn display(&self) -> String {
        match self {
            FieldValue::Text(s) => s.clone(),
            FieldValue::Set(s) => s.iter().cloned().collect::<Vec<_>>().join(", "),
            FieldValue::List(items) => items.join(" | "),
            FieldValue::Int(_)
            | FieldValue::Amount(_)
            | FieldValue::Bool(_)
            | FieldValue::Date(_)
            | FieldValue::DateTime(_)
            | FieldValue::Ref(_) => match self.to_json() {
                Json::String(s) => s,
                other => other.to_string(),
            },
            FieldValue::LineItems(_) | FieldValue::Answers(_) => self.to_json().to_string(),
        }
    }

    /// The referenced record ids in this value, for reference checks and the refs index.
    pub fn referenced_ids(&self) -> Vec<RecordId> {
        match self {
            FieldValue::Ref(id) => vec![*id],
            FieldValue::Set(items) => items.iter().filter_map(|s| s.parse().ok()).collect(),
            FieldValue::LineItems(items) => items.iter().filter_map(|i| i.product).collect(),
            _ => Vec::new(),
        }
    }
}

/// RFC 3339 in UTC with second precision: the one time format of the product.
pub fn format_time(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn shorten(s: &str) -> String {
    if s.chars().count() > 60 {
        format!("{}…", s.chars().take(60).collect::<String>())
    } else {
        s.to_string()
    }
}

pub(crate) fn parse_line(v: &str) -> Result<String, String> {
    if v.chars().any(char::is_control) {
        return Err("a single line of text without control characters".into());
    }
    if v.chars().count() > MAX_TEXT_CHARS {
        return Err(format!("at most {MAX_TEXT_CHARS} characters"));
    }
    Ok(v.to_string())
}

fn parse_enum<'a>(values: &'a [&'a str], v: &str) -> Result<&'a str, String> {
    // Both sides normalised: "Closed-Won" finds closed_won, and "11-50" still finds the
    // account size 11-50, whose canonical name has a hyphen.
    let normalize = |s: &str| s.trim().to_ascii_lowercase().replace(['-', ' '], "_");
    let wanted = normalize(v);
    values
        .iter()
        .copied()
        .find(|x| normalize(x) == wanted)
        .ok_or_else(|| format!("one of {}", values.join(", ")))
}

/// Lowercases and checks the shape `local@domain.tld`.
pub fn normalize_email(v: &str) -> Result<String, String> {
    let expected = || "an email address like name@example.com".to_string();
    let v = v.trim().to_lowercase();
    let (local, domain) = v.split_once('@').ok_or_else(expected)?;
    let bad_char = |c: char| c.is_whitespace() || c.is_control() || "<>()[]\\,;:\"@".contains(c);
    if local.is_empty()
        || local.len() > 64
        || local.chars().any(bad_char)
        || local.starts_with('.')
        || local.ends_with('.')
        || local.contains("..")
        || domain.chars().any(bad_char)
        || !domain.contains('.')
        || domain
            .split('.')
            .any(|label| label.is_empty() || label.starts_with('-'))
        || v.len() > 254
    {
        return Err(expected());
    }
    Ok(v)
}

/// Keeps the number as typed (trimmed) but requires a plausible phone number.
pub fn normalize_phone(v: &str) -> Result<String, String> {
    let digits = v.chars().filter(char::is_ascii_digit).count();
    let allowed = |c: char| c.is_ascii_digit() || " +-().#/xX".contains(c) || c == 'e' || c == 't';
    if !(5..=20).contains(&digits) || !v.chars().all(allowed) {
        return Err("a phone number like +86 755 1234 5678".into());
    }
    Ok(v.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// The digits of a phone number: its dedup key.
pub fn phone_key(v: &str) -> String {
    v.chars().filter(char::is_ascii_digit).collect()
}

/// Reduces a website to its lowercase host without `www.`.
pub fn normalize_domain(v: &str) -> Result<String, String> {
    let expected = || "a website or domain like example.com".to_string();
    let lower = v.trim().to_lowercase();
    let rest = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"))
        .unwrap_or(&lower);
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = host.split(':').next().unwrap_or_default();
    let host = host.strip_prefix("www.").unwrap_or(host);
    if host.is_empty()
        || !host.contains('.')
        || host
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "@<>\"\\".contains(c))
        || host.split('.').any(str::is_empty)
    {
        return Err(expected());
    }
    Ok(host.to_string())
}

fn parse_datetime(v: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(v) {
        return Some(t.with_timezone(&Utc));
    }
    for format in [
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(v, format) {
            return Some(t.and_utc());
        }
    }
    NaiveDate::parse_from_str(v, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kind::Kind;

    fn field(kind: Kind, name: &str) -> &'static FieldDef {
        kind.schema().field(name).expect("field exists")
    }

    #[test]
    fn amounts_parse_exactly() {
        assert_eq!("12000".parse(), Ok(Amount(1_200_000)));
        assert_eq!("12,000.5".parse(), Ok(Amount(1_200_050)));
        assert_eq!("-3.25".parse(), Ok(Amount(-325)));
        assert_eq!(".5".parse(), Ok(Amount(50)));
        assert!("1.234".parse::<Amount>().is_err());
        assert!("12a".parse::<Amount>().is_err());
        assert!("".parse::<Amount>().is_err());
        assert!("99999999999999999999".parse::<Amount>().is_err());
        assert_eq!(Amount(-325).to_string(), "-3.25");
        assert_eq!(Amount(5).to_string(), "0.05");
    }

    #[test]
    fn emails_are_validated_and_lowercased() {
        assert_eq!(
            normalize_email(" Li.Lei@Example.COM "),
            Ok("li.lei@example.com".into())
        );
        assert_eq!(
            normalize_email("张三@例子.中国"),
            Ok("张三@例子.中国".into())
        );
        for bad in [
            "",
            "plain",
            "a@b",
            "a@@b.com",
            "a b@c.com",
            "@c.com",
            "a@.com",
            "a..b@c.com",
        ] {
            assert!(normalize_email(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn domains_normalise_to_host() {
        assert_eq!(
            normalize_domain("https://www.ACME.com/about?x=1"),
            Ok("acme.com".into())
        );
        assert_eq!(normalize_domain("星光.cn"), Ok("星光.cn".into()));
        assert!(normalize_domain("localhost").is_err());
    }

    #[test]
    fn phones_need_digits() {
        assert_eq!(
            normalize_phone("+86  755 1234 5678"),
            Ok("+86 755 1234 5678".into())
        );
        assert!(normalize_phone("call me").is_err());
        assert_eq!(
            phone_key("+86 (755) 1234-5678"),
            "867551234 5678".replace(' ', "")
        );
    }

    #[test]
    fn enums_accept_only_known_values() {
        let stage = field(Kind::Opportunity, "stage");
        assert_eq!(
            FieldValue::parse(stage, "Closed-Won"),
            Ok(FieldValue::Text("closed_won".into()))
        );
        let err = FieldValue::parse(stage, "won")
            .expect_err("must fail")
            .to_string();
        assert!(
            err.contains("stage") && err.contains("prospecting"),
            "{err}"
        );
    }

    #[test]
    fn ranges_are_enforced() {
        let p = field(Kind::Opportunity, "probability");
        assert_eq!(FieldValue::parse(p, "80"), Ok(FieldValue::Int(80)));
        assert!(FieldValue::parse(p, "101").is_err());
        assert!(FieldValue::parse(p, "-1").is_err());
        assert!(FieldValue::parse(p, "eighty").is_err());
    }

    #[test]
    fn sets_split_on_commas_including_chinese() {
        let emails = field(Kind::Account, "emails");
        assert_eq!(
            FieldValue::parse(emails, "B@x.com, a@x.com，c@x.com"),
            Ok(FieldValue::Set(
                ["a@x.com", "b@x.com", "c@x.com"].map(String::from).into()
            ))
        );
        assert!(FieldValue::parse(emails, "a@x.com, nope").is_err());
    }

    #[test]
    fn dates_and_times() {
        let d = field(Kind::Opportunity, "close_date");
        assert!(FieldValue::parse(d, "2026-02-30").is_err());
        let t = field(Kind::Activity, "due");
        let v = FieldValue::parse(t, "2026-05-01T17:30:00+08:00").expect("valid time");
        assert_eq!(v.to_json(), json!("2026-05-01T09:30:00Z"));
        assert!(FieldValue::parse(t, "tomorrow").is_err());
    }

    #[test]
    fn text_is_single_line() {
        let name = field(Kind::Account, "name");
        assert!(FieldValue::parse(name, "a\nb").is_err());
        assert_eq!(
            FieldValue::parse(name, " 深圳星光贸易有限公司 "),
            Ok(FieldValue::Text("深圳星光贸易有限公司".into()))
        );
    }

    #[test]
    fn line_items_total() {
        let items = field(Kind::Quote, "line_items");
        let FieldValue::LineItems(v) = FieldValue::parse(
            items,
            r#"[{"description":"seat","qty":"3","unit_price":"100.00","discount":"10"}]"#,
        )
        .expect("valid items") else {
            panic!("not line items")
        };
        assert_eq!(v[0].total(), Amount(27_000));
        assert!(FieldValue::parse(items, r#"[{"qty":1}]"#).is_err());
    }
}
