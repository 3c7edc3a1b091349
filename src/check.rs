//! `phbguard check`: judge files, report, and say with the exit code what was found.

use std::io::{self, IsTerminal, Write};

use phbguard_cli::command::{CheckArgs, Format};
use phbguard_cli::{EXIT_BAD_INPUT, EXIT_FINDINGS, EXIT_OK, output};
use phbguard_core::host::Facts;
use phbguard_core::report::{Judged, json, text};
use phbguard_core::rules::has_errors;
use phbguard_io::input::load;

/// Judges every file; one that cannot be read is reported and the others still are (exit 2).
pub fn run(args: &CheckArgs) -> anyhow::Result<u8> {
    let host = phbguard_cli::sysfs_root(&args.sysfs_root)?;
    let mut judged = Vec::with_capacity(args.files.len());
    // Per file in command-line order: the index into `judged`, or why it could not be read.
    let mut outcomes = Vec::with_capacity(args.files.len());
    let mut unreadable = 0;
    for file in &args.files {
        match load(file) {
            Ok((_, domain)) => {
                outcomes.push(Ok(judged.len()));
                let facts = Facts::gather(&domain, &host);
                let report = Judged::new(file, &domain, &facts);
                judged.push(match args.format {
                    Format::Json => report.with_topology(&domain, &facts),
                    Format::Text => report,
                });
            }
            Err(e) => {
                let err = anyhow::Error::new(e);
                // The JSON entry gets the reason; stderr names the file too.
                outcomes.push(Err(format!("{err:#}")));
                output::error(&err.context(file.clone()));
                unreadable += 1;
            }
        }
    }
    let code = if unreadable > 0 {
        EXIT_BAD_INPUT
    } else if judged.iter().any(|j| has_errors(&j.findings)) {
        EXIT_FINDINGS
    } else {
        EXIT_OK
    };
    let mut out = io::stdout().lock();
    let written = match args.format {
        Format::Json => {
            let entries: Vec<json::Entry> = args
                .files
                .iter()
                .zip(outcomes)
                .map(|(file, outcome)| match outcome {
                    Ok(i) => json::Entry::Judged(&judged[i]),
                    Err(error) => json::Entry::Unreadable { file, error },
                })
                .collect();
            writeln!(out, "{}", json::results(&entries))
        }
        Format::Text => write_text(&mut out, &judged, unreadable),
    };
    output::finish(written.and_then(|()| out.flush()), code)
}

fn write_text(out: &mut impl Write, judged: &[Judged], unreadable: usize) -> io::Result<()> {
    let style = text::Style {
        color: io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
    };
    for j in judged {
        text::write_findings(out, j, style)?;
    }
    text::write_summary(out, judged, unreadable)
}
