//! The host facts `audit`, `groups`, `fix --domain` and `watch` judge with: PCI facts from the
//! connection's node devices or a sysfs tree ([`host_source`] decides which, for all of them),
//! and which of its networks are hostdev pools.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use phbguard_core::config::Config;
use phbguard_core::host::{GroupUnknown, HostFacts};
use phbguard_core::model::PciAddr;
use phbguard_core::vfio::Binding;
use phbguard_io::sysfs::Sysfs;
use virt::connect::Connect;

use crate::networks::{HostdevPool, hostdev_pools};
use crate::nodedev::NodeDevices;

/// Where the host facts come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostSource {
    /// The connection's node devices.
    NodeDevices,
    /// A sysfs tree given with `--sysfs-root`.
    SysfsFlag(PathBuf),
    /// The policy file's `sysfs_root`, which the hook reads too.
    SysfsPolicy(PathBuf),
    /// The policy file names a `sysfs_root` that is not read (why), so node devices.
    NotPolicySysfs { root: PathBuf, why: Unread },
}

/// Why the policy file's `sysfs_root` is not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unread {
    /// The connection is to another host: the tree describes this one.
    Remote,
    /// The tree is not a directory (the policy file's problem, reported as such).
    NotADirectory,
}

impl fmt::Display for Unread {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Unread::Remote => "the guests are on another host",
            Unread::NotADirectory => "it is not a directory",
        })
    }
}

impl HostSource {
    /// The sysfs tree to read, if not node devices.
    pub fn sysfs_root(&self) -> Option<&Path> {
        match self {
            HostSource::SysfsFlag(p) | HostSource::SysfsPolicy(p) => Some(p),
            _ => None,
        }
    }

    /// One sentence for a report, when it is not plain node devices.
    pub fn describe(&self) -> Option<String> {
        match self {
            HostSource::NodeDevices => None,
            HostSource::SysfsFlag(p) => Some(format!("host facts from --sysfs-root {}", p.display())),
            HostSource::SysfsPolicy(p) => Some(format!(
                "host facts from the policy's sysfs_root {}, as the hook reads them",
                p.display()
            )),
            HostSource::NotPolicySysfs { root, why } => Some(format!(
                "host facts from libvirt's node devices, not the policy's sysfs_root {}: {why}",
                root.display()
            )),
        }
    }
}

/// Where every command on a libvirt connection reads host facts: `--sysfs-root`, else the
/// policy's `sysfs_root` as the hook does (unless the guests are on another host, or the tree
/// is not a directory: `root_unusable`), else the connection's node devices.
pub fn host_source(flag: Option<&Path>, policy: &Config, root_unusable: bool, remote: bool) -> HostSource {
    if let Some(root) = flag {
        return HostSource::SysfsFlag(root.to_path_buf());
    }
    match policy.sysfs_override() {
        None => HostSource::NodeDevices,
        Some(root) if remote => HostSource::NotPolicySysfs {
            root: root.to_path_buf(),
            why: Unread::Remote,
        },
        Some(root) if root_unusable => HostSource::NotPolicySysfs {
            root: root.to_path_buf(),
            why: Unread::NotADirectory,
        },
        Some(root) => HostSource::SysfsPolicy(root.to_path_buf()),
    }
}

/// Whether a libvirt URI names another host (`qemu+ssh://host/system`), not this one
/// (`qemu:///system`, `test:///path`, `qemu+ssh://localhost/system`).
pub fn is_remote(uri: &str) -> bool {
    uri.split_once("://")
        .map(|(_, rest)| rest.split('/').next().unwrap_or(""))
        .is_some_and(|authority| {
            let host = authority.rsplit('@').next().unwrap_or("");
            let host = host.rsplit_once(':').map_or(host, |(name, port)| {
                if port.bytes().all(|b| b.is_ascii_digit()) {
                    name
                } else {
                    host
                }
            });
            !matches!(host, "" | "localhost" | "127.0.0.1" | "[::1]")
        })
}

/// Whether `conn` is to another host.
pub fn connection_is_remote(conn: &Connect) -> bool {
    conn.uri().is_ok_and(|uri| is_remote(&uri))
}

enum PciFacts<'c> {
    NodeDevices(NodeDevices<'c>),
    Sysfs(Sysfs),
}

pub struct Host<'c> {
    pci: PciFacts<'c>,
    pub pools: BTreeMap<String, HostdevPool>,
}

impl<'c> Host<'c> {
    /// The host behind `conn`; with `sysfs_root`, its PCI facts come from that tree instead,
    /// which must be a directory: any other root would make every host device "not on this
    /// host" ([`Sysfs::check_root`]), a typo passed off as findings.
    pub fn new(conn: &'c Connect, sysfs_root: Option<&Path>) -> Result<Self, String> {
        let pci = match sysfs_root {
            Some(root) => {
                let sysfs = Sysfs::new(root);
                sysfs.check_root()?;
                PciFacts::Sysfs(sysfs)
            }
            None => PciFacts::NodeDevices(NodeDevices::new(conn)),
        };
        Ok(Host {
            pci,
            pools: hostdev_pools(conn)?,
        })
    }
}

impl HostFacts for Host<'_> {
    fn iommu_group(&self, addr: PciAddr) -> Result<u32, GroupUnknown> {
        match &self.pci {
            PciFacts::NodeDevices(n) => n.iommu_group(addr),
            PciFacts::Sysfs(s) => s.iommu_group(addr),
        }
    }

    // Sysfs answers many at once for less; node devices have no such call.
    fn iommu_groups(&self, addrs: &[PciAddr]) -> Vec<Result<u32, GroupUnknown>> {
        match &self.pci {
            PciFacts::NodeDevices(n) => n.iommu_groups(addrs),
            PciFacts::Sysfs(s) => s.iommu_groups(addrs),
        }
    }

    fn numa_node(&self, addr: PciAddr) -> Option<u32> {
        match &self.pci {
            PciFacts::NodeDevices(n) => n.numa_node(addr),
            PciFacts::Sysfs(s) => s.numa_node(addr),
        }
    }

    fn is_hostdev_network(&self, name: &str) -> Option<bool> {
        Some(self.pools.contains_key(name))
    }

    fn group_members(&self, group: u32) -> Result<Vec<PciAddr>, String> {
        match &self.pci {
            PciFacts::NodeDevices(n) => n.group_members(group),
            PciFacts::Sysfs(s) => s.group_members(group),
        }
    }

    fn groups_members(&self, groups: &[u32]) -> Vec<Result<Vec<PciAddr>, String>> {
        match &self.pci {
            PciFacts::NodeDevices(n) => n.groups_members(groups),
            PciFacts::Sysfs(s) => s.groups_members(groups),
        }
    }

    fn driver(&self, addr: PciAddr) -> Result<Option<String>, String> {
        match &self.pci {
            PciFacts::NodeDevices(n) => n.driver(addr),
            PciFacts::Sysfs(s) => s.driver(addr),
        }
    }

    fn is_bridge(&self, addr: PciAddr) -> Result<bool, String> {
        match &self.pci {
            PciFacts::NodeDevices(n) => n.is_bridge(addr),
            PciFacts::Sysfs(s) => s.is_bridge(addr),
        }
    }

    fn bindings(&self, addrs: &[PciAddr]) -> Vec<Binding> {
        match &self.pci {
            PciFacts::NodeDevices(n) => n.bindings(addrs),
            PciFacts::Sysfs(s) => s.bindings(addrs),
        }
    }

    fn is_nvlink2_bridge(&self, addr: PciAddr) -> Option<bool> {
        match &self.pci {
            PciFacts::NodeDevices(n) => n.is_nvlink2_bridge(addr),
            PciFacts::Sysfs(s) => s.is_nvlink2_bridge(addr),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_uri_with_a_host_is_remote() {
        for uri in [
            "qemu+ssh://root@host.example/system",
            "qemu+tls://10.0.0.1/system",
            "qemu+tcp://host.example:16509/system",
        ] {
            assert!(is_remote(uri), "{uri}");
        }
        for uri in [
            "qemu:///system",
            "qemu:///session",
            "test:///default",
            "test:///tmp/node.xml",
            "qemu+ssh://localhost/system",
            "qemu+tcp://localhost:16509/system",
            "qemu+tcp://127.0.0.1/system",
            "qemu+tcp://[::1]:16509/system",
        ] {
            assert!(!is_remote(uri), "{uri}");
        }
    }

    #[test]
    fn host_facts_follow_the_flag_then_the_policy() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("p.toml");
        let at = |text: &str| {
            std::fs::write(&file, text).unwrap();
            let p = phbguard_io::policy_file::read_at(file.clone(), true);
            (p.config, p.sysfs_root_problem.is_some())
        };
        let root = dir.path().display().to_string();
        let (set, unusable) = at(&format!("sysfs_root = {root:?}\n"));
        assert!(!unusable);
        let flag = Path::new("/flag");
        assert_eq!(
            host_source(Some(flag), &set, unusable, true),
            HostSource::SysfsFlag(flag.into())
        );
        assert_eq!(
            host_source(None, &set, unusable, false),
            HostSource::SysfsPolicy(dir.path().into())
        );
        assert_eq!(
            host_source(None, &set, unusable, true),
            HostSource::NotPolicySysfs {
                root: dir.path().into(),
                why: Unread::Remote
            }
        );
        let (unset, unusable) = at("");
        assert_eq!(
            host_source(None, &unset, unusable, false),
            HostSource::NodeDevices
        );
        let (bad, unusable) = at("sysfs_root = '/nonexistent/sys'\n");
        assert_eq!(
            host_source(None, &bad, unusable, false),
            HostSource::NotPolicySysfs {
                root: "/nonexistent/sys".into(),
                why: Unread::NotADirectory
            }
        );
    }
}
