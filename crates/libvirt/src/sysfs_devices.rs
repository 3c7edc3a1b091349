//! The host's PCI devices read from a sysfs tree, for `groups --sysfs-root`: what libvirt's node
//! devices say of each, as far as sysfs has it. Vendor and product names are not there (libvirt
//! takes them from the PCI ids database through udev); the ids are.

use std::path::Path;

use phbguard_core::host::HostFacts;
use phbguard_core::model::PciAddr;
use phbguard_io::input::{Links, read_regular};
use phbguard_io::sysfs::Sysfs;

use phbguard_core::vfio::nodedev_name;

use crate::nodedev::PciDevice;

/// A sysfs attribute is a number and a newline; anything longer is not one.
const MAX_ATTRIBUTE_BYTES: u64 = 64;

/// Every entry of `bus/pci/devices` whose name is a PCI address, by address.
pub fn all_pci(sysfs: &Sysfs) -> Result<Vec<PciDevice>, String> {
    let dir = sysfs.root().join("bus/pci/devices");
    let entries = std::fs::read_dir(&dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
    let mut all = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
        let Some(addr) = entry.file_name().to_str().and_then(PciAddr::parse_sysfs) else {
            continue;
        };
        let path = entry.path();
        let iommu_group = sysfs.iommu_group(addr).ok();
        all.push(PciDevice {
            name: nodedev_name(addr),
            addr,
            vendor_id: attribute(&path.join("vendor")),
            product_id: attribute(&path.join("device")),
            vendor: None,
            product: None,
            driver: sysfs.driver(addr).ok().flatten(),
            iommu_group,
            iommu_members: iommu_group
                .and_then(|g| sysfs.group_members(g).ok())
                .unwrap_or_default(),
            bridge: sysfs.is_bridge(addr).unwrap_or(false),
            numa_node: sysfs.numa_node(addr),
            virt_functions: virt_functions(&path),
        });
    }
    all.sort_by_key(|d| d.addr);
    Ok(all)
}

/// A small attribute such as `vendor` (`0x15b3`), as written.
fn attribute(path: &Path) -> Option<String> {
    let bytes = read_regular(path, MAX_ATTRIBUTE_BYTES, Links::Follow).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    Some(text.trim().to_owned()).filter(|t| !t.is_empty())
}

/// The last component of a link's target: `driver` -> `.../drivers/vfio-pci`.
fn link_name(path: &Path) -> Option<String> {
    let target = std::fs::read_link(path).ok()?;
    Some(target.file_name()?.to_string_lossy().into_owned())
}

/// The VFs a PF's `virtfnN` links name.
fn virt_functions(device: &Path) -> Vec<PciAddr> {
    let Ok(entries) = std::fs::read_dir(device) else {
        return Vec::new();
    };
    let mut vfs: Vec<PciAddr> = entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("virtfn"))
        .filter_map(|e| link_name(&e.path()))
        .filter_map(|name| PciAddr::parse_sysfs(&name))
        .collect();
    vfs.sort();
    vfs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_with_their_ids_driver_group_node_and_vfs() {
        let root = tempfile::tempdir().unwrap();
        let devices = root.path().join("bus/pci/devices");
        let pf = devices.join("0002:04:00.0");
        std::fs::create_dir_all(&pf).unwrap();
        std::fs::write(pf.join("vendor"), "0x15b3\n").unwrap();
        std::fs::write(pf.join("device"), "0x1017\n").unwrap();
        std::fs::write(pf.join("numa_node"), "1\n").unwrap();
        std::os::unix::fs::symlink("../../../kernel/iommu_groups/30", pf.join("iommu_group")).unwrap();
        std::os::unix::fs::symlink("../../../bus/pci/drivers/mlx5_core", pf.join("driver")).unwrap();
        std::os::unix::fs::symlink("../0002:04:00.2", pf.join("virtfn0")).unwrap();
        std::fs::create_dir_all(devices.join("0030:01:00.0")).unwrap();
        std::fs::create_dir_all(devices.join("not-a-device")).unwrap();
        let all = all_pci(&Sysfs::new(root.path())).unwrap();
        assert_eq!(all.len(), 2, "{all:?}");
        let d = &all[0];
        assert_eq!(d.addr.to_string(), "0002:04:00.0");
        assert_eq!(d.name, "pci_0002_04_00_0");
        assert_eq!(
            (
                d.vendor_id.as_deref(),
                d.product_id.as_deref(),
                d.driver.as_deref()
            ),
            (Some("0x15b3"), Some("0x1017"), Some("mlx5_core"))
        );
        assert_eq!((d.iommu_group, d.numa_node), (Some(30), Some(1)));
        assert_eq!(d.virt_functions.len(), 1);
        assert_eq!(d.virt_functions[0].to_string(), "0002:04:00.2");
        let bare = &all[1];
        assert_eq!(
            (
                bare.iommu_group,
                bare.vendor_id.as_deref(),
                bare.driver.as_deref()
            ),
            (None, None, None)
        );
    }
}
