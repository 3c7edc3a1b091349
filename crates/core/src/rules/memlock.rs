//! A `<memtune><hard_limit>` below the memory libvirt computes QEMU must lock: libvirt then
//! makes the hard limit QEMU's locked-memory limit, and VFIO's pinning fails (crate::memlock;
//! docs/memlock.md).

use super::{Finding, Rule, RuleId, Severity};
use crate::memlock::{Inputs, needed_kib};
use crate::model::Subject;

pub(super) const MEMLOCK_LIMIT_TOO_LOW: Rule = Rule {
    id: RuleId::MemlockLimitTooLow,
    severity: Severity::Error,
    summary: "`<memtune><hard_limit>` is below the memory libvirt computes QEMU must lock \
              (a warning while it still covers the guest's memory)",
    explanation: "\
What: the guest sets <memtune><hard_limit>, and it is below the locked-memory limit libvirt
would compute for it: on POWER from its memory, <maxMemory>, its number of PHBs and its VFIO
devices (libvirt 9.0, qemuDomainGetMemLockLimitBytes: memory/128 for the hash table, 4 MiB per
PHB and 8 MiB, plus with VFIO the larger of 2 GiB per PHB and memory + memory/512 per PHB +
8 MiB).

Why: when <hard_limit> is set, libvirt uses it as QEMU's locked-memory limit (RLIMIT_MEMLOCK)
instead of its own figure. On POWER, VFIO pins all guest memory against that limit when QEMU
starts and adds a DMA window table per PHB, so every PHB the isolation rule adds raises the
need: 'phbguard fix' can push a guest that started before over its limit. Below the guest's
memory it cannot work at all: QEMU fails at start ('vfio: ... Memory registering failed'), an
error. Above the memory but below libvirt's figure it may work or fail, at start or when the
guest opens a 64-bit DMA window, depending on the guest's kernel and page sizes: a warning.

Fix by hand: raise <hard_limit> to at least libvirt's figure (the finding names it), or remove
it and let libvirt compute the limit. 'phbguard fix --raise-hard-limit' raises it; 'phbguard
fix' without it never raises an admin's limit and refuses a rewrite that needs more than it.",
    bad: include_str!("examples/memlock-limit-too-low.bad.xml"),
    good: include_str!("examples/memlock-limit-too-low.good.xml"),
    check: |rule, t, out| {
        if !t.pseries {
            return;
        }
        let (Some(hard), Some(inputs)) = (t.domain.memory.hard_limit, Inputs::of(t)) else {
            return;
        };
        let need = needed_kib(&inputs);
        if hard.kib >= need {
            return;
        }
        // VFIO pins all of the memory when QEMU starts: below it nothing can start.
        let certain = inputs.uses_vfio() && hard.kib < inputs.memory_kib;
        let what = format!(
            "of {} is below the {} libvirt 9.0 computes QEMU must lock for {} of memory and {} \
             PHB{}{}; {}: raise it to at least {need} KiB ('phbguard fix --raise-hard-limit') or \
             remove it and let libvirt compute the limit",
            size(hard.kib),
            size(need),
            size(inputs.memory_kib),
            inputs.phbs,
            if inputs.phbs == 1 { "" } else { "s" },
            if inputs.uses_vfio() { " with VFIO" } else { "" },
            if certain {
                "VFIO pins all guest memory against it, so QEMU fails at start"
            } else {
                "QEMU may fail at start or when the guest maps its DMA windows"
            }
        );
        let mut finding = Finding::about(rule, t, Subject::HardLimit, "memtune hard_limit".into(), &what);
        if !certain {
            finding.severity = Severity::Warning;
        }
        out.push(finding);
    },
};

/// `8511488 KiB (8.12 GiB)`: the exact figure libvirt uses and one a person reads.
pub(crate) fn size(kib: u64) -> String {
    format!("{kib} KiB ({:.2} GiB)", kib as f64 / (1024.0 * 1024.0))
}
