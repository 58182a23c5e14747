//! Text for people. Service names, metadata and interests may hold any Unicode but
//! control characters; some of what is left is invisible or reverses the text around
//! it (bidirectional controls, zero-width characters), so that on a screen one name
//! could pass for another. Lines printed for people write those characters as
//! `\u{…}` escapes; JSON output, and the registry itself, keep the exact text.

use std::borrow::Cow;
use std::fmt::Write;

/// The characters written as escapes, as inclusive ranges: format characters that are
/// invisible or change the direction of the text around them, and blanks that render
/// as nothing. The live page escapes the same set (checked by a test of `http::page`).
pub const HIDDEN: &[(char, char)] = &[
    ('\u{00AD}', '\u{00AD}'),
    ('\u{034F}', '\u{034F}'),
    ('\u{061C}', '\u{061C}'),
    ('\u{115F}', '\u{1160}'),
    ('\u{17B4}', '\u{17B5}'),
    ('\u{180B}', '\u{180F}'),
    ('\u{200B}', '\u{200F}'),
    ('\u{202A}', '\u{202E}'),
    ('\u{2060}', '\u{206F}'),
    ('\u{3164}', '\u{3164}'),
    ('\u{FE00}', '\u{FE0F}'),
    ('\u{FEFF}', '\u{FEFF}'),
    ('\u{FFA0}', '\u{FFA0}'),
    ('\u{FFF0}', '\u{FFFB}'),
    ('\u{1D173}', '\u{1D17A}'),
    ('\u{E0000}', '\u{E0FFF}'),
];

/// Whether `c` is written as an escape (one of [`HIDDEN`]).
pub fn hidden(c: char) -> bool {
    HIDDEN
        .iter()
        .any(|&(first, last)| (first..=last).contains(&c))
}

/// [`HIDDEN`] as a JavaScript regular expression (with the `u` flag) matching one of
/// them.
pub fn hidden_js_pattern() -> String {
    let code = |c: char| match u32::from(c) {
        n if n <= 0xFFFF => format!("\\u{n:04X}"),
        n => format!("\\u{{{n:X}}}"),
    };
    let mut class = String::from("[");
    for &(first, last) in HIDDEN {
        class.push_str(&code(first));
        if last != first {
            class.push('-');
            class.push_str(&code(last));
        }
    }
    class.push(']');
    class
}

/// `text` with every [`hidden`] character written as `\u{…}` (borrowed when there is
/// none).
pub fn visible(text: &str) -> Cow<'_, str> {
    if !text.chars().any(hidden) {
        return Cow::Borrowed(text);
    }
    let mut shown = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if hidden(c) {
            let _ = write!(shown, "\\u{{{:04x}}}", u32::from(c));
        } else {
            shown.push(c);
        }
    }
    Cow::Owned(shown)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_characters_are_escaped_and_the_rest_is_kept() {
        assert!(matches!(visible("billing/eu-1 ü ✓"), Cow::Borrowed(_)));
        // A right-to-left override makes "evil\u{202e}gnp.exe" show as "evilexe.png".
        assert_eq!(visible("evil\u{202e}gnp.exe"), "evil\\u{202e}gnp.exe");
        assert_eq!(visible("a\u{200b}b\u{feff}"), "a\\u{200b}b\\u{feff}");
        assert_eq!(visible("\u{2066}x\u{2069}"), "\\u{2066}x\\u{2069}");
        assert_eq!(visible("tag\u{e0041}"), "tag\\u{e0041}");
    }
}
