//! What the compiler and clippy cannot check in the sources. A doc comment sits on its item:
//! a blank line after it is ignored by rustc, and clippy's empty_line_after_doc_comments does
//! not see one before an attribute (`#[derive]`). A comment says why, not how the code came to
//! be: no issue numbers, no account of who found what (docs/fuzzing.md is where findings are
//! told).

use crate::support;

/// Each Rust source of the project, with its path relative to the repository.
fn sources() -> Vec<(String, String)> {
    support::repo_files()
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            let rel = p.strip_prefix(support::repo()).unwrap().display().to_string();
            (rel, text)
        })
        .collect()
}

#[test]
fn no_blank_line_between_a_doc_comment_and_its_item() {
    let mut found = Vec::new();
    for (file, text) in sources() {
        let lines: Vec<&str> = text.lines().collect();
        for (i, pair) in lines.windows(2).enumerate() {
            if pair[0].trim_start().starts_with("///") && pair[1].trim().is_empty() {
                found.push(format!("{file}:{}", i + 1));
            }
        }
    }
    assert!(
        found.is_empty(),
        "doc comments cut off from their item: {found:#?}"
    );
}

#[test]
fn comments_say_why_not_history() {
    // Lower case; each as a comment would word it.
    const HISTORY: &[&str] = &["found by fuzz", "found in review", "once silently", "issue #"];
    let mut found = Vec::new();
    for (file, text) in sources() {
        for (i, line) in text.lines().enumerate() {
            let Some((_, comment)) = line.split_once("//") else {
                continue;
            };
            let comment = comment.to_lowercase();
            let issue_number = comment
                .match_indices("issue ")
                .any(|(at, _)| comment[at + 6..].starts_with(|c: char| c.is_ascii_digit()));
            if issue_number || HISTORY.iter().any(|h| comment.contains(h)) {
                found.push(format!("{file}:{}: {}", i + 1, line.trim()));
            }
        }
    }
    assert!(found.is_empty(), "history in comments: {found:#?}");
}
