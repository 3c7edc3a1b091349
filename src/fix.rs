//! `phbguard fix`: rewrite files, show or write the results, and say with the exit code
//! whether they now keep the rules.

use std::io::{self, Write};
use std::path::Path;

use phbguard_core::fix::{Fixed, Options, fix};
use phbguard_core::host::Sysfs;
use phbguard_core::input::load;
use phbguard_core::model::Domain;
use phbguard_core::replace::replace_file;
use phbguard_core::report::json;
use serde_json::{Value, json};

use crate::cli::{FixArgs, Format};
use crate::{EXIT_BAD_INPUT, EXIT_FINDINGS, EXIT_OK, output};

pub fn run(args: &FixArgs) -> u8 {
    // Fixed XML on stdout is one document: with several files it would be one unusable stream.
    let prints_xml = args.format == Format::Text && !args.diff && !args.in_place;
    if prints_xml && args.files.len() > 1 {
        eprintln!(
            "phbguard fix: {} files: the fixed XML of only one can go to stdout; use \
             --in-place (-i) to rewrite them, --diff to see the changes, or --format json",
            args.files.len()
        );
        return EXIT_BAD_INPUT;
    }
    if args.in_place && args.files.iter().any(|f| f == "-") {
        eprintln!("phbguard fix: --in-place needs a file, not standard input");
        return EXIT_BAD_INPUT;
    }
    if args.files.iter().filter(|f| *f == "-").count() > 1 {
        eprintln!("phbguard fix: standard input ('-') can be read only once");
        return EXIT_BAD_INPUT;
    }
    let host = Sysfs::new(&args.sysfs_root);
    let mut out = io::stdout().lock();
    // Each file on its own; the exit code is the worst outcome: bad input, then unfixable.
    let mut code = EXIT_OK;
    for file in &args.files {
        let (file_code, text) = fix_one(args, &host, file);
        code = worst(code, file_code);
        let written = out.write_all(text.as_bytes()).and_then(|()| out.flush());
        let written = output::finish(written, file_code);
        if written != file_code {
            return written;
        }
    }
    code
}

/// The more serious of two exit codes (2 bad input before 1 unfixable before 0).
fn worst(a: u8, b: u8) -> u8 {
    let rank = |c: u8| match c {
        EXIT_BAD_INPUT => 2,
        EXIT_FINDINGS => 1,
        _ => 0,
    };
    if rank(b) > rank(a) { b } else { a }
}

/// Fixes one file: its exit code and what goes to stdout for it.
fn fix_one(args: &FixArgs, host: &Sysfs, file: &str) -> (u8, String) {
    let json_error = |error: &str| match args.format {
        Format::Json => format!("{}\n", json::unreadable(file, error)),
        Format::Text => String::new(),
    };
    let (bytes, domain) = match load(file) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("phbguard: {file}: {e}");
            return (EXIT_BAD_INPUT, json_error(&e.to_string()));
        }
    };
    // The parser accepted it, so it is UTF-8.
    let input = String::from_utf8_lossy(&bytes);
    let options = Options {
        assign_unaddressed: args.assign_addresses,
    };
    let fixed = match fix(&input, &domain, host, options) {
        Ok(fixed) => fixed,
        Err(e) => {
            eprintln!("phbguard: {file}: {e}");
            return (EXIT_FINDINGS, json_error(&e.to_string()));
        }
    };
    let changes: Vec<String> = fixed.plan.changes.iter().map(|c| c.describe(&domain)).collect();
    let text_report = args.format == Format::Text && !args.quiet;
    if text_report {
        for change in &changes {
            eprintln!("phbguard: {file}: {change}");
        }
    }
    let problems = fixed.problems();
    for problem in &problems {
        eprintln!("phbguard: {file}: cannot fix: {problem}");
    }
    let code = if fixed.is_clean() { EXIT_OK } else { EXIT_FINDINGS };
    let changed = fixed.output != input;
    // Silence on stderr would leave "did it do anything?" open.
    if text_report && fixed.is_clean() && !changed {
        eprintln!("phbguard: {file}: already compliant, nothing to change");
    }
    if fixed.is_clean() && args.in_place && changed {
        if let Err(e) = replace_file(Path::new(file), fixed.output.as_bytes()) {
            eprintln!("phbguard: {file}: not rewritten, {e}");
            return (EXIT_BAD_INPUT, json_error(&format!("not rewritten, {e}")));
        }
    }
    let text = match args.format {
        Format::Json => format!(
            "{}\n",
            report(file, &domain, &fixed, changed, &changes, &problems)
        ),
        // Nothing but the reasons when the result would still break a rule.
        _ if !fixed.is_clean() => String::new(),
        // With --in-place too: the diff shows what was written.
        _ if args.diff => diff(file, &input, &fixed.output),
        _ if args.in_place => String::new(),
        _ => fixed.output.clone(),
    };
    (code, text)
}

fn diff(file: &str, before: &str, after: &str) -> String {
    similar::TextDiff::from_lines(before, after)
        .unified_diff()
        .context_radius(3)
        .header(file, file)
        .to_string()
}

fn report(
    file: &str,
    domain: &Domain,
    fixed: &Fixed,
    changed: bool,
    changes: &[String],
    problems: &[String],
) -> Value {
    use phbguard_core::fix::Change;
    let changes: Vec<Value> = fixed
        .plan
        .changes
        .iter()
        .zip(changes)
        .map(|(change, summary)| match *change {
            Change::Move { device, from, to } => {
                json!({"kind": "move", "device": domain.devices[device].name(), "from": from.map(|a| a.to_string()),
                       "to": to.to_string(), "summary": summary})
            }
            Change::AddPhb { index, target, node } => {
                json!({"kind": "add-phb", "index": index, "target": target, "node": node, "summary": summary})
            }
            Change::Retarget { index, from, to, .. } => {
                json!({"kind": "retarget", "index": index, "from": from, "to": to, "summary": summary})
            }
            Change::RemoveController { index, .. } => {
                json!({"kind": "remove-controller", "index": index, "summary": summary})
            }
        })
        .collect();
    json!({
        "file": file,
        "domain": domain.name,
        "uuid": domain.uuid,
        "pseries": domain.is_pseries(),
        "fixed": fixed.is_clean(),
        "changed": changed,
        "changes": changes,
        "problems": problems,
    })
}
