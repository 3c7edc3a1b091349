//! `phbguard-gen-docs OUT_DIR`: writes the man pages (`OUT_DIR/man/*.1`, one per visible
//! subcommand, and `phbguard.toml.5` for the policy file) and the bash, zsh and fish completions
//! (`OUT_DIR/completions/`) from the same clap definitions the `phbguard` binary parses with, so
//! they never drift from `--help`; phbguard(1)'s exit status, environment, files and examples,
//! and phbguard.toml(5), come from `pages.rs`.
//!
//! Run at package build time (packaging/phbguard.spec, `--features gen-docs`); not installed. It
//! is a binary of its own rather than a `phbguard` subcommand or a build script so that neither
//! the binary libvirt execs on every guest start nor every ordinary `cargo build` pays for
//! clap_mangen and clap_complete.

use std::path::PathBuf;
use std::process::ExitCode;

use clap_complete::Shell;

mod pages;
mod roff;

use clap_mangen::roff::Roff;

const BIN: &str = "phbguard";

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let (Some(out), None) = (args.next(), args.next()) else {
        eprintln!("usage: phbguard-gen-docs OUT_DIR");
        return ExitCode::from(2);
    };
    match generate(&PathBuf::from(out)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("phbguard-gen-docs: {e}");
            ExitCode::FAILURE
        }
    }
}

fn generate(out: &std::path::Path) -> std::io::Result<()> {
    let man = out.join("man");
    std::fs::create_dir_all(&man)?;
    // phbguard.1 plus phbguard-SUBCOMMAND.1 for every subcommand that --help lists; then
    // phbguard.1 again, with the sections clap knows nothing of.
    clap_mangen::generate_to(phbguard_cli::definition(), &man)?;
    std::fs::write(man.join("phbguard.1"), phbguard_1()?)?;
    std::fs::write(man.join("phbguard.toml.5"), phbguard_toml_5())?;

    let completions = out.join("completions");
    std::fs::create_dir_all(&completions)?;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, &mut phbguard_cli::definition(), BIN, &completions)?;
    }
    Ok(())
}

/// phbguard(1): clap's sections, then EXIT STATUS, ENVIRONMENT, FILES, EXAMPLES, SEE ALSO.
fn phbguard_1() -> std::io::Result<Vec<u8>> {
    let man = clap_mangen::Man::new(phbguard_cli::definition().disable_help_subcommand(true));
    let mut out = Vec::new();
    man.render_title(&mut out)?;
    man.render_name_section(&mut out)?;
    man.render_synopsis_section(&mut out)?;
    man.render_description_section(&mut out)?;
    man.render_options_section(&mut out)?;
    man.render_subcommands_section(&mut out)?;
    let mut extra = Roff::new();
    for section in pages::PHBGUARD_EXTRA {
        section.render(&mut extra);
    }
    extra.to_writer(&mut out)?;
    man.render_version_section(&mut out)?;
    Ok(out)
}

/// phbguard.toml(5), all of it from pages.rs.
fn phbguard_toml_5() -> String {
    let version = phbguard_cli::definition()
        .get_version()
        .unwrap_or_default()
        .to_string();
    let mut roff = Roff::new();
    roff.control(
        "TH",
        [
            "PHBGUARD.TOML",
            "5",
            "",
            &format!("phbguard {version}"),
            "File Formats",
        ],
    );
    roff.control("SH", ["NAME"]);
    roff.text([clap_mangen::roff::roman(pages::TOML_NAME)]);
    for section in pages::TOML {
        section.render(&mut roff);
    }
    roff.to_roff()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `phbguard --help` lists: every subcommand a user can type.
    fn visible_subcommands() -> Vec<String> {
        phbguard_cli::definition()
            .get_subcommands()
            .filter(|s| !s.is_hide_set())
            .map(|s| s.get_name().to_string())
            .collect()
    }

    fn generated() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        generate(dir.path()).unwrap();
        dir
    }

    #[test]
    fn every_visible_subcommand_has_a_man_page_and_completions() {
        let dir = generated();
        let subcommands = visible_subcommands();
        assert!(subcommands.len() >= 7, "{subcommands:?}");
        for name in &subcommands {
            let page = dir.path().join(format!("man/phbguard-{name}.1"));
            let text = std::fs::read_to_string(&page).unwrap_or_else(|e| panic!("{}: {e}", page.display()));
            assert!(text.lines().any(|l| l.starts_with(".TH ")), "{name}");
            for completion in ["phbguard.bash", "_phbguard", "phbguard.fish"] {
                let text = std::fs::read_to_string(dir.path().join("completions").join(completion)).unwrap();
                assert!(text.contains(name.as_str()), "{completion} lacks {name}");
            }
        }
        // phbguard.1 lists them all too.
        let main = std::fs::read_to_string(dir.path().join("man/phbguard.1")).unwrap();
        for name in &subcommands {
            assert!(
                main.contains(&format!("phbguard\\-{}", name.replace('-', "\\-"))),
                "{name}"
            );
        }
    }

    #[test]
    fn phbguard_1_says_what_each_exit_code_means_and_what_it_reads() {
        let dir = generated();
        let text = std::fs::read_to_string(dir.path().join("man/phbguard.1")).unwrap();
        let sections: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix(".SH ")).collect();
        for wanted in ["EXIT STATUS", "ENVIRONMENT", "FILES", "EXAMPLES", "SEE ALSO"] {
            assert!(
                sections.iter().any(|s| s.trim_matches('"') == wanted),
                "{wanted} missing: {sections:?}"
            );
        }
        // Each exit code is a tagged paragraph.
        for code in ["0", "1", "2"] {
            assert!(text.contains(&format!(".TP\n\\fB{code}\\fR")), "exit {code}");
        }
        for name in [
            "PHBGUARD_CONFIG",
            "LIBVIRT_DEFAULT_URI",
            "/etc/phbguard/phbguard.toml",
        ] {
            assert!(text.contains(name), "{name}");
        }
    }

    #[test]
    fn phbguard_toml_5_describes_every_key_of_the_packaged_policy_file() {
        let dir = generated();
        let page = std::fs::read_to_string(dir.path().join("man/phbguard.toml.5")).unwrap();
        assert!(page.starts_with(".TH PHBGUARD.TOML 5 "), "{page}");
        let packaged = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/phbguard.toml"),
        )
        .unwrap();
        let keys: Vec<&str> = packaged
            .lines()
            .filter_map(|l| l.trim_start_matches('#').split_once(" = "))
            .map(|(key, _)| key)
            .filter(|key| {
                key.chars()
                    .all(|c| c.is_ascii_lowercase() || c == '_' || c == '.')
            })
            .collect();
        assert!(keys.contains(&"watch.action"), "{keys:?}");
        assert!(keys.contains(&"mode"), "{keys:?}");
        for key in keys {
            // A key is the start of a tagged paragraph: `.TP` then the key in bold.
            let tag = format!(".TP\n\\fB{key} = ");
            assert!(page.contains(&tag), "phbguard.toml(5) does not describe {key}");
        }
        for section in ["KEYS", "MISTAKES", "EXAMPLES"] {
            assert!(page.contains(&format!(".SH {section}\n")), "{section}");
        }
    }

    /// The pages kept in docs/man, for an admin without the RPM (`man ./docs/man/phbguard.1`,
    /// or installed by hand: docs/admin.md), are what this generator writes from the command
    /// line now.
    #[test]
    fn the_pages_in_docs_man_are_what_this_generates() {
        const REGENERATE: &str = "rm -f docs/man/* && cargo run --features gen-docs --bin \
                                  phbguard-gen-docs -- target/gen-docs && cp target/gen-docs/man/* docs/man/";
        let dir = generated();
        let generated = dir.path().join("man");
        let tree = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/man");
        let names = |d: &std::path::Path| {
            let mut names: Vec<String> = std::fs::read_dir(d)
                .unwrap_or_else(|e| panic!("{}: {e}", d.display()))
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            names
        };
        assert_eq!(
            names(&tree),
            names(&generated),
            "docs/man is out of date: {REGENERATE}"
        );
        for name in names(&generated) {
            let want = std::fs::read_to_string(generated.join(&name)).unwrap();
            let have = std::fs::read_to_string(tree.join(&name)).unwrap();
            assert!(have == want, "docs/man/{name} is out of date: {REGENERATE}");
        }
    }
}
