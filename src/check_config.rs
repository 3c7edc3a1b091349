//! `phbguard check-config [FILE]`: the policy file's problems, one `FILE:LINE: PROBLEM` line
//! each, exit 2 if there is any. The RPM's %post runs it on the installed file, so a mistake
//! is seen at install time rather than in the first guest start's log.

use phbguard_cli::command::CheckConfigArgs;
use phbguard_cli::{EXIT_BAD_INPUT, EXIT_OK, output};

/// Exit 0 when the file is valid (or the default file is absent), 2 on any problem.
pub fn run(args: &CheckConfigArgs) -> anyhow::Result<u8> {
    let policy = phbguard_io::policy_file::read(args.file.clone());
    let path = policy.path.display();
    if policy.in_doubt() {
        for problem in &policy.problems {
            eprintln!(
                "phbguard: {}",
                phbguard_core::escape::controls(&problem.to_string())
            );
        }
        let n = policy.problems.len();
        eprintln!(
            "phbguard: policy file {path}: {n} problem{}; {}",
            if n == 1 { "" } else { "s" },
            policy.applied()
        );
        return Ok(EXIT_BAD_INPUT);
    }
    let text = if policy.found {
        format!("{path}: valid; {}\n", policy.applied())
    } else {
        format!(
            "{path}: absent: the built-in defaults apply; {}\n",
            policy.applied()
        )
    };
    output::print(&text, EXIT_OK)
}
