//! `phbguard fix`: rewrite files, show or write the results, and say with the exit code
//! whether they now keep the rules.

use std::io::{self, Write};
use std::path::Path;

use anyhow::{Context, bail};
use phbguard_cli::command::{FixArgs, Format};
use phbguard_cli::{EXIT_BAD_INPUT, EXIT_FINDINGS, EXIT_OK, output};
use phbguard_core::fix::{Options, fix};
use phbguard_core::report::{diff, json};
use phbguard_io::input::load;
use phbguard_io::replace::{self, replace_file};
use phbguard_io::sysfs::Sysfs;

/// One line on stderr; text from the document (device names, values) or a file name may hold
/// control characters, which are escaped.
fn say(line: &str) {
    eprintln!("{}", phbguard_core::escape::controls(line));
}

/// Fixes every file, each on its own. An `Err` is usage (exit 2); a file that cannot be read or
/// replaced is reported and counts as exit 2, one that cannot be fixed as exit 1, and the worst
/// file decides the exit code.
pub fn run(args: &FixArgs) -> anyhow::Result<u8> {
    // Fixed XML on stdout is one document: with several files it would be one unusable stream.
    let prints_xml = args.format == Format::Text && !args.diff && !args.in_place;
    if prints_xml && args.files.len() > 1 {
        bail!(
            "{} files: the fixed XML of only one can go to stdout; use --in-place (-i) to \
             rewrite them, --diff to see the changes, or --format json",
            args.files.len()
        );
    }
    if args.in_place && args.files.iter().any(|f| f == "-") {
        bail!("--in-place needs a file, not standard input");
    }
    if args.files.iter().filter(|f| *f == "-").count() > 1 {
        bail!("standard input ('-') can be read only once");
    }
    if let Some(suffix) = args.backup.as_deref()
        && (suffix.is_empty() || suffix.contains('/'))
    {
        bail!("--backup={suffix:?}: the suffix must be non-empty and without '/'");
    }
    let host = phbguard_cli::sysfs_root(args.sysfs_root.as_deref().unwrap_or(Path::new("/sys")))?;
    let mut out = io::stdout().lock();
    let mut code = EXIT_OK;
    for file in &args.files {
        let (file_code, text) = match fix_one(args, &host, file) {
            Ok(done) => done,
            Err(err) => {
                let entry = match args.format {
                    Format::Json => format!("{}\n", json::unreadable(file, &format!("{err:#}"))),
                    Format::Text => String::new(),
                };
                output::error(&err.context(file.clone()));
                (EXIT_BAD_INPUT, entry)
            }
        };
        code = worst(code, file_code);
        output::finish(out.write_all(text.as_bytes()).and_then(|()| out.flush()), code)?;
    }
    Ok(code)
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

/// Fixes one file: its exit code and what goes to stdout for it. An `Err` (the file is not
/// named in it) is bad input or a file that could not be replaced.
fn fix_one(args: &FixArgs, host: &Sysfs, file: &str) -> anyhow::Result<(u8, String)> {
    let (bytes, domain) = load(file)?;
    // The parser accepted it, so it is UTF-8.
    let input = String::from_utf8_lossy(&bytes);
    let options = Options {
        assign_unaddressed: args.assign_addresses,
        raise_hard_limit: args.raise_hard_limit,
        spare_phbs: args.spare_phbs.unwrap_or(0),
    };
    let fixed = match fix(&input, &domain, host, options) {
        Ok(fixed) => fixed,
        Err(e) => {
            let err = anyhow::Error::new(e);
            let entry = match args.format {
                Format::Json => format!("{}\n", json::unreadable(file, &format!("{err:#}"))),
                Format::Text => String::new(),
            };
            output::error(&err.context(file.to_string()));
            return Ok((EXIT_FINDINGS, entry));
        }
    };
    let text_report = args.format == Format::Text && !args.quiet;
    let list_changes = || {
        if text_report {
            for change in &fixed.plan.changes {
                say(&format!("phbguard: {file}: {}", change.describe(&domain)));
            }
        }
    };
    if !args.in_place {
        list_changes();
    }
    for problem in fixed.problems() {
        // FILE:LINE, as findings are reported.
        let at = problem.line.map(|l| format!(":{l}")).unwrap_or_default();
        say(&format!("phbguard: {file}{at}: cannot fix: {problem}"));
    }
    let notes = fixed.host_notes();
    for note in &notes {
        let at = note.line.map(|l| format!(":{l}")).unwrap_or_default();
        say(&format!("phbguard: {file}{at}: note: {note}"));
    }
    // Fewer spares than asked for still keeps every rule: said (JSON has it), not an error.
    if args.format == Format::Text
        && let Some(short) = fixed.plan.spares.shortfall()
    {
        say(&format!("phbguard: {file}: warning: {short}"));
    }
    let code = if fixed.is_clean() { EXIT_OK } else { EXIT_FINDINGS };
    let changed = fixed.output != input;
    // Silence on stderr would leave "did it do anything?" open.
    if text_report && fixed.is_clean() && !changed {
        let what = if notes.is_empty() {
            "already compliant, nothing to change"
        } else {
            "nothing to change in the definition"
        };
        say(&format!("phbguard: {file}: {what}"));
    }
    if args.in_place {
        if fixed.is_clean() && changed {
            let options = replace::Options {
                backup_suffix: args.backup.as_deref(),
            };
            // Nothing was written on an error, so no change is listed as made.
            replace_file(Path::new(file), &bytes, fixed.output.as_bytes(), options)
                .context("not rewritten")?;
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
        _ if args.diff => diff::unified(file, &input, &fixed.output),
        _ if args.in_place => String::new(),
        _ => fixed.output.clone(),
    };
    Ok((code, text))
}
