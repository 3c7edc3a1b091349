//! Text from a document (a domain name, an attribute, a policy key) shown to a person: control
//! characters are written as escapes, so that an `&#x1b;` in an XML attribute cannot drive the
//! admin's terminal and a newline cannot forge a second log or error line.

use std::borrow::Cow;

/// `s` with every control character escaped (`\n`, `\r`, `\t`, `\x1b`, `\u{85}`...).
pub fn controls(s: &str) -> Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x80 && c.is_control() => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
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
