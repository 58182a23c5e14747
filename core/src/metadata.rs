//! Small key=value metadata attached to a registration, like DNS-SD TXT records or
//! Consul service meta.

use core::fmt;

/// Most bytes of metadata one registration may carry (all pairs, encoded).
pub const MAX_METADATA_LEN: usize = 96;
/// Longest metadata key, in bytes.
pub const MAX_KEY_LEN: usize = 32;

/// Why metadata was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetadataError {
    /// All pairs together exceed [`MAX_METADATA_LEN`] bytes.
    TooLong,
    /// A key is empty, longer than [`MAX_KEY_LEN`], or holds characters other than ASCII
    /// letters, digits, `-`, `_` and `.`.
    InvalidKey,
    /// A value contains a control character.
    InvalidValue,
    /// The same key appears twice.
    DuplicateKey,
    /// A pair is not of the form `key=value`, or the bytes are not UTF-8.
    Malformed,
}

impl fmt::Display for MetadataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MetadataError::TooLong => "metadata is longer than 96 bytes in all",
            MetadataError::InvalidKey => {
                "a metadata key must be 1 to 32 ASCII letters, digits, '-', '_' or '.'"
            }
            MetadataError::InvalidValue => "a metadata value contains a control character",
            MetadataError::DuplicateKey => "a metadata key is given twice",
            MetadataError::Malformed => "metadata must be key=value pairs",
        })
    }
}

impl core::error::Error for MetadataError {}

/// Key=value pairs, stored as `key=value` entries separated by NUL bytes, at most
/// [`MAX_METADATA_LEN`] bytes in all. Keys are unique; order is kept.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Metadata {
    bytes: heapless::Vec<u8, MAX_METADATA_LEN>,
}

fn check_key(key: &str) -> Result<(), MetadataError> {
    let ok = !key.is_empty()
        && key.len() <= MAX_KEY_LEN
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(MetadataError::InvalidKey)
    }
}

fn check_value(value: &str) -> Result<(), MetadataError> {
    if value.chars().any(char::is_control) {
        Err(MetadataError::InvalidValue)
    } else {
        Ok(())
    }
}

impl Metadata {
    /// No metadata.
    pub const fn new() -> Self {
        Metadata {
            bytes: heapless::Vec::new(),
        }
    }

    /// Validates the encoded form (as carried on the wire) and makes metadata of it.
    pub fn from_encoded(bytes: &[u8]) -> Result<Self, MetadataError> {
        let text = core::str::from_utf8(bytes).map_err(|_| MetadataError::Malformed)?;
        let mut meta = Metadata::new();
        if text.is_empty() {
            return Ok(meta);
        }
        for pair in text.split('\0') {
            let (key, value) = pair.split_once('=').ok_or(MetadataError::Malformed)?;
            meta.insert(key, value)?;
        }
        Ok(meta)
    }

    /// Adds a pair. Fails if the key is invalid or present, or if the total would be too
    /// long; metadata is unchanged on failure.
    pub fn insert(&mut self, key: &str, value: &str) -> Result<(), MetadataError> {
        check_key(key)?;
        check_value(value)?;
        if self.get(key).is_some() {
            return Err(MetadataError::DuplicateKey);
        }
        let sep = usize::from(!self.bytes.is_empty());
        if self.bytes.len() + sep + key.len() + 1 + value.len() > MAX_METADATA_LEN {
            return Err(MetadataError::TooLong);
        }
        let parts: [&[u8]; 4] = [
            if sep == 1 { b"\0" } else { b"" },
            key.as_bytes(),
            b"=",
            value.as_bytes(),
        ];
        for part in parts {
            self.bytes
                .extend_from_slice(part)
                .map_err(|_| MetadataError::TooLong)?;
        }
        Ok(())
    }

    /// The value for `key`, if present.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// The pairs, in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        let text = core::str::from_utf8(&self.bytes).unwrap_or("");
        text.split('\0')
            .filter(|p| !p.is_empty())
            .filter_map(|p| p.split_once('='))
    }

    /// True when there are no pairs.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The encoded form carried on the wire.
    pub fn encoded(&self) -> &[u8] {
        &self.bytes
    }
}

impl fmt::Debug for Metadata {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_get_roundtrip() {
        let mut m = Metadata::new();
        m.insert("version", "1.2").unwrap();
        m.insert("zone", "a=b").unwrap();
        assert_eq!(m.get("zone"), Some("a=b"));
        assert_eq!(m.insert("zone", "x"), Err(MetadataError::DuplicateKey));
        assert_eq!(m.insert("bad key", "x"), Err(MetadataError::InvalidKey));
        assert_eq!(m.insert("k", "a\nb"), Err(MetadataError::InvalidValue));
        let back = Metadata::from_encoded(m.encoded()).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.iter().count(), 2);
    }

    #[test]
    fn bounded() {
        let mut m = Metadata::new();
        let long = "v".repeat(90);
        m.insert("k", &long).unwrap();
        assert_eq!(m.insert("k2", "xxxx"), Err(MetadataError::TooLong));
        assert_eq!(m.iter().count(), 1);
        assert_eq!(
            Metadata::from_encoded(b"novalue"),
            Err(MetadataError::Malformed)
        );
        assert_eq!(Metadata::from_encoded(b""), Ok(Metadata::new()));
        assert_eq!(
            Metadata::from_encoded(b"a=1\0a=2"),
            Err(MetadataError::DuplicateKey)
        );
    }
}
