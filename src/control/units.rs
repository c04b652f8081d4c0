//! The configuration's value forms: a duration is whole milliseconds or a string with a unit
//! (`"250ms"`, `"25s"`, `"5m"`, `"1h"`); a size is whole bytes or a string with a binary unit
//! (`"64KiB"`, `"1MiB"`); a string list is an array or one comma-separated string (the form
//! environment variables give). Serde helpers for `#[serde(deserialize_with = …)]`.

use std::time::Duration;

use serde::de::{self, Deserializer};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(untagged)]
enum NumberOrText {
    Number(u64),
    Text(String),
}

/// `text` as its leading whole number and the unit after it, or `what` as the error.
fn number_and_unit<'a>(text: &'a str, what: &str) -> Result<(u64, &'a str), String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number = number
        .parse()
        .map_err(|_| format!("`{text}` is not {what}"))?;
    Ok((number, unit.trim()))
}

/// Parses `"250ms"`, `"25s"`, `"5m"`, `"1h"` or a bare number of milliseconds.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = number_and_unit(text, "a duration (like 250ms, 25s, 5m, 1h)")?;
    let millis = match unit {
        "" | "ms" => Some(number),
        "s" => number.checked_mul(1000),
        "m" => number.checked_mul(60_000),
        "h" => number.checked_mul(3_600_000),
        _ => return Err(format!("`{text}` has an unknown unit (ms, s, m or h)")),
    };
    millis
        .map(Duration::from_millis)
        .ok_or_else(|| format!("`{text}` is too long"))
}

/// Parses `"64KiB"`, `"1MiB"`, `"1GiB"`, `"512B"` or a bare number of bytes.
pub(crate) fn parse_size(text: &str) -> Result<u64, String> {
    let (number, unit) = number_and_unit(text, "a size (like 512, 64KiB, 1MiB)")?;
    let scale: u64 = match unit {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        _ => return Err(format!("`{text}` has an unknown unit (B, KiB, MiB or GiB)")),
    };
    number
        .checked_mul(scale)
        .ok_or_else(|| format!("`{text}` is too large"))
}

/// A duration field.
pub(crate) fn duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    match NumberOrText::deserialize(deserializer)? {
        NumberOrText::Number(millis) => Ok(Duration::from_millis(millis)),
        NumberOrText::Text(text) => parse_duration(&text).map_err(de::Error::custom),
    }
}

/// An optional duration field.
pub(crate) fn duration_opt<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Duration>, D::Error> {
    duration(deserializer).map(Some)
}

/// A size field, in bytes.
pub(crate) fn size<'de, D: Deserializer<'de>>(deserializer: D) -> Result<usize, D::Error> {
    let bytes = match NumberOrText::deserialize(deserializer)? {
        NumberOrText::Number(bytes) => bytes,
        NumberOrText::Text(text) => parse_size(&text).map_err(de::Error::custom)?,
    };
    usize::try_from(bytes).map_err(|_| de::Error::custom("size too large"))
}

/// An optional size field, in bytes.
pub(crate) fn size_opt<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<usize>, D::Error> {
    size(deserializer).map(Some)
}

/// A duration as the configuration writes it: the largest unit that divides it (`"25s"`).
pub(crate) fn format_duration(duration: Duration) -> String {
    let millis = duration.as_millis();
    match millis {
        0 => "0ms".to_owned(),
        m if m % 3_600_000 == 0 => format!("{}h", m / 3_600_000),
        m if m % 60_000 == 0 => format!("{}m", m / 60_000),
        m if m % 1000 == 0 => format!("{}s", m / 1000),
        m => format!("{m}ms"),
    }
}

/// Serializes an optional duration as [`format_duration`] writes it.
pub(crate) fn serialize_duration<S: serde::Serializer>(
    duration: &Option<Duration>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match duration {
        Some(duration) => serializer.serialize_str(&format_duration(*duration)),
        None => serializer.serialize_none(),
    }
}

/// Serializes a duration as [`format_duration`] writes it.
pub(crate) fn serialize_duration_value<S: serde::Serializer>(
    duration: &Duration,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&format_duration(*duration))
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ScalarText {
    Text(String),
    Integer(i64),
    Bool(bool),
}

/// An optional string field that also takes a number or a boolean as its text (an
/// environment variable's `1234` for a name, say).
pub(crate) fn text_opt<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    Ok(Some(match ScalarText::deserialize(deserializer)? {
        ScalarText::Text(text) => text,
        ScalarText::Integer(number) => number.to_string(),
        ScalarText::Bool(flag) => flag.to_string(),
    }))
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ListOrText {
    List(Vec<String>),
    Text(String),
}

/// An optional list of strings: an array, or one comma-separated string (empty items
/// dropped).
pub(crate) fn string_list_opt<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Vec<String>>, D::Error> {
    string_list(deserializer).map(Some)
}

/// A list of strings: an array, or one comma-separated string (empty items dropped).
pub(crate) fn string_list<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<String>, D::Error> {
    Ok(match ListOrText::deserialize(deserializer)? {
        ListOrText::List(list) => list,
        ListOrText::Text(text) => text
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(str::to_owned)
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_a_unit_or_milliseconds() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("25s"), Ok(Duration::from_secs(25)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1500"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("5 weeks").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("99999999999999999999h").is_err());
    }

    #[test]
    fn durations_print_in_their_largest_unit() {
        assert_eq!(format_duration(Duration::from_secs(25)), "25s");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(format_duration(Duration::from_secs(3600)), "1h");
        assert_eq!(format_duration(Duration::from_secs(300)), "5m");
    }

    #[test]
    fn sizes_take_a_binary_unit_or_bytes() {
        assert_eq!(parse_size("64KiB"), Ok(65_536));
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_size("512"), Ok(512));
        assert!(parse_size("1MB").is_err());
    }
}
