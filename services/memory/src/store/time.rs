//! Times of validity and expiry: milliseconds since the Unix epoch, RFC 3339 on the wire.
//!
//! A record holds from `valid_from` (inclusive) until `valid_until` (exclusive), and exists
//! until `expires_at`. In the stores every record carries all three, an unbounded end as
//! [`MIN`] or [`MAX`], so "valid as of t and not expired by now" is three range conditions.

use serde::{Deserialize, Serialize};

use crate::error::{MemoryError, Result};

/// Milliseconds since 1970-01-01T00:00:00Z.
pub type Millis = i64;

/// 0001-01-01T00:00:00Z, the earliest time accepted (an unbounded start).
pub const MIN: Millis = -62_135_596_800_000;
/// 9999-12-31T23:59:59.999Z, the latest time accepted (an unbounded end).
pub const MAX: Millis = 253_402_300_799_999;

/// When a record holds and when it expires; `None` is unbounded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Validity {
    /// Holds from this time on.
    pub valid_from: Option<Millis>,
    /// Holds until just before this time.
    pub valid_until: Option<Millis>,
    /// Deleted from this time on.
    pub expires_at: Option<Millis>,
}

impl Validity {
    /// The stored start (`MIN` when unbounded).
    pub fn from_or_min(&self) -> Millis {
        self.valid_from.unwrap_or(MIN)
    }

    /// The stored end (`MAX` when unbounded).
    pub fn until_or_max(&self) -> Millis {
        self.valid_until.unwrap_or(MAX)
    }

    /// The stored expiry (`MAX` when none).
    pub fn expires_or_max(&self) -> Millis {
        self.expires_at.unwrap_or(MAX)
    }

    /// Read back from stored values (the sentinels become `None`).
    pub fn from_stored(from: Option<Millis>, until: Option<Millis>, expires: Option<Millis>) -> Self {
        Self {
            valid_from: from.filter(|t| *t > MIN),
            valid_until: until.filter(|t| *t < MAX),
            expires_at: expires.filter(|t| *t < MAX),
        }
    }

    /// Whether a search as of `as_of`, made at `now`, may return the record.
    pub fn admits(&self, as_of: Millis, now: Millis) -> bool {
        self.from_or_min() <= as_of && as_of < self.until_or_max() && now < self.expires_or_max()
    }
}

/// The time now.
pub fn now() -> Millis {
    chrono::Utc::now().timestamp_millis()
}

/// Parses an RFC 3339 time (`2024-05-01T12:00:00Z`, `2024-05-01T14:00:00+02:00`); `None` for
/// an empty string. The error names `field`.
pub fn parse(field: &str, value: &str) -> Result<Option<Millis>> {
    if value.is_empty() {
        return Ok(None);
    }
    let time = chrono::DateTime::parse_from_rfc3339(value).map_err(|e| {
        MemoryError::invalid(field, format!("`{value}` is not an RFC 3339 time ({e}); write e.g. 2024-05-01T12:00:00Z"))
    })?;
    let ms = time.timestamp_millis();
    if !(MIN..=MAX).contains(&ms) {
        return Err(MemoryError::invalid(field, format!("`{value}` is outside years 1 to 9999")));
    }
    Ok(Some(ms))
}

/// RFC 3339 in UTC with milliseconds; empty for `None`.
pub fn format(time: Option<Millis>) -> String {
    time.and_then(chrono::DateTime::from_timestamp_millis)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// A record's validity from its wire fields; `valid_until` must come after `valid_from`.
pub fn validity(at: &str, valid_from: &str, valid_until: &str, expires_at: &str) -> Result<Validity> {
    let validity = Validity {
        valid_from: parse(&format!("{at}.valid_from"), valid_from)?,
        valid_until: parse(&format!("{at}.valid_until"), valid_until)?,
        expires_at: parse(&format!("{at}.expires_at"), expires_at)?,
    };
    if let (Some(from), Some(until)) = (validity.valid_from, validity.valid_until) {
        if until <= from {
            return Err(MemoryError::invalid(
                format!("{at}.valid_until"),
                format!("`{valid_until}` is not after valid_from `{valid_from}`"),
            ));
        }
    }
    Ok(validity)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats_rfc3339() {
        assert_eq!(parse("t", "").unwrap(), None);
        assert_eq!(parse("t", "1970-01-01T00:00:01Z").unwrap(), Some(1000));
        assert_eq!(parse("t", "1970-01-01T02:00:01+02:00").unwrap(), Some(1000));
        assert_eq!(format(Some(1500)), "1970-01-01T00:00:01.500Z");
        let err = parse("records[0].valid_from", "yesterday").unwrap_err().to_string();
        assert!(err.contains("records[0].valid_from") && err.contains("yesterday"), "{err}");
    }

    #[test]
    fn validity_is_half_open_and_checked() {
        let v = validity("r", "2024-01-01T00:00:00Z", "2025-01-01T00:00:00Z", "").unwrap();
        let until = v.valid_until.unwrap();
        assert!(v.admits(until - 1000, 0));
        assert!(!v.admits(until, 0));
        assert!(!v.admits(v.valid_from.unwrap() - 1, 0));
        let err = validity("r", "2025-01-01T00:00:00Z", "2024-01-01T00:00:00Z", "").unwrap_err().to_string();
        assert!(err.contains("r.valid_until"), "{err}");
        let stored = Validity::from_stored(Some(MIN), Some(MAX), Some(MAX));
        assert_eq!(stored, Validity::default());
        assert!(!Validity { expires_at: Some(10), ..Default::default() }.admits(0, 10));
    }
}
