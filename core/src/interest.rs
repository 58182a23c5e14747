//! What a client wants to hear about: [`Interest`], a short list of exact names and
//! prefixes.

use crate::name::{NameError, ServiceName, MAX_NAME_LEN};

/// Most patterns one interest may hold.
pub const MAX_PATTERNS: usize = 4;

/// Why an interest could not be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InterestError {
    /// More than [`MAX_PATTERNS`] patterns.
    TooManyPatterns,
    /// A pattern is not a valid name or prefix.
    InvalidPattern(NameError),
}

impl core::fmt::Display for InterestError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            InterestError::TooManyPatterns => write!(f, "at most {MAX_PATTERNS} interests"),
            InterestError::InvalidPattern(e) => write!(f, "invalid interest: {e}"),
        }
    }
}

impl core::error::Error for InterestError {}

/// One pattern: an exact service name, or a prefix of names.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Pattern {
    text: heapless::String<MAX_NAME_LEN, u8>,
    prefix: bool,
}

impl Pattern {
    /// Matches exactly `name`.
    pub fn exact(name: &ServiceName) -> Self {
        let mut text = heapless::String::new();
        // A service name always fits.
        let _ = text.push_str(name.as_str());
        Pattern {
            text,
            prefix: false,
        }
    }

    /// Matches every name that starts with `prefix` (1 to 64 bytes, no control
    /// characters).
    pub fn prefix(prefix: &str) -> Result<Self, NameError> {
        if prefix.is_empty() {
            return Err(NameError::Empty);
        }
        if prefix.chars().any(char::is_control) {
            return Err(NameError::ControlCharacter);
        }
        let mut text = heapless::String::new();
        text.push_str(prefix)
            .map_err(|_| NameError::TooLong { max: MAX_NAME_LEN })?;
        Ok(Pattern { text, prefix: true })
    }

    /// Parses the command-line form: `name` is exact, `name*` is a prefix.
    pub fn parse(text: &str) -> Result<Self, NameError> {
        match text.strip_suffix('*') {
            Some(prefix) => Self::prefix(prefix),
            None => ServiceName::new(text).map(|n| Self::exact(&n)),
        }
    }

    /// True when `name` matches.
    pub fn matches(&self, name: &str) -> bool {
        if self.prefix {
            name.starts_with(self.text.as_str())
        } else {
            name == self.text.as_str()
        }
    }

    /// The name or prefix.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// True for a prefix pattern.
    pub fn is_prefix(&self) -> bool {
        self.prefix
    }
}

/// The services a client wants to know about. Empty means every service.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Interest {
    patterns: heapless::Vec<Pattern, MAX_PATTERNS, u8>,
}

impl Interest {
    /// Every service.
    pub const fn all() -> Self {
        Interest {
            patterns: heapless::Vec::new(),
        }
    }

    /// Adds a pattern.
    pub fn push(&mut self, pattern: Pattern) -> Result<(), InterestError> {
        self.patterns
            .push(pattern)
            .map_err(|_| InterestError::TooManyPatterns)
    }

    /// Builds an interest from command-line forms (`name` exact, `name*` prefix).
    pub fn parse_all<'a>(texts: impl IntoIterator<Item = &'a str>) -> Result<Self, InterestError> {
        let mut interest = Interest::all();
        for t in texts {
            interest.push(Pattern::parse(t).map_err(InterestError::InvalidPattern)?)?;
        }
        Ok(interest)
    }

    /// True when `name` is of interest.
    pub fn matches(&self, name: &str) -> bool {
        self.patterns.is_empty() || self.patterns.iter().any(|p| p.matches(name))
    }

    /// The patterns (empty means every service).
    pub fn patterns(&self) -> &[Pattern] {
        &self.patterns
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching() {
        assert!(Interest::all().matches("anything"));
        let i = Interest::parse_all(["db.*", "cache"]).unwrap();
        assert!(i.matches("db.primary"));
        assert!(i.matches("cache"));
        assert!(!i.matches("cache2"));
        assert!(!i.matches("web"));
        assert_eq!(
            Interest::parse_all(["a", "b", "c", "d", "e"]),
            Err(InterestError::TooManyPatterns)
        );
        assert!(Pattern::parse("*").is_err());
    }
}
