//! Record ids: `rec` followed by 14 ASCII letters or digits, in both backends.
//!
//! Ids that come from outside (webhook bodies, the admin API, link fields written by callers) are parsed
//! into [`RecordId`] before any request is made, so a malformed id is a 400-class error with the stable
//! code `INVALID_RECORD_ID` and never reaches Airtable (where it would cost a rate-limited call and come
//! back as an ambiguous 404). The SQLite backend generates ids of the same shape so that ids can move
//! between stores and every validation rule holds for both.

use std::fmt;

use rand::Rng;

use crate::StoreError;

const PREFIX: &str = "rec";
const SUFFIX_LEN: usize = 14;

/// True when `s` matches `^rec[A-Za-z0-9]{14}$`.
pub fn is_record_id(s: &str) -> bool {
    s.len() == PREFIX.len() + SUFFIX_LEN
        && s.starts_with(PREFIX)
        && s[PREFIX.len()..].bytes().all(|b| b.is_ascii_alphanumeric())
}

/// A validated record id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct RecordId(String);

impl RecordId {
    /// Parses an id from outside; the error has code `INVALID_RECORD_ID`.
    pub fn parse(s: &str) -> Result<RecordId, StoreError> {
        if is_record_id(s) {
            Ok(RecordId(s.to_string()))
        } else {
            // Cap what we echo back: the input is untrusted and may be huge.
            Err(StoreError::InvalidRecordId(s.chars().take(40).collect()))
        }
    }

    /// A fresh random id (used by the SQLite backend and the fake).
    pub fn generate() -> RecordId {
        let suffix: String = rand::rng()
            .sample_iter(rand::distr::Alphanumeric)
            .take(SUFFIX_LEN)
            .map(char::from)
            .collect();
        RecordId(format!("{PREFIX}{suffix}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for RecordId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for RecordId {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RecordId::parse(s)
    }
}

// Comparing with text validates nothing and builds nothing, so it is safe to offer: a caller can check
// a link against an id it holds as text without parsing that text first.
impl PartialEq<str> for RecordId {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for RecordId {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl PartialEq<String> for RecordId {
    fn eq(&self, other: &String) -> bool {
        &self.0 == other
    }
}

impl PartialEq<RecordId> for String {
    fn eq(&self, other: &RecordId) -> bool {
        self == &other.0
    }
}

impl PartialEq<RecordId> for &str {
    fn eq(&self, other: &RecordId) -> bool {
        *self == other.0
    }
}

impl AsRef<str> for RecordId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl<'de> serde::Deserialize<'de> for RecordId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        RecordId::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Validates every id of a batch before anything is sent.
pub(crate) fn check_ids<'a>(ids: impl IntoIterator<Item = &'a str>) -> Result<(), StoreError> {
    for id in ids {
        RecordId::parse(id)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_only_the_airtable_shape() {
        assert!(is_record_id("rec0HLFTLAXuJ6suq"));
        assert!(!is_record_id("rec0HLFTLAXuJ6su"));
        assert!(!is_record_id("rec0HLFTLAXuJ6suqq"));
        assert!(!is_record_id("tbl0HLFTLAXuJ6suq"));
        assert!(!is_record_id("rec0HLFTLAXuJ6s-q"));
        assert!(!is_record_id("rec0HLFTLAXuJ6sué"));
        assert!(!is_record_id(""));
        assert_eq!(
            RecordId::parse("nope").unwrap_err().code(),
            "INVALID_RECORD_ID"
        );
        let id = RecordId::generate();
        assert!(is_record_id(id.as_str()), "{id}");
        assert_ne!(id, RecordId::generate());
        let parsed: Result<RecordId, _> = serde_json::from_str("\"recX\"");
        assert!(parsed.is_err());
    }
}
