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
    /// Explain a rule: what it catches, why it matters, how to fix it by hand
    Explain {
        /// A rule id, as 'phbguard rules' lists them
        rule: String,
    },
    /// List the rules
    Rules {
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
}
