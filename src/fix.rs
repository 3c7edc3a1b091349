//! `phbguard fix`: rewrite one file, show or write the result, and say with the exit code
//! whether it now keeps the rules.

use std::io::{self, Write};
use std::path::Path;

use phbguard_core::fix::{Fixed, Options, fix};
use phbguard_core::host::Sysfs;
use phbguard_core::input::load;
use phbguard_core::model::Domain;
use phbguard_core::replace::replace_file;
use serde_json::{Value, json};

use crate::cli::{FixArgs, Format};
use crate::{EXIT_BAD_INPUT, EXIT_FINDINGS, EXIT_OK, output};

/// One line on stderr; text from the document (values in an error, device names) or a file
/// name may hold control characters, which are escaped.
fn say(line: &str) {
    eprintln!("{}", phbguard_core::escape::controls(line));
}

pub fn run(args: &FixArgs) -> u8 {
    let file = args.file.as_deref().expect("clap requires FILE without --domain");
    if args.in_place && file == "-" {
        eprintln!("phbguard fix: --in-place needs a file, not standard input");
        return EXIT_BAD_INPUT;
    }
    let (bytes, domain) = match load(file) {
        Ok(loaded) => loaded,
        Err(e) => {
            say(&format!("phbguard: {file}: {e}"));
            return EXIT_BAD_INPUT;
        }
    };
    // The parser accepted it, so it is UTF-8.
    let input = String::from_utf8_lossy(&bytes);
    let host = Sysfs::new(args.sysfs_root.as_deref().unwrap_or(Path::new("/sys")));
    // A sysfs root that is not a directory would make every hostdev "not on this host".
    if let Err(e) = host.check_root() {
        eprintln!("phbguard: --sysfs-root: {e}");
        return EXIT_BAD_INPUT;
    }
    let options = Options {
        assign_unaddressed: args.assign_addresses,
    };
    let fixed = match fix(&input, &domain, &host, options) {
        Ok(fixed) => fixed,
        Err(e) => {
            say(&format!("phbguard: {file}: {e}"));
            return EXIT_FINDINGS;
        }
    };
    let changes: Vec<String> = fixed.plan.changes.iter().map(|c| c.describe(&domain)).collect();
    if args.format == Format::Text && !args.quiet {
        for change in &changes {
            say(&format!("phbguard: {file}: {change}"));
        }
    }
    let problems = fixed.problems();
    for problem in &problems {
        say(&format!("phbguard: {file}: cannot fix: {problem}"));
    }
    let code = if fixed.is_clean() { EXIT_OK } else { EXIT_FINDINGS };
    let changed = fixed.output != input;
    if fixed.is_clean() && args.in_place && changed {
        if let Err(e) = replace_file(Path::new(file), fixed.output.as_bytes()) {
            say(&format!("phbguard: {file}: not rewritten, {e}"));
            return EXIT_BAD_INPUT;
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
    let mut out = io::stdout().lock();
    output::finish(out.write_all(text.as_bytes()).and_then(|()| out.flush()), code)
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
