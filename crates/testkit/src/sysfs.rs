//! Fake sysfs trees: the host facts phbguard reads, without the host.

use std::path::Path;

/// A sysfs tree in a temporary directory, laid out as Linux does:
/// `bus/pci/devices/DDDD:BB:SS.F/iommu_group -> ../../../../kernel/iommu_groups/N`
/// and `bus/pci/devices/DDDD:BB:SS.F/numa_node`.
pub struct FakeSysfs {
    dir: tempfile::TempDir,
}

impl FakeSysfs {
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        FakeSysfs {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// Adds a device; `group: None` leaves out the iommu_group link.
    pub fn device(self, addr: &str, group: Option<u32>, numa_node: Option<i32>) -> Self {
        let dev = self.dir.path().join("bus/pci/devices").join(addr);
        std::fs::create_dir_all(&dev).unwrap();
        if let Some(g) = group {
            std::fs::create_dir_all(self.dir.path().join(format!("kernel/iommu_groups/{g}"))).unwrap();
            std::os::unix::fs::symlink(
                format!("../../../../kernel/iommu_groups/{g}"),
                dev.join("iommu_group"),
            )
            .unwrap();
        }
        if let Some(n) = numa_node {
            std::fs::write(dev.join("numa_node"), format!("{n}\n")).unwrap();
        }
        self
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn path_str(&self) -> &str {
        self.dir.path().to_str().expect("temp paths are UTF-8")
    }
}
