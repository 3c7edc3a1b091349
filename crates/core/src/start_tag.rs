//! The attributes of a start tag, located in the document: the one reading of `name='value'`
//! pairs, shared by the parser (which decodes the values it needs) and the byte editor (which
//! replaces values in place). Values stay spans into the input until someone asks for them, so
//! reading a tag allocates nothing.

use crate::model::Span;

/// One attribute of a start tag, as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attr<'a> {
    /// The attribute's name.
    pub name: &'a str,
    /// The value between the quotes, as written (not unescaped).
    pub value: Span,
    /// The quote character around its value, `'` or `"`.
    pub quote: char,
    /// The value holds no reference and no line break or tab: as written is what it means.
    pub plain: bool,
}

/// A start tag that is not well-formed XML, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadTag {
    /// The byte offset of the fault.
    pub offset: usize,
    /// What is wrong.
    pub detail: String,
}

/// Reads the attributes of the start tag that begins at `tag_start` (which holds `<`) into
/// `out` (cleared first) and returns the offset of the tag's closing `>` or `/>`.
///
/// XML's attribute rules are checked here because quick-xml does not check them all, and
/// libxml2 (so libvirt) refuses a document that breaks any: white space before each attribute
/// (`bus='1'slot='2'` and `bus='1'=slot='2'` are no pairs; tests/fuzz/fix/ keeps such inputs),
/// a name, `=`, a quoted value without `<`, and no name twice. They are checked on the tags
/// that are read (the elements the rules look at, the tags `fix` edits); a tag no rule reads
/// is only checked by quick-xml, as libvirt would refuse the document anyway.
pub fn read<'a>(input: &'a str, tag_start: usize, out: &mut Vec<Attr<'a>>) -> Result<usize, BadTag> {
    out.clear();
    let bytes = input.as_bytes();
    let bad = |offset: usize, detail: String| Err(BadTag { offset, detail });
    // Every scan is a run of one byte class; the element's name ends at space, '/' or '>'.
    let run = |from: usize, class: u8| {
        from + bytes[from.min(bytes.len())..]
            .iter()
            .take_while(|&&b| CLASS[usize::from(b)] & class != 0)
            .count()
    };
    let mut i = run(tag_start + 1, NAME_CHAR);
    loop {
        let after_space = run(i, SPACE);
        let spaced = after_space > i;
        i = after_space;
        match bytes.get(i) {
            None => return bad(i, "the start tag is never closed".into()),
            Some(b'>' | b'/')
                if out.len() >= MANY_ATTRIBUTES
                    && let Some(twice) = repeated(out) =>
            {
                return bad(twice.0, format!("attribute '{}' is given twice", twice.1));
            }
            Some(b'>') => return Ok(i),
            Some(b'/') if bytes.get(i + 1) == Some(&b'>') => return Ok(i),
            Some(b'/') => return bad(i, "'/' in a start tag is not followed by '>'".into()),
            Some(_) if !spaced => {
                return bad(
                    i,
                    "attributes must be name='value' pairs separated by white space".into(),
                );
            }
            Some(_) => {}
        }
        let name_start = i;
        i = run(i, NAME_CHAR);
        let name = &input[name_start..i];
        if name.is_empty() || CLASS[usize::from(bytes[name_start])] & NAME_START == 0 {
            return bad(name_start, format!("'{name}' is not an attribute name"));
        }
        i = run(i, SPACE);
        if bytes.get(i) != Some(&b'=') {
            return bad(i, format!("attribute '{name}' has no '=' and value"));
        }
        i = run(i + 1, SPACE);
        let quote = match bytes.get(i) {
            Some(&q @ (b'\'' | b'"')) => q,
            _ => return bad(i, format!("the value of attribute '{name}' is not quoted")),
        };
        let value_start = i + 1;
        // Most values hold nothing but plain characters up to their closing quote.
        let plain_end = run(value_start, PLAIN);
        let (len, plain) = if bytes.get(plain_end) == Some(&quote) {
            (plain_end - value_start, true)
        } else {
            let rest = &bytes[value_start..];
            let Some(len) = rest.iter().position(|&b| b == quote || b == b'<') else {
                return bad(i, format!("the value of attribute '{name}' is never closed"));
            };
            let plain = !rest[..len].iter().any(|&b| CLASS[usize::from(b)] & DECODED != 0);
            (len, plain)
        };
        if bytes[value_start + len] == b'<' {
            return bad(
                value_start + len,
                format!("'<' in the value of attribute '{name}'"),
            );
        }
        // Pairwise while the list is short, as libvirt's elements keep it; a tag with very many
        // attributes (a hostile one) is checked once, sorted, at its end, so that it costs
        // n log n and not n squared.
        if out.len() < MANY_ATTRIBUTES && out.iter().any(|a| a.name.as_bytes() == name.as_bytes()) {
            return bad(name_start, format!("attribute '{name}' is given twice"));
        }
        let value = Span {
            start: value_start,
            end: value_start + len,
        };
        out.push(Attr {
            name,
            value,
            plain,
            quote: quote as char,
        });
        i = value.end + 1;
    }
}

/// From this many attributes on, names are checked for repeats by sorting, not pairwise.
const MANY_ATTRIBUTES: usize = 32;

/// The offset and name of an attribute that repeats an earlier one, if any.
fn repeated<'a>(attrs: &[Attr<'a>]) -> Option<(usize, &'a str)> {
    let mut names: Vec<(&str, usize)> = attrs.iter().map(|a| (a.name, a.value.start)).collect();
    names.sort_unstable();
    names
        .windows(2)
        .filter(|w| w[0].0 == w[1].0)
        .map(|w| w[1])
        .min_by_key(|&(_, at)| at)
        .map(|(name, at)| (at, name))
}

/// XML's white space.
pub fn is_space(b: u8) -> bool {
    CLASS[usize::from(b)] & SPACE != 0
}

const SPACE: u8 = 1;
/// What may start an XML Name, loosely: a letter, `_`, `:` or any byte of a non-ASCII
/// character (all of them are >= 0x80).
const NAME_START: u8 = 2;
/// What may follow in a Name: those, digits, `-` and `.`.
const NAME_CHAR: u8 = 4;
/// What a value means as written: not a quote, `<`, `&`, or what XML turns into a space.
const PLAIN: u8 = 8;
/// What XML decodes in a value: a reference, and tab and line breaks, which become spaces.
const DECODED: u8 = 16;

/// The classes of every byte value, built at compile time.
static CLASS: [u8; 256] = {
    let mut class = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        if matches!(c, b' ' | b'\t' | b'\r' | b'\n') {
            class[b] |= SPACE;
        }
        if c.is_ascii_alphabetic() || c == b'_' || c == b':' || !c.is_ascii() {
            class[b] |= NAME_START | NAME_CHAR;
        }
        if c.is_ascii_digit() || c == b'-' || c == b'.' {
            class[b] |= NAME_CHAR;
        }
        if matches!(c, b'&' | b'\t' | b'\r' | b'\n') {
            class[b] |= DECODED;
        } else if !matches!(c, b'\'' | b'"' | b'<') {
            class[b] |= PLAIN;
        }
        b += 1;
    }
    class
};

#[cfg(test)]
mod tests {
    use super::*;

    /// Name, value as written and quote of each attribute.
    type Written<'a> = Vec<(&'a str, &'a str, char)>;

    fn attrs(tag: &str) -> Result<(Written<'_>, usize), BadTag> {
        let mut out = Vec::new();
        let end = read(tag, 0, &mut out)?;
        let list = out
            .iter()
            .map(|a| (a.name, &tag[a.value.start..a.value.end], a.quote))
            .collect();
        Ok((list, end))
    }

    #[test]
    fn values_in_either_quote_and_the_end_of_the_tag() {
        let tag = "<address type='pci' bus = \"0x01\"\n slot='a>b'/>";
        let (list, end) = attrs(tag).unwrap();
        assert_eq!(
            list,
            [("type", "pci", '\''), ("bus", "0x01", '"'), ("slot", "a>b", '\'')]
        );
        assert_eq!(&tag[end..], "/>");
        let (list, end) = attrs("<devices>").unwrap();
        assert!(list.is_empty());
        assert_eq!(end, 8);
        assert!(attrs("<a x.y-z:w='1' _b=''>").is_ok());
        let mut out = Vec::new();
        read("<a p='x \"y\"' r='&amp;' n='a\nb' q=\"it's\"/>", 0, &mut out).unwrap();
        let plain: Vec<bool> = out.iter().map(|a| a.plain).collect();
        assert_eq!(plain, [true, false, false, true]);
    }

    #[test]
    fn what_xml_refuses_is_refused_with_where() {
        for (tag, detail) in [
            ("<a bus='1'slot='2'/>", "separated by white space"),
            ("<a bus='1'=slot='2'/>", "separated by white space"),
            ("<a bus='1' =slot='2'/>", "'' is not an attribute name"),
            ("<a 1bus='1'/>", "'1bus' is not an attribute name"),
            ("<a bus/>", "attribute 'bus' has no '='"),
            ("<a bus=1/>", "value of attribute 'bus' is not quoted"),
            ("<a bus='1/>", "never closed"),
            ("<a bus='<'/>", "'<' in the value"),
            ("<a bus='1' bus='2'/>", "attribute 'bus' is given twice"),
            ("<a bus='1'/ >", "'/' in a start tag is not followed by '>'"),
            ("<a bus='1'", "start tag is never closed"),
        ] {
            let err = attrs(tag).unwrap_err();
            assert!(err.detail.contains(detail), "{tag}: {}", err.detail);
            assert!(err.offset <= tag.len(), "{tag}");
        }
    }

    #[test]
    fn a_name_repeated_among_many_attributes_is_found_too() {
        let many = |repeat: Option<usize>| {
            let names: Vec<String> = (0..100)
                .map(|n| format!(" a{}='{n}'", repeat.filter(|_| n == 90).unwrap_or(n)))
                .collect();
            format!("<x{}/>", names.concat())
        };
        let distinct = many(None);
        assert_eq!(attrs(&distinct).unwrap().0.len(), 100);
        let tag = many(Some(7));
        let err = attrs(&tag).unwrap_err();
        assert_eq!(err.detail, "attribute 'a7' is given twice");
        assert!(tag[..err.offset].ends_with(" a7='"), "{}", &tag[..err.offset]);
    }
}
