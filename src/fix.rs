//! `phbguard fix`: rewrite one file, show or write the result, and say with the exit code
//! whether it now keeps the rules.

use std::io::{self, Write};
use std::path::Path;

use anyhow::{Context, bail};
use phbguard_core::fix::{Options, fix};
use phbguard_core::host::Sysfs;
use phbguard_core::input::load;
use phbguard_core::replace::{self, replace_file};
use phbguard_core::report::json;

use crate::cli::{FixArgs, Format};
use crate::{EXIT_FINDINGS, EXIT_OK, output};

/// One line on stderr; text from the document (device names, values) or a file name may hold
/// control characters, which are escaped.
fn say(line: &str) {
    eprintln!("{}", phbguard_core::escape::controls(line));
}

/// Fixes one file. An `Err` is bad input or usage (exit 2); what cannot be fixed is exit 1.
pub fn run(args: &FixArgs) -> anyhow::Result<u8> {
    let file = args.file.as_deref().expect("clap requires FILE without --domain");
    if args.in_place && file == "-" {
        bail!("--in-place needs a file, not standard input");
    }
    if let Some(suffix) = args.backup.as_deref()
        && (suffix.is_empty() || suffix.contains('/'))
    {
        bail!("--backup={suffix:?}: the suffix must be non-empty and without '/'");
    }
    let (bytes, domain) = load(file).with_context(|| file.to_string())?;
    // The parser accepted it, so it is UTF-8.
    let input = String::from_utf8_lossy(&bytes);
    let host = Sysfs::new(args.sysfs_root.as_deref().unwrap_or(Path::new("/sys")));
    // A sysfs root that is not a directory would make every hostdev "not on this host".
    host.check_root()
        .map_err(|e| anyhow::anyhow!("--sysfs-root: {e}"))?;
    let options = Options {
        assign_unaddressed: args.assign_addresses,
    };
    let fixed = match fix(&input, &domain, &host, options) {
        Ok(fixed) => fixed,
        Err(e) => {
            output::error(&anyhow::Error::new(e).context(file.to_string()));
            return Ok(EXIT_FINDINGS);
        }
    };
    let list_changes = || {
        if args.format == Format::Text && !args.quiet {
            for change in &fixed.plan.changes {
                say(&format!("phbguard: {file}: {}", change.describe(&domain)));
            }
        }
    };
    if !args.in_place {
        list_changes();
    }
    for problem in fixed.problems() {
        say(&format!("phbguard: {file}: cannot fix: {problem}"));
    }
    let code = if fixed.is_clean() { EXIT_OK } else { EXIT_FINDINGS };
    let changed = fixed.output != input;
    if args.in_place {
        if fixed.is_clean() && changed {
            let options = replace::Options {
                backup_suffix: args.backup.as_deref(),
            };
            // Nothing was written on an error, so no change is listed as made.
            replace_file(Path::new(file), &bytes, fixed.output.as_bytes(), options)
                .with_context(|| format!("{file}: not rewritten"))?;
            // Listed only now that they are in the file.
            list_changes();
        } else if let Ok(target) = std::fs::canonicalize(file)
            && let Some(dir) = target.parent()
        {
            // A killed earlier run's leftovers go even when this run writes nothing.
            replace::remove_dead_temporaries(dir);
        }
    }
    let text = match args.format {
        Format::Json => format!("{}\n", json::fixed(file, &domain, &fixed, changed)),
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
