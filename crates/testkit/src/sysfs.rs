//! Fake sysfs trees: the host facts phbguard reads, without the host.

use std::path::Path;

/// A sysfs tree in a temporary directory, laid out as Linux does:
/// `bus/pci/devices/DDDD:BB:SS.F/iommu_group -> ../../../../kernel/iommu_groups/N`, the group's
/// `kernel/iommu_groups/N/devices/DDDD:BB:SS.F` link back to the device, its `driver` link to
/// `bus/pci/drivers/NAME`, its `class` and its `numa_node`. A device is bound to vfio-pci (a
/// host prepared for passthrough) unless [`FakeSysfs::driver`] says otherwise.
pub struct FakeSysfs {
    dir: tempfile::TempDir,
}

/// The driver a device of a fake host is bound to unless a test says otherwise.
pub const DEFAULT_DRIVER: &str = "vfio-pci";

impl FakeSysfs {
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        FakeSysfs {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// Adds a device, bound to [`DEFAULT_DRIVER`], of class 0x020000 (an Ethernet
    /// controller); `group: None` leaves out the iommu_group link.
    pub fn device(self, addr: &str, group: Option<u32>, numa_node: Option<i32>) -> Self {
        let dev = self.dir.path().join("bus/pci/devices").join(addr);
        std::fs::create_dir_all(&dev).unwrap();
        if let Some(g) = group {
            let members = self.dir.path().join(format!("kernel/iommu_groups/{g}/devices"));
            std::fs::create_dir_all(&members).unwrap();
            std::os::unix::fs::symlink(
                format!("../../../../kernel/iommu_groups/{g}"),
                dev.join("iommu_group"),
            )
            .unwrap();
            std::os::unix::fs::symlink(format!("../../../../bus/pci/devices/{addr}"), members.join(addr))
                .unwrap();
        }
        if let Some(n) = numa_node {
            std::fs::write(dev.join("numa_node"), format!("{n}\n")).unwrap();
        }
        self.class(addr, 0x020000).driver(addr, Some(DEFAULT_DRIVER))
    }

    /// Binds the device to `driver`, or to none.
    pub fn driver(self, addr: &str, driver: Option<&str>) -> Self {
        let dev = self.dir.path().join("bus/pci/devices").join(addr);
        let link = dev.join("driver");
        if link.symlink_metadata().is_ok() {
            std::fs::remove_file(&link).unwrap();
        }
        if let Some(driver) = driver {
            std::fs::create_dir_all(self.dir.path().join("bus/pci/drivers").join(driver)).unwrap();
            std::os::unix::fs::symlink(format!("../../drivers/{driver}"), link).unwrap();
        }
        self
    }

    /// Sets the device's PCI class (`0x060400` is a PCI-to-PCI bridge).
    pub fn class(self, addr: &str, class: u32) -> Self {
        let dev = self.dir.path().join("bus/pci/devices").join(addr);
        std::fs::write(dev.join("class"), format!("{class:#08x}\n")).unwrap();
        self
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn path_str(&self) -> &str {
        self.dir.path().to_str().expect("temp paths are UTF-8")
    }
}
