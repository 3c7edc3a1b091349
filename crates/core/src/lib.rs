//! phbguard: keeps libvirt pSeries guests on the PowerVM-style PCI Host Bridge isolation rule,
//! one PHB per host IOMMU group with the default PHB left to emulated devices.

pub mod error;
pub mod model;
pub mod number;
pub mod parse;

pub use error::ParseError;
pub use parse::parse_domain;
pub mod config;
pub mod edit;
pub mod escape;
pub mod fix;
pub mod host;
pub mod input;
pub mod replace;
pub mod report;
pub mod rules;
#[doc(hidden)]
pub mod seams;
pub mod syslog;
pub mod verdict;
