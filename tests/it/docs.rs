//! The rules tables in docs/rules.md and README.md are the catalogue's: one row per rule, in
//! catalogue order, with its id, severity and summary as `phbguard rules` prints them.
//!
//! `PHBGUARD_BLESS=1 cargo test --test it docs::` rewrites both tables from the catalogue.

use crate::support;

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
    let bless = std::env::var_os("PHBGUARD_BLESS").is_some();
    let want = catalogue_rows();
    for doc in ["docs/rules.md", "README.md"] {
        let path = support::repo().join(doc);
        let text = std::fs::read_to_string(&path).unwrap();
        let rows = table_rows(&text);
        let mut lines: Vec<&str> = text.lines().collect();
        if bless {
            lines.splice(rows, want.iter().map(String::as_str));
            std::fs::write(&path, lines.join("\n") + "\n").unwrap();
            continue;
        }
        assert_eq!(
            lines[rows], want,
            "{doc}: the rules table differs from the catalogue (PHBGUARD_BLESS=1 rewrites it)"
        );
    }
}
