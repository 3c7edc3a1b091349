//! Every document is readable from the repository alone: each relative link in a `*.md` file
//! names a file (and heading) that exists here, and no file points outside the project to where
//! its facts were first written down.

use crate::support;

use std::collections::BTreeSet;
use std::path::PathBuf;

fn markdown_files() -> Vec<PathBuf> {
    support::repo_files()
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect()
}

/// The link targets of a markdown text, outside code blocks and code spans: `[text](target)`
/// and `[label]: target`.
fn links(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        let line = without_code_spans(line);
        if let Some(rest) = line.trim_start().strip_prefix('[')
            && let Some((_, target)) = rest.split_once("]:")
        {
            out.push(target.trim().to_string());
        }
        let mut rest = line.as_str();
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let Some(end) = after.find(')') else { break };
            out.push(after[..end].trim().to_string());
            rest = &after[end..];
        }
    }
    out
}

fn without_code_spans(line: &str) -> String {
    line.split('`')
        .enumerate()
        .filter(|(i, _)| i % 2 == 0)
        .map(|(_, part)| part)
        .collect::<Vec<_>>()
        .join(" ")
}

/// GitHub's anchor of a heading: lower case, punctuation dropped, spaces to dashes.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

fn anchors(text: &str) -> BTreeSet<String> {
    let mut fenced = false;
    let mut out = BTreeSet::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        } else if !fenced && line.starts_with('#') {
            out.insert(anchor(line.trim_start_matches('#')));
        }
    }
    out
}

fn is_external(target: &str) -> bool {
    ["http://", "https://", "mailto:"]
        .iter()
        .any(|scheme| target.starts_with(scheme))
}

#[test]
fn every_relative_link_in_the_docs_resolves_inside_the_repository() {
    let repo = support::repo().canonicalize().unwrap();
    let mut broken = Vec::new();
    let mut checked = 0;
    for doc in markdown_files() {
        let text = std::fs::read_to_string(&doc).unwrap();
        for target in links(&text) {
            if is_external(&target) || target.is_empty() {
                continue;
            }
            checked += 1;
            let (path, fragment) = match target.split_once('#') {
                Some((path, fragment)) => (path, Some(fragment)),
                None => (target.as_str(), None),
            };
            let resolved = if path.is_empty() {
                doc.clone()
            } else {
                doc.parent().unwrap().join(path)
            };
            let shown = format!("{}: {target}", doc.strip_prefix(&repo).unwrap_or(&doc).display());
            let Ok(real) = resolved.canonicalize() else {
                broken.push(format!("{shown} (no such file)"));
                continue;
            };
            if !real.starts_with(&repo) {
                broken.push(format!("{shown} (outside the repository)"));
                continue;
            }
            if let Some(fragment) = fragment {
                let text = std::fs::read_to_string(&real).unwrap_or_default();
                if !anchors(&text).contains(fragment) {
                    broken.push(format!("{shown} (no such heading)"));
                }
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
    assert!(
        checked > 10,
        "only {checked} links found: is the parser still right?"
    );
}

#[test]
fn nothing_points_outside_the_project() {
    // The shared notes this project's facts were first collected in are not part of it:
    // what it relies on is in docs/libvirt.md and tests/corpus/libvirt.
    let forbidden = [
        "../shared",
        "/work/shared",
        "shared/corpus",
        "libvirt-behaviour.md",
    ];
    let this_file = support::repo().join("tests/it/doc_links.rs");
    let mut found = Vec::new();
    for file in support::repo_files() {
        if file == this_file {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue; // not text
        };
        for (n, line) in text.lines().enumerate() {
            if forbidden.iter().any(|f| line.contains(f)) {
                found.push(format!("{}:{}: {line}", file.display(), n + 1));
            }
        }
    }
    assert!(found.is_empty(), "{}", found.join("\n"));
}

#[test]
fn the_link_parser_finds_links_and_skips_code() {
    let text = "See [a](a.md) and [b](docs/b.md#x).\n`[c](c.md)`\n```\n[d](d.md)\n```\n[e]: e.md\n";
    assert_eq!(links(text), ["a.md", "docs/b.md#x", "e.md"]);
    assert_eq!(anchor("The qemu hook"), "the-qemu-hook");
    assert_eq!(
        anchor(" Isolation groups: where libvirt places devices"),
        "isolation-groups-where-libvirt-places-devices"
    );
    assert_eq!(anchor("`phbguard check`"), "phbguard-check");
}
