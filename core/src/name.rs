//! Validated names: [`ServiceName`] and [`Environment`].
//!
//! Names are checked once, when they enter the system, and the error says exactly why a
//! name was refused. Nothing is ever truncated.

use core::fmt;
use core::str::FromStr;

/// Longest service name, in bytes of UTF-8.
pub const MAX_NAME_LEN: usize = 64;
/// Longest environment name, in bytes.
pub const MAX_ENVIRONMENT_LEN: usize = 16;

/// Why a service name or environment was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameError {
    /// The name is empty.
    Empty,
    /// The name is longer than the maximum (the maximum is given, in bytes).
    TooLong {
        /// The maximum length in bytes.
        max: usize,
    },
    /// The bytes are not valid UTF-8.
    NotUtf8,
    /// The name contains a control character (including newline and tab).
    ControlCharacter,
    /// The name begins or ends with white space.
    SurroundingWhitespace,
    /// An environment may only hold ASCII letters, digits, `-`, `_` and `.`.
    InvalidEnvironmentCharacter,
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameError::Empty => f.write_str("name is empty"),
            NameError::TooLong { max } => write!(f, "name is longer than {max} bytes"),
            NameError::NotUtf8 => f.write_str("name is not valid UTF-8"),
            NameError::ControlCharacter => f.write_str("name contains a control character"),
            NameError::SurroundingWhitespace => f.write_str("name begins or ends with white space"),
            NameError::InvalidEnvironmentCharacter => {
                f.write_str("environment may only contain ASCII letters, digits, '-', '_' and '.'")
            }
        }
    }
}

impl core::error::Error for NameError {}

/// The name of a service: 1 to 64 bytes of UTF-8, no control characters, no white space
/// at either end. Inner spaces are allowed and kept.
///
/// ```
/// use herald_core::ServiceName;
/// assert!(ServiceName::new("billing.eu-1").is_ok());
/// assert!(ServiceName::new("my service").is_ok());
/// assert!(ServiceName::new(" padded").is_err());
/// assert!(ServiceName::new("").is_err());
/// ```
#[derive(PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceName(heapless::String<MAX_NAME_LEN, u8>);

impl Clone for ServiceName {
    /// One copy of the byte loop for every clone in a firmware (heapless copies a
    /// string byte by byte, and inlined at each clone that costs flash).
    #[inline(never)]
    fn clone(&self) -> Self {
        ServiceName(self.0.clone())
    }
}

impl ServiceName {
    /// Validates `name` and makes a service name of it.
    pub fn new(name: &str) -> Result<Self, NameError> {
        if name.is_empty() {
            return Err(NameError::Empty);
        }
        if name.len() > MAX_NAME_LEN {
            return Err(NameError::TooLong { max: MAX_NAME_LEN });
        }
        if name.chars().any(char::is_control) {
            return Err(NameError::ControlCharacter);
        }
        if name.starts_with(char::is_whitespace) || name.ends_with(char::is_whitespace) {
            return Err(NameError::SurroundingWhitespace);
        }
        let mut s = heapless::String::new();
        // Cannot fail: the length was checked above.
        s.push_str(name)
            .map_err(|_| NameError::TooLong { max: MAX_NAME_LEN })?;
        Ok(ServiceName(s))
    }
}

/// The environment a frame belongs to (`default`, `prod`, `dev`, …): 1 to 16 ASCII
/// letters, digits, `-`, `_` or `.`. Frames from another environment are never acted on.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Environment(heapless::String<MAX_ENVIRONMENT_LEN>);

impl Environment {
    /// The default environment, `default`.
    pub fn default_environment() -> Self {
        // "default" is valid by construction.
        Environment::new("default").unwrap_or_else(|_| unreachable!())
    }

    /// Validates `name` and makes an environment of it.
    pub fn new(name: &str) -> Result<Self, NameError> {
        Self::from_bytes(name.as_bytes())
    }

    /// Validates raw bytes (as read from the wire) and makes an environment of them.
    /// Every byte must be one of the allowed ASCII characters, so no UTF-8 validation
    /// is needed (nor linked into a firmware whose client reads no service name).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, NameError> {
        if bytes.is_empty() {
            return Err(NameError::Empty);
        }
        if bytes.len() > MAX_ENVIRONMENT_LEN {
            return Err(NameError::TooLong {
                max: MAX_ENVIRONMENT_LEN,
            });
        }
        let mut s = heapless::String::new();
        for &b in bytes {
            if !(b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.') {
                return Err(NameError::InvalidEnvironmentCharacter);
            }
            // Cannot fail: the length was checked above.
            s.push(char::from(b)).map_err(|_| NameError::TooLong {
                max: MAX_ENVIRONMENT_LEN,
            })?;
        }
        Ok(Environment(s))
    }
}

impl Default for Environment {
    fn default() -> Self {
        Self::default_environment()
    }
}

impl ServiceName {
    /// Validates raw bytes (as read from the wire) and makes a service name of them.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, NameError> {
        core::str::from_utf8(bytes)
            .map_err(|_| NameError::NotUtf8)
            .and_then(Self::new)
    }
}

/// The parts two validated string types share: `as_str`, `FromStr`, `Display` and
/// `Debug`.
macro_rules! validated_string {
    ($t:ident) => {
        impl $t {
            /// The value as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $t {
            type Err = NameError;
            fn from_str(s: &str) -> Result<Self, NameError> {
                Self::new(s)
            }
        }

        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(self.as_str(), f)
            }
        }
    };
}

validated_string!(ServiceName);
validated_string!(Environment);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_names() {
        assert_eq!(ServiceName::new(""), Err(NameError::Empty));
        assert_eq!(
            ServiceName::new(&"x".repeat(65)),
            Err(NameError::TooLong { max: 64 })
        );
        assert!(ServiceName::new(&"x".repeat(64)).is_ok());
        assert_eq!(ServiceName::new("a\nb"), Err(NameError::ControlCharacter));
        assert_eq!(
            ServiceName::new("name "),
            Err(NameError::SurroundingWhitespace)
        );
        assert_eq!(ServiceName::new("two words").unwrap().as_str(), "two words");
        assert_eq!(ServiceName::from_bytes(&[0xff]), Err(NameError::NotUtf8));
        assert_eq!(ServiceName::new("größe").unwrap().as_str(), "größe");
    }

    #[test]
    fn environments() {
        assert_eq!(Environment::default().as_str(), "default");
        assert!(Environment::new("prod-eu_1.a").is_ok());
        assert_eq!(
            Environment::new("prod eu"),
            Err(NameError::InvalidEnvironmentCharacter)
        );
        assert_eq!(
            Environment::new("abcdefghijklmnopq"),
            Err(NameError::TooLong { max: 16 })
        );
        assert_eq!(
            Environment::from_bytes(b"prod-eu_1.a").unwrap().as_str(),
            "prod-eu_1.a"
        );
        // Bytes outside the allowed ASCII set, valid UTF-8 or not, are refused as such.
        for bytes in [&b"pr\xffod"[..], "größe".as_bytes(), b"a\0b"] {
            assert_eq!(
                Environment::from_bytes(bytes),
                Err(NameError::InvalidEnvironmentCharacter)
            );
        }
        assert_eq!(Environment::from_bytes(b""), Err(NameError::Empty));
    }
}
