use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;

/// A sha256 digest, written as 64 lowercase hex digits; `sha256:` prefixed
/// input is accepted too.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Checksum(String);

#[derive(Debug, Error, PartialEq, Eq)]
#[error("`{0}` is not a sha256 checksum (expected 64 hex digits, optionally prefixed by `sha256:`)")]
pub struct ChecksumError(pub String);

impl Checksum {
    pub fn parse(s: &str) -> Result<Self, ChecksumError> {
        let hex = s.strip_prefix("sha256:").unwrap_or(s);
        if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(Checksum(hex.to_ascii_lowercase()))
        } else {
            Err(ChecksumError(s.to_string()))
        }
    }

    /// Builds a checksum from raw digest bytes.
    pub fn from_digest(bytes: &[u8; 32]) -> Self {
        let mut s = String::with_capacity(64);
        for b in bytes {
            s.push_str(&format!("{b:02x}"));
        }
        Checksum(s)
    }

    /// The 64 hex digits.
    pub fn hex(&self) -> &str {
        &self.0
    }

    /// `sha256:<hex>`, the form used in manifests and user-facing text.
    pub fn prefixed(&self) -> String {
        format!("sha256:{}", self.0)
    }
}

impl fmt::Display for Checksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Checksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Checksum({})", self.0)
    }
}

impl FromStr for Checksum {
    type Err = ChecksumError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Checksum::parse(s)
    }
}

impl Serialize for Checksum {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Checksum {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Checksum::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_forms() {
        let hex = "0123456789abcdef".repeat(4);
        let a = Checksum::parse(&hex).unwrap();
        let b = Checksum::parse(&format!("sha256:{}", hex.to_uppercase())).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.prefixed(), format!("sha256:{hex}"));
        assert!(Checksum::parse("sha256:xyz").is_err());
        assert!(Checksum::parse(&"0".repeat(63)).is_err());
    }
}
