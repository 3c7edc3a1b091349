#![allow(dead_code)] // each fuzz target uses one of these
//! What each fuzz target asserts, in one place: `fuzz/fuzz_targets/*.rs` call these on every
//! generated input, and `tests/it/fuzz_regressions.rs` calls them on every input the fuzzer ever
//! found a problem with (tests/fuzz/<target>/), so plain `cargo test` replays those.
//! Each function panics when the property breaks; a panic inside the engine is a finding too.

use phbguard_core::config::{self, Incoming, Mode};
use phbguard_core::fix::{Options, fix};
use phbguard_core::host::{GroupUnknown, HostFacts};
use phbguard_core::model::PciAddr;
use phbguard_core::rules::{Severity, judge};
use phbguard_core::verdict::{Arrival, HookCall, Phase, decide};
use phbguard_core::{ParseError, parse_domain};

/// A host that knows every PCI address, derived from the address itself, so that generated
/// hostdevs land in a few IOMMU groups (some shared, some unknown) without a sysfs tree.
pub struct FuzzHost;

impl HostFacts for FuzzHost {
    fn iommu_group(&self, addr: PciAddr) -> Result<u32, GroupUnknown> {
        match addr.function {
            7 => Err(GroupUnknown::NoDevice),
            6 => Err(GroupUnknown::NoLink),
            // Two functions of a slot share a group; domains keep groups apart (a domain
            // takes all 32 bits: wrapping, not overflowing).
            f => Ok(addr
                .domain
                .wrapping_mul(1000)
                .wrapping_add(u32::from(addr.slot) * 4 + u32::from(f / 2))),
        }
    }

    fn numa_node(&self, addr: PciAddr) -> Option<u32> {
        (addr.bus != 0xff).then_some(addr.domain % 2)
    }
}

/// A parse error names what was wrong in one line; judging a parsed domain never panics.
pub fn parse_check(data: &[u8]) {
    match parse_domain(data) {
        Ok(domain) => {
            let findings = judge(&domain, &FuzzHost);
            for f in &findings {
                assert!(
                    !f.message.contains('\n'),
                    "finding message spans lines: {:?}",
                    f.message
                );
            }
        }
        Err(e) => one_line(&e),
    }
}

fn one_line(e: &ParseError) {
    let text = e.to_string();
    assert!(
        !text.is_empty() && !text.contains('\n'),
        "parse error is not one line: {text:?}"
    );
}

/// `fix` either produces a document that parses and keeps every error rule, or says what it
/// cannot fix; it never fails internally, and fixing its output again changes nothing.
pub fn fix_recheck(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(domain) = parse_domain(data) else {
        return;
    };
    let fixed = match fix(text, &domain, &FuzzHost, Options::default()) {
        Ok(f) => f,
        Err(e) => panic!("fix failed internally: {e}"),
    };
    if !fixed.is_clean() {
        return;
    }
    let after = parse_domain(fixed.output.as_bytes())
        .unwrap_or_else(|e| panic!("fix output does not parse: {e}\n{}", fixed.output));
    let errors: Vec<_> = judge(&after, &FuzzHost)
        .into_iter()
        .filter(|f| f.severity() == Severity::Error)
        .map(|f| format!("{}: {}", f.rule.id, f.message))
        .collect();
    assert!(
        errors.is_empty(),
        "fix said clean but the output breaks {errors:?}\n{}",
        fixed.output
    );
    let again = fix(&fixed.output, &after, &FuzzHost, Options::default())
        .unwrap_or_else(|e| panic!("fix of fixed output failed: {e}"));
    assert!(
        again.plan.is_empty(),
        "fix is not idempotent: {:?}\n{}",
        again.plan,
        fixed.output
    );
}

/// The hook's judgement (phbguard_core::verdict, which src/hook/ turns into an exit code):
/// the input is the domain XML libvirt would pipe in, then `\0\0`, one byte that picks the
/// call, and a policy file (so every XML file is a seed as it is). The policy file never panics
/// its parser; a verdict never panics; an operator's doubtful setup (`warn_only`),
/// `mode = "off"` and `incoming = "warn"` for an incoming guest never refuse; a refusal always
/// has a blocking finding behind it.
pub fn hook_verdict(data: &[u8]) {
    let (xml, tail) = match data.windows(2).position(|w| w == b"\0\0") {
        Some(i) => (&data[..i], &data[i + 2..]),
        None => (data, &b""[..]),
    };
    let (pick, policy) = match tail.split_first() {
        Some((&pick, policy)) => (pick, policy),
        None => (0, &b""[..]),
    };
    let (config, _issues) = config::parse(&String::from_utf8_lossy(policy));
    let Ok(domain) = parse_domain(xml) else {
        return;
    };
    let phase = [Phase::Prepare, Phase::Migrate, Phase::Restore][usize::from(pick % 3)];
    let mut occasion = HookCall::new(phase);
    if pick & 0x04 != 0 {
        occasion.arrival = Arrival::Incoming(Phase::Migrate);
    }
    occasion.warn_only = pick & 0x08 != 0;
    let verdict = decide(&domain, &FuzzHost, &config, occasion);
    let blocking = verdict.blocking();
    if verdict.reject() {
        assert!(blocking > 0, "refused with no blocking finding");
        assert!(!occasion.warn_only, "refused although the setup is in doubt");
        assert!(!verdict.exempt, "refused an exempt guest");
        assert_eq!(verdict.mode, Mode::Enforce, "refused outside enforce mode");
        if matches!(occasion.arrival, Arrival::Incoming(_)) {
            assert_eq!(
                config.incoming,
                Incoming::Refuse,
                "refused an incoming guest with incoming = warn"
            );
        }
    }
    if verdict.mode == Mode::Off {
        assert!(
            verdict.findings.is_empty() && !verdict.reject(),
            "judged in mode off"
        );
    }
    for j in &verdict.findings {
        assert!(
            !j.finding.message.contains('\n'),
            "finding spans lines: {:?}",
            j.finding.message
        );
    }
}
