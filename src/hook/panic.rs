//! A bug must not block every guest either: a panic while a call is judged is an internal
//! error under the policy's `on_internal_error`, as unreadable XML is.

use super::judge::JudgedCall;

/// Makes a panic from here on an internal error of `judged`'s call. The release build aborts
/// on panic (nothing after the panic hook runs there), so the panic hook itself gives the
/// answer and exits with it, in every profile alike.
pub fn on_panic(judged: &JudgedCall) {
    let (call, phase) = (judged.call.clone(), judged.phase);
    let (config, policy_path) = (judged.config.clone(), judged.policy_path.clone());
    let warn_only = judged.warn_only;
    std::panic::set_hook(Box::new(move |info| {
        let mut judged = JudgedCall::new(call.clone(), phase, config.clone(), policy_path.clone());
        judged.warn_only = warn_only;
        let code = judged.internal_error(&format!("phbguard panicked: {info}"));
        std::process::exit(code.into());
    }));
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixDatagram;
    use std::path::PathBuf;
    use std::process::Command;
    use std::time::Duration;

    use phbguard_core::config::{Config, OnInternalError};
    use phbguard_core::verdict::Phase;

    use super::*;
    use crate::hook::args::Call;

    /// Set when this test binary is re-run as the process that panics (see below).
    const PANIC_CHILD: &str = "PHBGUARD_HOOK_TEST_PANIC_CHILD";
    const PANIC_TEST: &str = "hook::panic::tests::a_panic_is_an_internal_error_too";

    /// The panic path as the hook binary takes it: the panic hook [`on_panic`] installs turns a
    /// panic into the policy's on_internal_error answer and exits with it. This test re-runs its
    /// own test binary as a child that installs the hook and panics; an answer given from the
    /// hook, and not from unwinding (which the release build does not do: it aborts), is the
    /// only way the child can exit 0 or 1 with those lines (a panicking test exits 101; an
    /// abort is a signal). No build of `phbguard` itself has a way to panic on purpose.
    #[test]
    fn a_panic_is_an_internal_error_too() {
        if let Some(setting) = std::env::var_os(PANIC_CHILD) {
            panic_as_the_hook(&setting.to_string_lossy());
        }
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("log");
        let log = UnixDatagram::bind(&socket).unwrap();
        log.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        for (setting, code, outcome, on_internal_error) in [
            ("allow", 0, "allowed", "allow"),
            ("deny", 1, "refused", "deny"),
            ("deny-in-doubt", 0, "allowed", "deny"),
        ] {
            let out = Command::new(std::env::current_exe().unwrap())
                .args([PANIC_TEST, "--exact", "--nocapture", "--test-threads=1"])
                .env(PANIC_CHILD, setting)
                .env("PHBGUARD_HOOK_TEST_SYSLOG", &socket)
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(code), "{setting}: {stderr}");
            assert!(
                stderr.contains(
                    "phbguard: internal error: cannot judge domain 'db02' at prepare begin: \
                     phbguard panicked"
                ),
                "{setting}: {stderr}"
            );
            let mut buf = [0u8; 4096];
            let n = log.recv(&mut buf).unwrap();
            let line = String::from_utf8_lossy(&buf[..n]);
            assert!(
                line.contains(&format!(
                    "internal-error domain=db02 op=prepare outcome={outcome} \
                     on_internal_error={on_internal_error}: cannot judge: phbguard panicked"
                )),
                "{setting}: {line}"
            );
        }
    }

    /// The child of [`a_panic_is_an_internal_error_too`]: a judged call under the policy
    /// `setting`, its panic hook installed, then a panic.
    fn panic_as_the_hook(setting: &str) -> ! {
        let config = Config {
            syslog_socket: std::env::var_os("PHBGUARD_HOOK_TEST_SYSLOG").unwrap().into(),
            on_internal_error: if setting.starts_with("deny") {
                OnInternalError::Deny
            } else {
                OnInternalError::Allow
            },
            ..Config::default()
        };
        let call = Call {
            domain: "db02".into(),
            op: "prepare".into(),
            subop: "begin".into(),
            extra: "-".into(),
        };
        let policy_path = PathBuf::from("/etc/phbguard/phbguard.toml");
        let mut judged = JudgedCall::new(call, Phase::Prepare, config, policy_path);
        judged.warn_only = setting.ends_with("in-doubt");
        on_panic(&judged);
        panic!("a bug in the judging");
    }
}
