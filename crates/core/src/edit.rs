//! Byte-span edits of a document: replace, insert or delete ranges and leave every other byte
//! as it was. This is how a rewrite stays minimal: no DOM is re-serialised, so comments,
//! whitespace, attribute order and quoting outside the edited ranges survive untouched.

use std::fmt;

use crate::model::Span;
use crate::start_tag::Attr;

/// Replace the bytes of `span` with `text` (an insertion when the span is empty, a deletion
/// when the text is).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edit {
    /// The bytes replaced; empty for an insertion.
    pub span: Span,
    /// What they are replaced with; empty for a deletion.
    pub text: String,
}

impl Edit {
    /// Replaces the bytes of `span` with `text`.
    pub fn replace(span: Span, text: impl Into<String>) -> Self {
        Edit {
            span,
            text: text.into(),
        }
    }

    /// Inserts `text` at byte `at`.
    pub fn insert(at: usize, text: impl Into<String>) -> Self {
        Edit::replace(Span { start: at, end: at }, text)
    }

    /// Deletes the bytes of `span`.
    pub fn delete(span: Span) -> Self {
        Edit::replace(span, String::new())
    }
}

/// Two edits claimed the same bytes: a bug in whoever planned them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overlap {
    /// The edit applied first.
    pub first: Span,
    /// The edit that reaches into it.
    pub second: Span,
}

impl std::error::Error for Overlap {}

impl fmt::Display for Overlap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "edits overlap: bytes {}..{} and {}..{}",
            self.first.start, self.first.end, self.second.start, self.second.end
        )
    }
}

/// Applies `edits` to `input`. Insertions at one position keep the order they were given in.
pub fn apply(input: &str, mut edits: Vec<Edit>) -> Result<String, Overlap> {
    // A stable sort keeps same-position insertions in the caller's order.
    edits.sort_by_key(|e| (e.span.start, e.span.end));
    let mut out = String::with_capacity(input.len() + edits.iter().map(|e| e.text.len()).sum::<usize>());
    let mut pos = 0;
    let mut last: Option<Span> = None;
    for edit in &edits {
        if edit.span.start < pos || edit.span.end > input.len() || edit.span.start > edit.span.end {
            return Err(Overlap {
                first: last.unwrap_or(edit.span),
                second: edit.span,
            });
        }
        out.push_str(&input[pos..edit.span.start]);
        out.push_str(&edit.text);
        pos = edit.span.end;
        last = Some(edit.span);
    }
    out.push_str(&input[pos..]);
    Ok(out)
}

/// The attributes of the start tag that begins at `tag_start` (which holds `<`), and the
/// offset of the tag's closing `>` or `/>`; `None` when the tag is not well-formed.
pub fn start_tag(input: &str, tag_start: usize) -> Option<(Vec<Attr<'_>>, usize)> {
    let mut attrs = Vec::new();
    let end = crate::start_tag::read(input, tag_start, &mut attrs).ok()?;
    Some((attrs, end))
}

/// Edits that give the start tag at `tag_start` these attribute values: a value already
/// written is replaced in its quotes, a missing attribute is appended before the tag's end in
/// the quoting the tag already uses. Attributes whose value `same` deems equal are left alone.
pub fn set_attributes(
    input: &str,
    tag_start: usize,
    values: &[(&str, String)],
    same: impl Fn(&str, &str) -> bool,
) -> Option<Vec<Edit>> {
    let (attrs, end) = start_tag(input, tag_start)?;
    let quote = attrs.first().map_or('\'', |a| a.quote);
    let mut edits = Vec::new();
    let mut appended = String::new();
    for (name, value) in values {
        match attrs.iter().find(|a| a.name == *name) {
            Some(a) if same(&input[a.value.start..a.value.end], value) => {}
            Some(a) => edits.push(Edit::replace(a.value, value.clone())),
            None => appended.push_str(&format!(" {name}={quote}{value}{quote}")),
        }
    }
    if !appended.is_empty() {
        edits.push(Edit::insert(end, appended));
    }
    Some(edits)
}

/// The whitespace that indents the line `pos` is on, when only whitespace precedes `pos` on it.
pub fn indent_before(input: &str, pos: usize) -> Option<&str> {
    let line_start = input[..pos].rfind('\n').map_or(0, |n| n + 1);
    let lead = &input[line_start..pos];
    lead.bytes().all(|b| b == b' ' || b == b'\t').then_some(lead)
}

/// The bytes to delete to remove the element at `span` with its line: from the end of the
/// previous line when the element is alone on its own, else just the element.
pub fn line_removal(input: &str, span: Span) -> Span {
    match indent_before(input, span.start) {
        Some(lead) => {
            let line_start = span.start - lead.len();
            let start = if line_start > 0 && input.as_bytes()[line_start - 1] == b'\n' {
                let cr = line_start >= 2 && input.as_bytes()[line_start - 2] == b'\r';
                line_start - 1 - usize::from(cr)
            } else {
                line_start
            };
            Span { start, end: span.end }
        }
        None => span,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(start: usize, end: usize) -> Span {
        Span { start, end }
    }

    #[test]
    fn edits_apply_in_offset_order_and_keep_the_rest() {
        let out = apply(
            "abcdef",
            vec![
                Edit::replace(span(4, 5), "E"),
                Edit::insert(0, "<"),
                Edit::delete(span(1, 3)),
                Edit::insert(6, ">"),
                Edit::insert(6, "!"),
            ],
        )
        .unwrap();
        assert_eq!(out, "<adEf>!");
    }

    #[test]
    fn overlapping_edits_are_refused() {
        let err = apply("abcdef", vec![Edit::delete(span(1, 4)), Edit::delete(span(3, 5))]).unwrap_err();
        assert_eq!(err.second, span(3, 5));
        assert!(apply("abc", vec![Edit::delete(span(2, 9))]).is_err());
    }

    #[test]
    fn set_attributes_replaces_appends_and_skips_equal_values() {
        let doc = r#"<address type="pci" bus="0x00" slot="0x05"/>"#;
        let edits = set_attributes(
            doc,
            0,
            &[
                ("bus", "0x02".into()),
                ("slot", "0x5".into()),
                ("function", "0x0".into()),
            ],
            |a, b| {
                use crate::number::{Base, parse_uint};
                parse_uint(a, Base::Auto, 255) == parse_uint(b, Base::Auto, 255)
            },
        )
        .unwrap();
        assert_eq!(
            apply(doc, edits).unwrap(),
            r#"<address type="pci" bus="0x02" slot="0x05" function="0x0"/>"#
        );
    }

    #[test]
    fn line_removal_takes_the_line_only_when_the_element_is_alone_on_it() {
        let doc = "<a>\n  <b/>\n  <c/><d/>\n</a>";
        let b = doc.find("<b/>").unwrap();
        assert_eq!(
            apply(doc, vec![Edit::delete(line_removal(doc, span(b, b + 4)))]).unwrap(),
            "<a>\n  <c/><d/>\n</a>"
        );
        let d = doc.find("<d/>").unwrap();
        assert_eq!(
            apply(doc, vec![Edit::delete(line_removal(doc, span(d, d + 4)))]).unwrap(),
            "<a>\n  <b/>\n  <c/>\n</a>"
        );
        let crlf = "<a>\r\n  <b/>\r\n</a>";
        let b = crlf.find("<b/>").unwrap();
        assert_eq!(
            apply(crlf, vec![Edit::delete(line_removal(crlf, span(b, b + 4)))]).unwrap(),
            "<a>\r\n</a>"
        );
    }
}
