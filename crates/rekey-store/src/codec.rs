//! Conversions between the domain's values and the portable column types: timestamps as BIGINT
//! microseconds since the Unix epoch, counters as BIGINT, enums as their lower-case names.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use rekey_core::ports::store::StoreError;

use crate::error::corrupt;

pub(crate) fn micros(at: DateTime<Utc>) -> i64 {
    at.timestamp_micros()
}

/// `at` as the store keeps it (microsecond precision), so what a change returns equals what a
/// later read gives back.
pub(crate) fn truncate(at: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(micros(at)).unwrap_or(at)
}

pub(crate) fn time(column: &str, value: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_micros(value)
        .ok_or_else(|| corrupt(format!("{column}: timestamp {value} out of range")))
}

pub(crate) fn opt_time(
    column: &str,
    value: Option<i64>,
) -> Result<Option<DateTime<Utc>>, StoreError> {
    value.map(|v| time(column, v)).transpose()
}

pub(crate) fn to_i64(what: &str, value: u64) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| corrupt(format!("{what}: {value} does not fit a BIGINT")))
}

pub(crate) fn to_u64(column: &str, value: i64) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| corrupt(format!("{column}: negative value {value}")))
}

pub(crate) fn to_u32(column: &str, value: i64) -> Result<u32, StoreError> {
    u32::try_from(value).map_err(|_| corrupt(format!("{column}: {value} out of range")))
}

pub(crate) fn parse<T: FromStr<Err = String>>(column: &str, value: &str) -> Result<T, StoreError> {
    value
        .parse()
        .map_err(|e: String| corrupt(format!("{column}: {e}")))
}

pub(crate) fn json_text<T: serde::Serialize>(what: &str, value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| corrupt(format!("{what}: cannot serialize: {e}")))
}

pub(crate) fn from_json<T: serde::de::DeserializeOwned>(
    column: &str,
    value: &str,
) -> Result<T, StoreError> {
    serde_json::from_str(value).map_err(|e| corrupt(format!("{column}: {e}")))
}
