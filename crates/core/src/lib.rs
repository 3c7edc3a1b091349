//! phbguard: keeps libvirt pSeries guests on the PowerVM-style PCI Host Bridge isolation rule,
//! one PHB per host IOMMU group with the default PHB left to emulated devices.
//!
//! The modules read in one direction: [`input`] and [`parse`] (with [`start_tag`], the one
//! reading of attributes, which [`edit`] shares) turn bytes into the [`model`];
//! [`host`] gathers the facts about its host devices; `topology` (internal) builds the PCI
//! topology from both once; [`rules`] judge it; [`verdict`] turns findings into what the hook
//! decides under the policy ([`config`]); [`report`] and [`fix`] (with [`edit`] and [`replace`])
//! write what people, scripts and files get. The hook itself is an edge in the `phbguard`
//! binary (src/hook.rs); [`syslog`] and [`escape`] are what it and the libvirt half write with.

pub mod config;
pub mod edit;
pub mod error;
pub mod escape;
pub mod fix;
pub mod host;
pub mod input;
pub mod log_line;
pub mod model;
pub(crate) mod number;
pub mod parse;
pub mod replace;
pub mod report;
pub mod rules;
pub mod start_tag;
pub mod syslog;
pub(crate) mod topology;
pub mod verdict;

pub use error::ParseError;
pub use parse::parse_domain;
