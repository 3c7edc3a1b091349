//! Text from a document (a domain name, an attribute, a policy key) shown to a person: control
//! characters are written as escapes, so that an `&#x1b;` in an XML attribute cannot drive the
//! admin's terminal and a newline cannot forge a second log or error line.

use std::borrow::Cow;
use std::fmt::{self, Write};

/// `s` with every control character escaped (`\n`, `\r`, `\t`, `\x1b`, `\u{85}`...).
pub fn controls(s: &str) -> Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        // Writing to a String cannot fail.
        let _ = write_char(&mut out, c);
    }
    Cow::Owned(out)
}

/// Writes `c`, escaped as [`controls`] escapes it when it is a control character.
pub(crate) fn write_char(out: &mut impl Write, c: char) -> fmt::Result {
    match c {
        '\n' => out.write_str("\\n"),
        '\r' => out.write_str("\\r"),
        '\t' => out.write_str("\\t"),
        c if (c as u32) < 0x80 && c.is_control() => write!(out, "\\x{:02x}", c as u32),
        c if c.is_control() => write!(out, "\\u{{{:x}}}", c as u32),
        c => out.write_char(c),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_the_rest_is_kept() {
        assert!(matches!(controls("db02 é"), Cow::Borrowed("db02 é")));
        assert_eq!(
            controls("a\nb\rc\td\u{7}\u{1b}[31m\u{85}"),
            "a\\nb\\rc\\td\\x07\\x1b[31m\\u{85}"
        );
    }
}
