//! The hook's command line, as libvirt and the kernel give it: `[OPTIONS] [SCRIPT] DOMAIN OP
//! SUBOP EXTRA`, either after `phbguard hook` or split from a `#!` line. Read by hand, not by
//! clap: the last four arguments are a domain name and libvirt's op words, which must never be
//! read as a subcommand or an option (a domain may be named `check` or `--help`), and this is
//! the hot path, where no clap parser is built.

use std::ffi::OsString;
use std::path::PathBuf;

use phbguard_core::escape::controls;

/// Why the arguments are not a hook call at all (fewer than libvirt's four): a person typed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArgsError {
    Help,
    Usage(String),
}

/// One call from libvirt: the last four arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub domain: String,
    pub op: String,
    pub subop: String,
    pub extra: String,
}

/// What came before the four: options from the `#!` line (or a person's command line).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    pub config: Option<PathBuf>,
    /// The hook file's own path, which the kernel passes when it runs the `#!` line.
    pub script: Option<OsString>,
}

/// A mistake in the hook's setup: where, and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mistake {
    pub place: String,
    pub detail: String,
}

/// How the process was asked to be the hook: its arguments from there on, whether they came
/// from a `#!` line, and a mistake in that line already seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    pub args: Vec<OsString>,
    pub shebang: bool,
    pub mistake: Option<Mistake>,
}

/// Whether `argv` (without the program name) is a hook call, and how; `None` for every other
/// command, which clap then parses.
pub fn invocation(argv: &[OsString]) -> Option<Invocation> {
    let first = argv.first()?;
    if first == "hook" {
        return Some(Invocation {
            args: argv[1..].to_vec(),
            shebang: false,
            mistake: None,
        });
    }
    // '#!/usr/bin/phbguard hook --config=FILE': Linux passes everything after the interpreter
    // as one argument, so its words are split here (no quoting).
    let words = first.to_str().map(|f| f.split_whitespace().collect::<Vec<_>>());
    if let Some(["hook", options @ ..]) = words.as_deref() {
        let mut args: Vec<OsString> = options.iter().map(Into::into).collect();
        args.extend_from_slice(&argv[1..]);
        return Some(Invocation {
            args,
            shebang: true,
            mistake: None,
        });
    }
    // A '#!' line run by libvirt without 'hook' in its place ('hooks', nothing, 'check'):
    // still a hook call, never a usage error that would stop a guest at 'reconnect begin'.
    if !libvirt_hook_call(argv) {
        return None;
    }
    let script = argv.len() - 5;
    let detail = if script == 0 {
        "the '#!' line runs phbguard without 'hook'".to_owned()
    } else {
        format!(
            "'{}' on the '#!' line is not 'hook'",
            controls(&first.to_string_lossy())
        )
    };
    Some(Invocation {
        args: argv[script..].to_vec(),
        shebang: true,
        mistake: Some(Mistake {
            place: format!("{}:1", argv[script].to_string_lossy()),
            detail,
        }),
    })
}

/// Whether argv ends as libvirt's qemu hook calls do: `SCRIPT DOMAIN OP SUBOP EXTRA`, the
/// script in a libvirt hooks directory and OP one of libvirt's qemu hook ops (libvirt's
/// src/util/virhook.c, virHookQemuOpType). No command line of a person looks like that.
fn libvirt_hook_call(argv: &[OsString]) -> bool {
    const OPS: &[&str] = &[
        "prepare",
        "start",
        "started",
        "stopped",
        "release",
        "migrate",
        "restore",
        "reconnect",
        "attach",
    ];
    let n = argv.len();
    n >= 5
        && argv[n - 5].to_string_lossy().contains("/hooks/")
        && OPS.iter().any(|op| argv[n - 3] == *op)
        && ["begin", "end", "-"].iter().any(|s| argv[n - 2] == *s)
}

/// Splits `[OPTIONS] [SCRIPT] DOMAIN OP SUBOP EXTRA`. libvirt always passes exactly four
/// arguments (missing ones are `-`), so the *last four* are the call whatever they look like:
/// a domain named `check`, `--help` or `-` is a domain.
pub fn split_call(args: &[OsString]) -> Result<(&[OsString], Call), ArgsError> {
    if args.len() < 4 {
        if args.iter().any(|a| a == "--help" || a == "-h") {
            return Err(ArgsError::Help);
        }
        return Err(ArgsError::Usage(format!(
            "expected DOMAIN OP SUBOP EXTRA (libvirt always passes all four), got {} argument{}",
            args.len(),
            if args.len() == 1 { "" } else { "s" }
        )));
    }
    let (options, call) = args.split_at(args.len() - 4);
    let s = |i: usize| call[i].to_string_lossy().into_owned();
    Ok((
        options,
        Call {
            domain: s(0),
            op: s(1),
            subop: s(2),
            extra: s(3),
        },
    ))
}

/// Reads the options. `shebang`: they came from a `#!` line (Linux passed its words as one
/// argument, split by [`invocation`]), so the kernel's script path is the last of them for
/// sure and can never be taken for the value of a `--config` written without one.
pub fn parse_options(words: &[OsString], shebang: bool) -> Result<Options, String> {
    let mut options = Options::default();
    let mut words = words;
    if shebang && let Some((script, rest)) = words.split_last() {
        options.script = Some(script.clone());
        words = rest;
    }
    let mut rest = words.iter();
    while let Some(arg) = rest.next() {
        let text = arg.to_string_lossy();
        if text == "--config" {
            let value = rest.next().ok_or("--config needs a FILE (--config=FILE)")?;
            options.config = Some(PathBuf::from(value));
        } else if let Some(value) = text.strip_prefix("--config=") {
            if value.is_empty() {
                return Err("--config= needs a FILE".into());
            }
            options.config = Some(PathBuf::from(value));
        } else if text.starts_with('-') && text != "-" {
            return Err(format!("unknown option '{}'", controls(&text)));
        } else if options.script.is_none() {
            options.script = Some(arg.clone());
        } else {
            return Err(format!(
                "unexpected argument '{}' before DOMAIN OP SUBOP EXTRA",
                controls(&text)
            ));
        }
    }
    Ok(options)
}

/// Where a mistake in the options is reported: the `#!` line of the hook file, or the command
/// line a person typed.
pub fn options_place(words: &[OsString], shebang: bool) -> String {
    match words.last() {
        Some(script) if shebang => format!("{}:1", script.to_string_lossy()),
        _ => "the 'phbguard hook' command line".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    #[test]
    fn the_last_four_arguments_are_the_call_whatever_they_look_like() {
        for name in [
            "check",
            "fix",
            "hook",
            "--help",
            "-h",
            "-",
            "--config",
            "--version",
        ] {
            let args = os(&[name, "prepare", "begin", "-"]);
            let (options, c) = split_call(&args).unwrap();
            assert!(options.is_empty());
            assert_eq!((c.domain.as_str(), c.op.as_str()), (name, "prepare"));
        }
        assert_eq!(split_call(&os(&["--help"])), Err(ArgsError::Help));
        assert!(matches!(
            split_call(&os(&["db", "prepare", "begin"])),
            Err(ArgsError::Usage(_))
        ));
    }

    #[test]
    fn options_before_the_call() {
        let o = parse_options(&os(&["--config", "/x.toml"]), false).unwrap();
        assert_eq!(o.config, Some(PathBuf::from("/x.toml")));
        let o = parse_options(&os(&["--config=/y.toml", "/hook"]), true).unwrap();
        assert_eq!(
            (o.config, o.script),
            (Some(PathBuf::from("/y.toml")), Some("/hook".into()))
        );
        // '#!/usr/bin/phbguard hook --config': the script path is not the policy file.
        assert!(parse_options(&os(&["--config", "/etc/libvirt/hooks/qemu.d/phbguard"]), true).is_err());
        for bad in [
            &["--confg=/x"][..],
            &["-c", "/x"],
            &["--bogus"],
            &["--help"],
            &["--config="],
            &["a", "b"],
        ] {
            assert!(parse_options(&os(bad), false).is_err(), "{bad:?}");
        }
    }
}
