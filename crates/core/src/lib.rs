//! phbguard: keeps libvirt pSeries guests on the PowerVM-style PCI Host Bridge isolation rule,
//! one PHB per host IOMMU group with the default PHB left to emulated devices.
//!
//! The modules read in one direction: [`input`] and [`parse`] turn bytes into the [`model`];
//! [`host`] gathers the facts about its host devices; `topology` (internal) builds the PCI
//! topology from both once; [`rules`] judge it; [`hook`] turns findings into a verdict; [`report`]
//! and [`fix`] (with [`edit`] and [`replace`]) write what people, scripts and files get.

pub mod config;
pub mod edit;
pub mod error;
pub mod fix;
pub mod hook;
pub mod host;
pub mod input;
pub mod model;
pub(crate) mod number;
pub mod parse;
pub mod replace;
pub mod report;
pub mod rules;
pub(crate) mod syslog;
pub(crate) mod topology;

pub use error::ParseError;
pub use parse::parse_domain;
