//! Golden files: expected output kept in the tree beside its input and compared byte for byte.
//!
//! `PHBGUARD_BLESS=1` rewrites every golden file that differs from what the code gives now,
//! for review, and the test then **fails** naming each rewritten file: a run with blessing on
//! passes only where the goldens were right already, never on what it just wrote. Any other
//! value of the variable (`0`, empty, `yes`) fails the test too, so that blessing is never
//! switched on, or off, by accident. scripts/test-all refuses to run with it set at all.

use std::path::Path;

/// The variable that turns blessing on, and the one value that does.
pub const BLESS_VAR: &str = "PHBGUARD_BLESS";
pub const BLESS_VALUE: &str = "1";

/// Whether this run rewrites golden files; panics on any value but [`BLESS_VALUE`].
pub fn blessing() -> bool {
    match std::env::var_os(BLESS_VAR) {
        None => false,
        Some(v) if v == BLESS_VALUE => true,
        Some(v) => panic!(
            "{BLESS_VAR}={v:?}: set it to {BLESS_VALUE} to rewrite the golden files, or unset it to \
             compare with them"
        ),
    }
}

/// Compares `got` with the golden file `path`. `Ok` when they are equal; otherwise what to
/// report: the difference, or (when blessing) that the file was rewritten.
pub fn check(path: &Path, got: &str) -> Result<(), String> {
    let want = std::fs::read_to_string(path);
    if want.as_deref().is_ok_and(|w| w == got) {
        return Ok(());
    }
    if blessing() {
        std::fs::write(path, got).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        return Err(format!(
            "{}: rewritten ({BLESS_VAR}={BLESS_VALUE}); review the diff, then run again without it",
            path.display()
        ));
    }
    Err(match want {
        Ok(want) => format!(
            "{}: differs from what the code gives now: {}",
            path.display(),
            difference(&want, got)
        ),
        Err(e) => format!(
            "{}: {e} ({BLESS_VAR}={BLESS_VALUE} creates it for review)",
            path.display()
        ),
    })
}

/// [`check`] for one golden file: fails the test on any difference.
pub fn assert_golden(path: &Path, got: &str) {
    if let Err(e) = check(path, got) {
        panic!("{e}");
    }
}

/// Both texts when they are short, else the first line that differs.
fn difference(want: &str, got: &str) -> String {
    if want.len() + got.len() < 4000 {
        return format!("\n--- expected\n{want}\n--- got\n{got}");
    }
    let (mut w, mut g) = (want.lines(), got.lines());
    for n in 1.. {
        match (w.next(), g.next()) {
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return "they differ only in line ends".into(),
            (a, b) => return format!("line {n}: expected {a:?}, got {b:?}"),
        }
    }
    unreachable!("texts differ")
}

/// `patch` applied to a copy of `input`: the diff must be one a person can apply.
pub fn apply_patch(input: &[u8], diff: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("domain.xml");
    std::fs::write(&target, input).unwrap();
    let mut child = std::process::Command::new("patch")
        .arg("--silent")
        .arg(&target)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("patch runs");
    child.stdin.take().unwrap().write_all(diff).unwrap();
    assert!(child.wait().unwrap().success(), "patch refused the diff");
    std::fs::read(&target).unwrap()
}

/// The diff a `.fix` golden file holds for a domain `fix` can fix (exit 0): what `fix --diff`
/// prints for it, pinned.
pub fn fix_diff(xml: &Path) -> String {
    let golden = xml.with_extension("fix");
    let text = std::fs::read_to_string(&golden).unwrap_or_else(|e| panic!("{}: {e}", golden.display()));
    assert!(
        text.starts_with("exit 0\n"),
        "{}: not a fixable domain",
        golden.display()
    );
    let at = text
        .find("\n--- ")
        .unwrap_or_else(|| panic!("{}: no diff", golden.display()));
    text[at + 1..].to_string()
}

/// What `fix` must make of `input`, a copy of the domain `xml` (or that domain with lines added
/// away from what the fix changes): its `.fix` golden file's diff applied to it.
pub fn fixed(xml: &Path, input: &[u8]) -> Vec<u8> {
    apply_patch(input, fix_diff(xml).as_bytes())
}
