//! The rules tables in docs/rules.md and README.md are the catalogue's: one row per rule, in
//! catalogue order, with its id, severity and summary as `phbguard rules` prints them.
//!
//! `PHBGUARD_BLESS=1 cargo test --test it docs::` rewrites both tables from the catalogue (and
//! fails naming the files it changed: crates/testkit/src/golden.rs).

use crate::support::{self, golden};

use phbguard_core::rules::RULES;

fn catalogue_rows() -> Vec<String> {
    RULES
        .iter()
        .map(|r| format!("| `{}` | {} | {} |", r.id, r.severity, r.summary))
        .collect()
}

/// The rows of the table whose header is `| id | severity | fires when |`, as line numbers.
fn table_rows(text: &str) -> std::ops::Range<usize> {
    let lines: Vec<&str> = text.lines().collect();
    let header = lines
        .iter()
        .position(|l| *l == "| id | severity | fires when |")
        .expect("a rules table");
    let first = header + 2;
    let len = lines[first..].iter().take_while(|l| l.starts_with("| `")).count();
    first..first + len
}

#[test]
fn rules_tables_in_the_docs_are_the_catalogue() {
    let want = catalogue_rows();
    let mut failures = Vec::new();
    for doc in ["docs/rules.md", "README.md"] {
        let path = support::repo().join(doc);
        let text = std::fs::read_to_string(&path).unwrap();
        let mut lines: Vec<&str> = text.lines().collect();
        lines.splice(table_rows(&text), want.iter().map(String::as_str));
        // The document with the catalogue's table in place of its own: what it must be already.
        failures.extend(golden::check(&path, &(lines.join("\n") + "\n")).err());
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
