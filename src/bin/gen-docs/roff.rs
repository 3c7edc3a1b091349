//! The hand-written parts of the man pages as data, and their rendering to roff (escaping is
//! the roff crate's, through clap_mangen).

use clap_mangen::roff::{Inline, Roff, bold, roman};

/// A man page section: paragraphs (an indented one is an example, lines kept), then tagged
/// paragraphs (term in bold, then text).
pub struct Section {
    pub heading: &'static str,
    pub intro: &'static str,
    pub items: &'static [(&'static str, &'static str)],
}

impl Section {
    pub fn render(&self, roff: &mut Roff) {
        roff.control("SH", [self.heading]);
        for paragraph in self.intro.split("\n\n").filter(|p| !p.is_empty()) {
            if paragraph.starts_with("  ") {
                // Indented: an example, its lines kept as they are.
                roff.control("PP", []).control("RS", []).control("nf", []);
                for line in paragraph.lines() {
                    roff.text([roman(line.trim_start())]);
                }
                roff.control("fi", []).control("RE", []);
            } else {
                roff.control("PP", []).text(inlines(paragraph));
            }
        }
        for (term, text) in self.items {
            roff.control("TP", []).text([bold(*term)]);
            for (i, paragraph) in text.split("\n\n").enumerate() {
                if i > 0 {
                    // A second paragraph of the same item, indented like the first.
                    roff.control("IP", []);
                }
                roff.text(inlines(paragraph));
            }
        }
    }
}

/// Text with `*bold*` spans (commands, options, keys), spaces and line breaks collapsed.
fn inlines(text: &str) -> Vec<Inline> {
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut out = Vec::new();
    let mut parts = text.split('*');
    while let Some(plain) = parts.next() {
        out.push(roman(plain));
        if let Some(strong) = parts.next() {
            out.push(bold(strong));
        }
    }
    out
}
