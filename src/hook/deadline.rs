//! How long the hook waits for the domain XML on its stdin.

use std::ffi::OsStr;
use std::time::Duration;

/// libvirt writes the XML and closes the pipe at once (virCommandProcessIO); a writer that
/// does neither must not hold a guest's start, or libvirtd, forever. Generous, because a
/// deadline that passes is an internal error, which lets the guest through by default: on a
/// loaded host libvirtd's writing thread may wait seconds for a CPU, and that must never let a
/// non-compliant guest start. Only a stuck writer is ever this slow.
pub const STDIN_DEADLINE: Duration = Duration::from_secs(30);

/// Milliseconds: a *shorter* stdin deadline than [`STDIN_DEADLINE`], so that tests show what a
/// deadline that passes does without waiting for the real one. Never a longer one: the read
/// stays bounded whatever the environment says. It gives nobody a way around the policy:
/// libvirtd runs hooks with an environment of its own (`LC_ALL=C`, `PATH`, `HOME`, ...:
/// virCommandAddEnvPassCommon), so no variable of ours reaches a hook it runs; whoever sets
/// the environment of a hook by hand can set `PHBGUARD_CONFIG` just as well, which chooses the
/// whole policy; and a deadline that passes is an internal error like any other, logged as one
/// and decided by `on_internal_error` (`"deny"` refuses the guest).
pub const STDIN_DEADLINE_VAR: &str = "PHBGUARD_HOOK_STDIN_DEADLINE_MS";

/// The stdin deadline for a value of [`STDIN_DEADLINE_VAR`]: that many milliseconds when it is a
/// number below [`STDIN_DEADLINE`]'s, else [`STDIN_DEADLINE`].
pub fn stdin_deadline(var: Option<&OsStr>) -> Duration {
    var.and_then(|v| v.to_str()?.parse::<u64>().ok())
        .map(Duration::from_millis)
        .map_or(STDIN_DEADLINE, |d| d.min(STDIN_DEADLINE))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stdin_deadline_can_be_shortened_never_lengthened() {
        assert_eq!(stdin_deadline(None), STDIN_DEADLINE);
        assert_eq!(
            stdin_deadline(Some(OsStr::new("300"))),
            Duration::from_millis(300)
        );
        assert_eq!(stdin_deadline(Some(OsStr::new("0"))), Duration::ZERO);
        for longer_or_not_a_number in ["30001", "3600000", "18446744073709551615", "-1", "5s", "", "1e3"] {
            assert_eq!(
                stdin_deadline(Some(OsStr::new(longer_or_not_a_number))),
                STDIN_DEADLINE,
                "{longer_or_not_a_number}"
            );
        }
    }
}
