//! The command line, declared once: parsing, `--help`, man pages and completions all read it.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "phbguard",
    version,
    about = "Keep libvirt pSeries guests on the PowerVM PHB isolation rule",
    long_about = "Keep libvirt pSeries guests on the PowerVM PHB isolation rule: one PCI Host \
                  Bridge per host IOMMU group, the default PHB reserved for emulated devices, no \
                  pci-bridge.\n\nExit codes: 0 compliant (warnings allowed), 1 error findings, \
                  2 bad input or usage."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Judge domain XML files against the rules
    Check(CheckArgs),
    /// Rewrite domain XML files into ones that keep the rules, changing as little as possible
    #[command(
        long_about = "Rewrite domain XML files into ones that keep the rules, changing as \
                  little as possible: hostdevs move to one PHB per host IOMMU group, emulated \
                  devices leave hostdev PHBs, PHBs are added (lowest free index and target index) \
                  or renumbered, and pci-bridges the move empties are removed. Everything else \
                  stays byte for byte; a compliant file comes out unchanged ('already compliant' \
                  on stderr). --spare-phbs N also keeps N empty PHBs for hot-plugged devices.\n\n\
                  The fixed XML goes to stdout for one FILE only; several FILEs need --in-place, \
                  --diff or --format json (one JSON object per line and file). Each file is \
                  fixed on its own: one that cannot be fixed is left alone, the others are \
                  still written.\n\n\
                  The result is judged again before it is written. Exit codes: 0 the output keeps \
                  every error rule, 1 something cannot be fixed (each reason on stderr; nothing \
                  is written), 2 bad input, usage or a file that cannot be replaced. With several \
                  files the worst of these: 2 before 1 before 0."
    )]
    Fix(FixArgs),
    /// Explain a rule: what it catches, why it matters, how to fix it by hand
    Explain {
        /// A rule id as 'phbguard rules' lists it, or a whole finding line as phbguard printed
        /// it ('x.xml:41: error[hostdev-on-default-phb]: ...', a syslog line with rule=...,
        /// virsh's 'Hook script execution failed' line); without one, it says how to ask and
        /// lists the rules (exit 2)
        rule: Option<String>,
        /// json: the rule's id, severity, summary, explanation and examples as one object
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// List the rules
    Rules {
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// The libvirt qemu hook (run by libvirtd from /etc/libvirt/hooks/qemu.d/phbguard)
    #[command(
        override_usage = "phbguard hook [--config FILE] [SCRIPT] DOMAIN OP SUBOP EXTRA",
        long_about = "The libvirt qemu hook, run by libvirtd from \
                  /etc/libvirt/hooks/qemu.d/phbguard with the domain XML on stdin.\n\n\
                  'prepare begin' rejects a guest with error findings (exit 1, the findings on \
                  stderr and in syslog); 'migrate begin' and 'restore begin' refuse or warn as \
                  the policy file says; every other call exits 0 at once. The last four \
                  arguments are always DOMAIN OP SUBOP EXTRA, whatever they look like: a domain \
                  may be named 'check' or '--help'."
    )]
    Hook(HookArgs),
    /// Validate a policy file (exit 2 on any error or unknown key)
    #[command(
        name = "check-config",
        long_about = "Validate the hook's policy file: TOML syntax, every key known and in its \
                  place (a top-level key below a [table] line is named as such), every value \
                  valid, sysfs_root a directory. Each problem is printed as FILE:LINE: PROBLEM on \
                  stderr, then what the hook applies meanwhile. A valid file prints \
                  'FILE: valid; the hook applies mode = \"MODE\" (...)' on stdout.\n\n\
                  Exit codes: 0 valid (a missing default file is valid: the built-in \
                  defaults apply), 2 any problem. The hook itself never refuses a guest for \
                  these: it logs the first one and judges in warn mode until the file is fixed."
    )]
    CheckConfig(CheckConfigArgs),
    /// Judge every guest libvirt knows: persistent and live definitions
    Audit(AuditArgs),
    /// List the host's IOMMU groups, their PCI devices and the guests and hostdev-pool networks
    /// that use them
    Groups(GroupsArgs),
    /// Watch libvirt for new and changed definitions and warn about or fix them (a service)
    #[command(
        long_about = "Watch libvirt for new and changed domain definitions and warn about or \
                  fix them: a long-running service (phbguard-watch.service).\n\n\
                  Every definition made ('virsh define', 'virsh edit', virt-install...) is \
                  judged. With 'watch.action = \"warn\"' in the policy file (the default) \
                  the findings are logged; with \"fix\" the guest is redefined with what \
                  'phbguard fix' makes of it, when that keeps every rule (secrets such as VNC \
                  passwords are kept; a running guest's live configuration is not touched). A \
                  device hot-plugged into a running pSeries guest is judged and warned about. \
                  Every defined guest is judged once at start and after each reconnect.\n\n\
                  Logs to syslog (identity phbguard, 'journalctl -t phbguard') and stderr. \
                  SIGTERM or SIGINT: exit 0. SIGHUP ('systemctl reload phbguard-watch'): \
                  read the policy file again; a file with any mistake is logged and the policy \
                  in force stays."
    )]
    Watch(WatchArgs),
}

/// Which libvirt to talk to, as virsh's `-c` does.
#[derive(Debug, Clone, clap::Args)]
pub struct ConnectArgs {
    /// libvirt connection URI [default: $LIBVIRT_DEFAULT_URI, else libvirt's own default]
    #[arg(short = 'c', long = "connect", value_name = "URI")]
    pub uri: Option<String>,
}

#[derive(Debug, clap::Args)]
#[command(
    long_about = "Judge every guest libvirt knows, defined and running: each persistent \
                  definition and, for a running guest, its live one too. Host facts (IOMMU \
                  groups, NUMA nodes) come from the connection's node devices, so a remote URI \
                  judges the remote host, or from the policy file's sysfs_root as the hook reads \
                  them. Also reports a host device given to two defined guests and interfaces on \
                  hostdev-pool networks without a PHB of their own.\n\n\
                  Says what the hook does with each guest under this host's policy file: the \
                  file's state first (valid, or each problem: the hook then judges every guest in \
                  warn mode), then per definition whether the guest opted out (its metadata \
                  mode 'off' or 'warn', or the policy's exempt list) and whether the hook would \
                  refuse its start.\n\n\
                  Exit codes: 0 no guest the hook refuses or, under mode = \"enforce\", would \
                  refuse (opted-out guests aside), 1 some, 2 usage, connection or output \
                  failure."
)]
pub struct AuditArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Read host PCI facts from this sysfs tree instead of libvirt's node devices [default: the
    /// policy file's sysfs_root when it is not /sys]
    #[arg(long, value_name = "DIR")]
    pub sysfs_root: Option<PathBuf>,
    /// prometheus: node_exporter's textfile-collector format
    #[arg(long, value_enum, default_value_t = AuditFormat::Text)]
    pub format: AuditFormat,
    /// Write the report to FILE (through a temporary file renamed over it) instead of stdout
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// The hook's policy file (mode, exempt, reject_iommu_group_unknown), so that audit says
    /// which guests the hook would refuse [default: $PHBGUARD_CONFIG, else
    /// /etc/phbguard/phbguard.toml]
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AuditFormat {
    Text,
    Json,
    Prometheus,
}

#[derive(Debug, clap::Args)]
pub struct GroupsArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Read the host's PCI devices from this sysfs tree instead of libvirt's node devices (no
    /// vendor or product names there; PF pools still resolve through node devices)
    #[arg(long, value_name = "DIR")]
    pub sysfs_root: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

#[derive(Debug, clap::Args)]
pub struct WatchArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// The policy file (watch.action) [default: $PHBGUARD_CONFIG, else /etc/phbguard/phbguard.toml]
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct HookArgs {
    /// The policy file [default: $PHBGUARD_CONFIG, else /etc/phbguard/phbguard.toml]
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The hook file's path (the kernel passes it when it runs the '#!' line), then the four
    /// arguments libvirt passes
    #[arg(
        value_name = "ARG",
        hide = true,
        num_args = 4..=5,
        allow_hyphen_values = true,
        trailing_var_arg = true
    )]
    pub args: Vec<std::ffi::OsString>,
}

#[derive(Debug, clap::Args)]
pub struct CheckConfigArgs {
    /// The policy file [default: $PHBGUARD_CONFIG, else /etc/phbguard/phbguard.toml]
    #[arg(value_name = "FILE")]
    pub file: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Where host PCI facts (IOMMU groups, NUMA nodes) are read
    #[arg(long, value_name = "DIR", default_value = "/sys")]
    pub sysfs_root: PathBuf,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Domain XML files; '-' reads standard input
    #[arg(value_name = "FILE", required = true)]
    pub files: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct FixArgs {
    /// Where host PCI facts (IOMMU groups, NUMA nodes) are read [default: /sys for a FILE,
    /// libvirt's node devices (or the policy file's sysfs_root) for --domain]
    #[arg(long, value_name = "DIR")]
    pub sysfs_root: Option<PathBuf>,
    /// Fix the persistent definition of this libvirt domain (name or UUID) instead of a file:
    /// show the diff, then redefine it with --yes or on confirmation
    #[arg(long, value_name = "NAME", conflicts_with_all = ["files", "in_place", "diff"])]
    pub domain: Option<String>,
    /// With --domain: the libvirt connection URI [default: $LIBVIRT_DEFAULT_URI, else
    /// libvirt's own default]
    // `conflicts_with = "files"` as well: clap skips `requires` when the required argument
    // conflicts with one given (clap-rs/clap#4520; --domain conflicts with FILE), so `fix -y
    // FILE` would be accepted and the flag ignored.
    #[arg(
        short = 'c',
        long = "connect",
        value_name = "URI",
        requires = "domain",
        conflicts_with = "files"
    )]
    pub uri: Option<String>,
    /// With --domain: redefine without asking
    #[arg(long, short = 'y', requires = "domain", conflicts_with = "files")]
    pub yes: bool,
    /// With --domain: redefine only if this run proposes exactly the change a previous run
    /// showed, named by its digest (the `digest` of 'fix --domain --format json'); if the
    /// definition or the fix changed since, nothing is defined (exit 1)
    #[arg(long, value_name = "DIGEST", requires = "domain", conflicts_with = "files")]
    pub if_digest: Option<String>,
    /// Replace each FILE with its fixed XML instead of printing it: atomically, keeping owner,
    /// group, mode and extended attributes, and only if nobody changed it meanwhile
    #[arg(long, short = 'i')]
    pub in_place: bool,
    /// With --in-place, keep the original as FILE + SUFFIX [default SUFFIX: .orig]
    #[arg(
        long,
        value_name = "SUFFIX",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = ".orig",
        requires = "in_place"
    )]
    pub backup: Option<String>,
    /// Print a unified diff of the rewrite instead of the XML (with --in-place: of what was written)
    #[arg(long, conflicts_with = "format")]
    pub diff: bool,
    /// text: the fixed XML (or diff) on stdout, the changes on stderr; json: the changes
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Also give hostdevs without a guest PCI address the one libvirt would choose
    #[arg(long)]
    pub assign_addresses: bool,
    /// Raise a <memtune><hard_limit> below the memory libvirt computes QEMU must lock (which
    /// every PHB raises) to that figure; without it, a fix whose new PHBs need more than the
    /// limit is refused (exit 1)
    #[arg(long)]
    pub raise_hard_limit: bool,
    /// Leave at least N spare PHBs (PHBs other than the default one with nothing on them), so
    /// that the running guest can take N hostdevs of new IOMMU groups by hot-plug: QEMU creates
    /// PHBs only at start. Empty PHBs already there count; new ones take the lowest free index
    /// and target index, spread over the guest's NUMA cells, up to QEMU's 31 PHBs. A guest that
    /// has them is left as it is [default: 0 for a FILE; the policy file's fix.spare_phbs for
    /// --domain]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(0..=30))]
    pub spare_phbs: Option<u8>,
    /// Do not list the changes on stderr
    #[arg(long, short = 'q')]
    pub quiet: bool,
    /// Domain XML files; '-' reads standard input
    #[arg(value_name = "FILE", required_unless_present = "domain")]
    pub files: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
}
