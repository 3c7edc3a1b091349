//! The unified diff of a rewrite, as `fix --diff` and `fix --domain` show it (`patch -p0`
//! applies the one of a file).

/// A unified diff from `before` to `after` with three lines of context, both sides labelled
/// `label`; empty when they are equal.
pub fn unified(label: &str, before: &str, after: &str) -> String {
    similar::TextDiff::from_lines(before, after)
        .unified_diff()
        .context_radius(3)
        .header(label, label)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_changed_line_with_its_context_and_labels() {
        let before = "a\nb\nc\nd\ne\nf\ng\nh\n";
        let after = "a\nb\nc\nd\nE\nf\ng\nh\n";
        assert_eq!(
            unified("x.xml", before, after),
            "--- x.xml\n+++ x.xml\n@@ -2,7 +2,7 @@\n b\n c\n d\n-e\n+E\n f\n g\n h\n"
        );
        assert_eq!(unified("x.xml", before, before), "");
    }
}
