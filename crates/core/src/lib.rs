//! phbguard: keeps libvirt pSeries guests on the PowerVM-style PCI Host Bridge isolation rule,
//! one PHB per host IOMMU group with the default PHB left to emulated devices.
//!
//! The engine only decides: it reads no file, socket or environment and writes none. Bytes,
//! host facts and the policy come in as values and text; texts, plans and verdicts go out.
//! What touches the system (bounded reads, the policy file, sysfs, syslog, replacing a file)
//! is phbguard-io; the hook is an edge in the `phbguard` binary (src/hook/).
//!
//! The modules read in one direction: [`parse`] (with [`start_tag`], the one reading of
//! attributes, which [`edit`] shares) turns bytes into the [`model`]; [`host`] gathers the facts
//! about its host devices from a [`host::HostFacts`]; `topology` (internal) builds the PCI
//! topology from both once; [`rules`] judge it; [`verdict`] turns findings into what the hook
//! and the watcher do under the policy ([`config`]); [`spare`] counts the PHBs a running guest
//! has left for hot-plugs; [`report`] and [`fix`] (with [`edit`])
//! write what people, scripts and files get; [`log_line`] and [`escape`] are how the hook and
//! the libvirt half say it.

pub mod config;
pub mod edit;
pub mod error;
pub mod escape;
pub mod fix;
pub mod host;
pub mod log_line;
pub mod memlock;
pub mod model;
pub mod near;
pub mod number;
pub mod parse;
pub mod report;
pub mod rules;
pub mod spare;
pub mod start_tag;
pub(crate) mod topology;
pub mod verdict;
pub mod vfio;

pub use error::ParseError;
pub use parse::parse_domain;
