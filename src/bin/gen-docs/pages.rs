//! What `--help` cannot say: the sections phbguard(1) adds after clap's, and phbguard.toml(5).
//! Facts here follow README.md, docs/rules.md (exit codes), docs/hook.md and the policy file
//! packaging/phbguard.toml; the gen-docs tests check every key of that file is described.

use crate::roff::Section;

/// phbguard(1), after the options and subcommands.
pub const PHBGUARD_EXTRA: &[Section] = &[
    Section {
        heading: "EXIT STATUS",
        intro: "The exit codes are a stable interface (docs/rules.md).",
        items: &[
            (
                "0",
                "*check*: no error findings (warnings are allowed). *fix*: the output keeps \
                 every error rule (a compliant file: nothing changed). *hook*: the guest may go \
                 on; also every call the hook does not judge. *check-config*: the policy file is \
                 valid. *audit*: no guest the hook refuses or, under mode = \"enforce\", would \
                 refuse (opted-out guests aside).",
            ),
            (
                "1",
                "*check*: at least one error finding. *fix*: something cannot be fixed; each \
                 reason is on stderr and nothing is written for that file. *hook*: the guest is \
                 refused (at *prepare begin* in enforce mode; an incoming migration or restore \
                 with *incoming = \"refuse\"*). *audit*: a guest the hook refuses, or would \
                 refuse under mode = \"enforce\".",
            ),
            (
                "2",
                "Bad input or usage: a file that cannot be read, malformed XML, not a \
                 <domain>, a number libvirt would not read (decimal, 0x-prefixed hex \
                 or 0-prefixed octal) or out of its range, a file over 16 MiB, an unknown option \
                 or a missing argument. One line on stderr names the file, the \
                 element and the value. Also *fix*: a file that cannot be replaced (nothing is \
                 changed); *check-config*: any problem in the policy file.\n\n\
                 With several files *check* and *fix* exit with the worst outcome: 2 before 1 \
                 before 0.",
            ),
        ],
    },
    Section {
        heading: "ENVIRONMENT",
        intro: "",
        items: &[
            (
                "PHBGUARD_CONFIG",
                "The policy file the hook, *check-config*, *audit*, *fix --domain* and *watch* \
                 read instead of /etc/phbguard/phbguard.toml (a *--config* option wins over \
                 it).",
            ),
            (
                "PHBGUARD_HOOK_STDIN_DEADLINE_MS",
                "A shorter wait for the domain XML on the hook's stdin than its 30 s, in \
                 milliseconds (never a longer one), for tests of what the hook does when a \
                 writer never finishes: an internal error, decided by on_internal_error. \
                 libvirt passes hooks none of these variables.",
            ),
            (
                "LIBVIRT_DEFAULT_URI",
                "The libvirt connection *audit*, *groups*, *fix --domain* and *watch* use when \
                 *-c* is not given, as for virsh.",
            ),
            (
                "PHBGUARD_LIBVIRT",
                "The phbguard-libvirt binary that *audit*, *groups*, *fix --domain* and *watch* \
                 run. Default: the one beside phbguard, else \
                 /usr/libexec/phbguard/phbguard-libvirt.",
            ),
            (
                "NO_COLOR",
                "When set, *check* never colours its text output (it colours only on a \
                 terminal anyway).",
            ),
        ],
    },
    Section {
        heading: "FILES",
        intro: "",
        items: &[
            (
                "/etc/libvirt/hooks/qemu.d/phbguard",
                "The hook file libvirt runs for every guest (its first line is \
                 #!/usr/bin/phbguard hook). libvirt notices a first hook only after a reload: \
                 *systemctl reload virtqemud* (or *libvirtd*).",
            ),
            (
                "/etc/phbguard/phbguard.toml",
                "The hook's policy: enforce, warn or off, and what incoming guests, unknown \
                 IOMMU groups and internal errors do. See phbguard.toml(5).",
            ),
            (
                "/sys/bus/pci/devices/DDDD:BB:SS.F/iommu_group, .../numa_node",
                "The host facts rules are judged with: a host device's IOMMU group (the \
                 symlink's target) and NUMA node. *--sysfs-root DIR* reads them under DIR \
                 instead of /sys.",
            ),
            (
                "/usr/libexec/phbguard/phbguard-libvirt",
                "The half that links libvirt (*audit*, *groups*, *fix --domain*, *watch*), so \
                 that the hook binary never loads libvirt.so. Installed by hand, it goes beside \
                 phbguard (or *PHBGUARD_LIBVIRT* names it).",
            ),
            (
                "/dev/log",
                "Where the hook logs (syslog, facility daemon, identity phbguard): read it with \
                 *journalctl -t phbguard*.",
            ),
        ],
    },
    Section {
        heading: "EXAMPLES",
        intro: "",
        items: &[
            (
                "virsh dumpxml --inactive --security-info db01 > db01.xml; phbguard check db01.xml",
                "Judge a defined guest. Without *--security-info* virsh leaves secrets (a VNC \
                 password) out of the XML, and defining it again would lose them.",
            ),
            (
                "phbguard explain 'error[hostdev-on-default-phb]'",
                "Why a rule exists and how to fix its findings by hand; the rule may be pasted \
                 as a finding prints it. *phbguard rules* lists them all.",
            ),
            (
                "phbguard fix --diff db01.xml",
                "Show the smallest change that makes the guest compliant.",
            ),
            (
                "phbguard fix -i db01.xml && virsh define db01.xml",
                "Rewrite the file and give it back to libvirt.",
            ),
            (
                "phbguard fix --domain db01 --spare-phbs 2",
                "Give a defined guest two empty PHBs, so that once restarted it can take two \
                 passthrough devices of new IOMMU groups by hot-plug.",
            ),
            (
                "phbguard check --format json *.xml",
                "One JSON report for scripts (docs/rules.md has its shape).",
            ),
            (
                "phbguard check-config",
                "Validate /etc/phbguard/phbguard.toml before relying on it: each problem with \
                 its line, or the mode the hook applies.",
            ),
            (
                "journalctl -t phbguard --since today",
                "What the hook judged, refused or could not read.",
            ),
        ],
    },
    Section {
        heading: "SEE ALSO",
        intro: "phbguard.toml(5), phbguard-check(1), phbguard-fix(1), phbguard-hook(1), \
                virsh(1). From install to enforce on a host: \
                /usr/share/doc/phbguard*/docs/admin.md.",
        items: &[],
    },
];

pub const TOML_NAME: &str = "phbguard.toml - policy of the phbguard libvirt qemu hook";

/// phbguard.toml(5), after NAME.
pub const TOML: &[Section] = &[
    Section {
        heading: "SYNOPSIS",
        intro: "/etc/phbguard/phbguard.toml",
        items: &[],
    },
    Section {
        heading: "DESCRIPTION",
        intro: "The policy of the hook libvirt runs from /etc/libvirt/hooks/qemu.d/phbguard: \
                what it does with a guest whose definition breaks a rule. It is TOML; every key \
                is optional and a missing file means every default. The hook reads it on every \
                call it judges (*prepare begin*, *migrate begin*, *restore begin*), so a change \
                applies to the next guest start: nothing needs reloading. Other calls never \
                read it.\n\n\
                The hook's *--config FILE* (on its #! line) or *PHBGUARD_CONFIG* name another \
                file. *phbguard check-config [FILE]* validates a file; *phbguard audit* reports \
                its state with every guest.\n\n\
                Top-level keys come first. The watch service's key is written as the dotted key \
                *watch.action*, so the file needs no [table] line: TOML reads every key below a \
                [watch] line as the table's, and a top-level key added there (at the end of the \
                file, say) would no longer be one. If you write the [watch] table, keep it last.",
        items: &[],
    },
    Section {
        heading: "KEYS",
        intro: "",
        items: &[
            (
                "mode = \"enforce\" | \"warn\" | \"off\"",
                "What error findings do when a guest starts (*prepare begin*). *enforce*: the \
                 start is refused; virsh start shows the findings, syslog logs them. *warn*: \
                 the guest starts and the findings are logged. *off*: the hook does nothing. \
                 Built-in default: \"enforce\". The packaged file sets \"warn\", so that \
                 installing the package never refuses a guest that started before: switch to \
                 \"enforce\" once *phbguard audit* shows no guest it would refuse.\n\n\
                 A guest can override it for itself: virsh metadata GUEST --uri \
                 urn:phbguard:policy:1 --key phbguard --set \"<policy mode='warn'/>\" --config",
            ),
            (
                "incoming = \"warn\" | \"refuse\"",
                "What error findings do for a guest that arrives by incoming migration \
                 (*migrate begin* on the destination) or is restored from a save image \
                 (*restore begin*). The hook cannot fix a guest there: libvirt refuses any \
                 changed definition that is not ABI-identical. *warn* lets it in and logs; \
                 *refuse* cancels the migration or restore, for guests whose mode is enforce. \
                 Default: \"warn\".",
            ),
            (
                "reject_iommu_group_unknown = false | true",
                "Whether the warning iommu-group-unknown (a hostdev whose host device or IOMMU \
                 group cannot be found) refuses like an error. Default: false: the device may \
                 simply be missing on this host, and libvirt refuses that start itself.",
            ),
            (
                "on_internal_error = \"allow\" | \"deny\"",
                "What happens when the hook cannot judge a guest (unreadable or malformed XML, \
                 more than 16 MiB, a bug): *allow* lets it start, *deny* refuses it. Either way \
                 it is logged at error level. Default: \"allow\".",
            ),
            (
                "exempt = [\"NAME\" | \"UUID\", ...]",
                "Guests never refused, by name or UUID (UUIDs compared case-insensitively). \
                 Their findings are still logged. Default: none.",
            ),
            (
                "sysfs_root = \"/sys\"",
                "Where host PCI facts (IOMMU groups, NUMA nodes) are read; an absolute path. \
                 *audit*, *fix --domain* and *watch* read libvirt's node devices unless this \
                 names another tree. A tree that is not a directory is a mistake. Default: \
                 \"/sys\".",
            ),
            (
                "syslog_socket = \"/dev/log\"",
                "The syslog datagram socket (facility daemon, identity phbguard); an absolute \
                 path. A missing or full socket is ignored: logging never blocks or fails a \
                 start. Default: \"/dev/log\".",
            ),
            (
                "state_dir = \"/run/phbguard/incoming\"",
                "Where the hook marks a guest it let in at *migrate begin* or *restore begin*, \
                 so that the *prepare begin* libvirt runs for it next follows *incoming* rather \
                 than *mode*; an absolute path. Default: \"/run/phbguard/incoming\".",
            ),
            (
                "watch.action = \"warn\" | \"fix\"",
                "What the *phbguard watch* service (phbguard-watch.service) does with a pSeries \
                 guest whose new or changed persistent definition breaks a rule. *warn*: log the \
                 findings; the definition stays as it is. *fix*: redefine the guest with what \
                 *phbguard fix* makes of it, when that keeps every rule, secrets such as VNC \
                 passwords included; a running guest goes on unchanged and the new definition \
                 applies at its next cold boot. Guests in *exempt* and guests whose metadata says \
                 mode 'warn' or 'off' are never redefined. The service reads this file when it \
                 starts and on SIGHUP (*systemctl reload phbguard-watch*); a file with any \
                 mistake is logged and changes nothing then. Default: \"warn\". Also written \
                 as *action* below a [watch] line, at the end of the file.",
            ),
            (
                "fix.spare_phbs = N",
                "How many spare PHBs (PHBs other than the default one with nothing on them) \
                 every definition phbguard rewrites keeps: *phbguard fix --domain* (its \
                 *--spare-phbs* wins) and *phbguard watch* with *action = \"fix\"*. QEMU \
                 creates a pSeries guest's PHBs when it starts and libvirt cannot hot-plug one, \
                 so a running guest can take a passthrough device of an IOMMU group it does not \
                 use yet only onto a spare PHB that was in its definition at start; without \
                 one the hot-plug fails. Empty PHBs already there count; new ones get the \
                 lowest free index and target index, spread over the guest's NUMA cells, and \
                 never past QEMU's 31 PHBs. A guest that keeps every rule but has fewer \
                 spares is not rewritten for that alone (add them with *phbguard fix --domain \
                 GUEST --spare-phbs N*); each spare costs locked memory on KVM. A whole \
                 number from 0 to 30. Default: 0 (none added). Also written as *spare_phbs* \
                 below a [fix] line, at the end of the file.",
            ),
        ],
    },
    Section {
        heading: "MISTAKES",
        intro: "A mistake in this file never refuses a guest. If the file cannot be read, is \
                not valid TOML, or has an unknown key or a bad value, the hook logs the problem \
                with its line at error level (stderr and syslog: *journalctl -t phbguard*) and \
                judges every guest in warn mode until the file is fixed: findings are logged, \
                nothing is refused. (A value that is bad keeps its key's default; a file that is \
                not TOML is ignored as a whole; either way the mode is warn.)\n\n\
                A missing /etc/phbguard/phbguard.toml is not a mistake: the built-in defaults \
                apply, mode \"enforce\" included. A file named with *--config* or \
                *PHBGUARD_CONFIG* that is missing is one.\n\n\
                *phbguard check-config [FILE]* prints each problem as FILE:LINE: PROBLEM and \
                exits 2 if there is any, 0 if the file is valid (printing the mode the hook \
                applies). Run it after every edit. A key where it does not belong is named with \
                its place (\"'mode' is inside [watch] (line 64); top-level keys go before the \
                first [table]\"), a near miss with the key meant (\"did you mean 'exempt'?\"). \
                *phbguard audit* shows the same problems above its table, in its JSON \
                (policy_file) and as the metrics phbguard_policy_ok, phbguard_policy_problems \
                and phbguard_hook_mode, to alert on.",
        items: &[],
    },
    Section {
        heading: "EXAMPLES",
        intro: "Log findings but refuse nothing (the first weeks on a host):\n\n  \
                mode = \"warn\"\n\n\
                Refuse non-compliant guests but one, which is only logged:\n\n  \
                mode = \"enforce\"\n  exempt = [\"legacy-db01\"]\n\n\
                Also refuse non-compliant guests that arrive by migration or restore:\n\n  \
                mode = \"enforce\"\n  incoming = \"refuse\"\n\n\
                Enforce, and let the watch service fix new definitions, each keeping two spare \
                PHBs for hot-plugs:\n\n  \
                mode = \"enforce\"\n  watch.action = \"fix\"\n  fix.spare_phbs = 2",
        items: &[],
    },
    Section {
        heading: "FILES",
        intro: "",
        items: &[
            (
                "/etc/phbguard/phbguard.toml",
                "This file; the RPM installs it as %config(noreplace): an edited file survives \
                 upgrades.",
            ),
            ("/etc/libvirt/hooks/qemu.d/phbguard", "The hook that reads it."),
        ],
    },
    Section {
        heading: "SEE ALSO",
        intro: "phbguard(1), phbguard-hook(1), phbguard-check-config(1), phbguard-audit(1), \
                phbguard-watch(1).",
        items: &[],
    },
];
