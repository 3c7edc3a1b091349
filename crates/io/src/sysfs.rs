//! Host facts from a sysfs tree (`/sys` on a real host, a fake tree in tests), read as libvirt
//! reads them: a device's `iommu_group` link, its `numa_node` attribute, its `driver` link and
//! `class`, and the devices of an IOMMU group (`kernel/iommu_groups/N/devices`).

use std::ffi::OsString;
use std::io::{self, ErrorKind};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

use phbguard_core::host::{GroupUnknown, HostFacts};
use phbguard_core::model::PciAddr;
use phbguard_core::vfio::Binding;
use rustix::fs::{AtFlags, CWD, FileType, Mode, OFlags};

use crate::input::{Links, read_regular};

/// The most phbguard reads of one sysfs attribute (a number and a newline).
const MAX_ATTRIBUTE_BYTES: u64 = 64;
/// The most devices phbguard reads of one IOMMU group; a group behind a PCIe switch without
/// ACS holds a few dozen, and more than this is no group a guest can be given.
pub const MAX_GROUP_MEMBERS: usize = 1024;

/// A sysfs tree: `/sys` on a real host, a fake tree in tests.
#[derive(Debug, Clone)]
pub struct Sysfs {
    root: PathBuf,
}

impl Sysfs {
    /// The sysfs tree at `root` (`/sys` on a real host).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Sysfs { root: root.into() }
    }

    /// Where the tree is.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether the root is a directory. A root that is not would silently make every host
    /// device "not on this host", so callers refuse it (check, fix) or stop trusting their
    /// verdict (the hook judges in warn mode).
    pub fn check_root(&self) -> Result<(), String> {
        match self.unusable() {
            None => Ok(()),
            Some(why) => Err(format!("sysfs root {}: {why}", self.root.display())),
        }
    }

    /// Why the root cannot be read from (`not a directory`, or the error), if it cannot: for a
    /// message that names the root its own way (the policy file's `sysfs_root = "..."`).
    pub fn unusable(&self) -> Option<String> {
        match std::fs::metadata(&self.root) {
            Ok(m) if m.is_dir() => None,
            Ok(_) => Some("not a directory".into()),
            Err(e) => Some(e.to_string()),
        }
    }

    /// The device's directory. `addr` is made of parsed numbers and formatted as hex
    /// digits, so the path can only ever name an entry of `bus/pci/devices`.
    fn device_dir(&self, addr: PciAddr) -> PathBuf {
        self.root.join("bus/pci/devices").join(addr.to_string())
    }

    /// `bus/pci/devices` opened (O_PATH: only walked from, never listed), or `None` when it
    /// cannot be: each question then goes by the full path, whose error says why.
    fn open_devices(&self) -> Option<OwnedFd> {
        let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
        rustix::fs::openat(CWD, self.root.join("bus/pci/devices"), flags, Mode::empty()).ok()
    }

    /// `rel` under the root opened as a directory with `flags`, or `None` when it cannot be.
    fn open_dir(&self, rel: &str, flags: OFlags) -> Option<OwnedFd> {
        let flags = flags | OFlags::DIRECTORY | OFlags::CLOEXEC;
        rustix::fs::openat(CWD, self.root.join(rel), flags, Mode::empty()).ok()
    }

    /// The members of `group`, its `devices` directory listed under `groups`, the open
    /// `kernel/iommu_groups`, or by the full path when that could not be opened (whose error
    /// then says why).
    fn members_at(&self, groups: Option<BorrowedFd<'_>>, group: u32) -> Result<Vec<PciAddr>, String> {
        let rel = format!("kernel/iommu_groups/{group}/devices");
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NONBLOCK;
        let opened = match groups {
            Some(groups) => rustix::fs::openat(groups, format!("{group}/devices"), flags, Mode::empty()),
            None => rustix::fs::openat(CWD, self.root.join(&rel), flags, Mode::empty()),
        };
        let fd = opened.map_err(|e| format!("{rel}: {}", io::Error::from(e)))?;
        let mut dir = rustix::fs::Dir::new(fd).map_err(|e| format!("{rel}: {}", io::Error::from(e)))?;
        let mut members = Vec::new();
        while let Some(entry) = dir.read() {
            let entry = entry.map_err(|e| format!("{rel}: {}", io::Error::from(e)))?;
            let name = entry.file_name().to_string_lossy();
            if name == "." || name == ".." {
                continue;
            }
            let addr =
                PciAddr::parse_sysfs(&name).ok_or_else(|| format!("{rel}: '{name}' is not a PCI device"))?;
            if members.len() == MAX_GROUP_MEMBERS {
                return Err(format!("{rel}: more than {MAX_GROUP_MEMBERS} devices"));
            }
            members.push(addr);
        }
        members.sort_unstable();
        Ok(members)
    }

    /// The driver of `addr`, its link read under the open `bus/pci/devices`.
    fn driver_at(devices: impl AsFd, addr: PciAddr) -> Result<Option<String>, String> {
        let name = addr.to_string();
        let link = rustix::fs::readlinkat(&devices, format!("{name}/driver"), Vec::new())
            .map(|target| PathBuf::from(OsString::from_vec(target.into_bytes())))
            .map_err(io::Error::from);
        driver_of(link, || {
            rustix::fs::statat(&devices, &name, AtFlags::empty())
                .is_ok_and(|st| FileType::from_raw_mode(st.st_mode).is_dir())
        })
    }

    /// The IOMMU group of `addr`, its link read under the open `bus/pci/devices`.
    fn iommu_group_at(devices: impl AsFd, addr: PciAddr) -> Result<u32, GroupUnknown> {
        let name = addr.to_string();
        let link = rustix::fs::readlinkat(&devices, format!("{name}/iommu_group"), Vec::new())
            .map(|target| PathBuf::from(OsString::from_vec(target.into_bytes())))
            .map_err(io::Error::from);
        group_of(link, || {
            rustix::fs::statat(&devices, &name, AtFlags::empty())
                .is_ok_and(|st| FileType::from_raw_mode(st.st_mode).is_dir())
        })
    }
}

/// What a `driver` link says: its last component, or no driver when there is no link on a
/// device that exists.
fn driver_of(
    link: io::Result<PathBuf>,
    device_is_dir: impl FnOnce() -> bool,
) -> Result<Option<String>, String> {
    match link {
        Ok(target) => target
            .file_name()
            .map(|n| Some(n.to_string_lossy().into_owned()))
            .ok_or_else(|| format!("its driver link points to '{}'", target.display())),
        Err(e) if e.kind() == ErrorKind::NotFound && device_is_dir() => Ok(None),
        Err(e) if e.kind() == ErrorKind::NotFound => Err("the host has no such PCI device".into()),
        Err(e) => Err(format!("its driver link cannot be read: {e}")),
    }
}

/// Whether a `class` attribute (`0x060400\n`) names a bridge class.
fn bridge_class(bytes: &[u8]) -> Result<bool, String> {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim();
    let class = text
        .strip_prefix("0x")
        .and_then(|hex| u32::from_str_radix(hex, 16).ok())
        .ok_or_else(|| {
            format!(
                "its class '{}' is not a number",
                phbguard_core::escape::controls(text)
            )
        })?;
    Ok(matches!(class >> 8, 0x0604 | 0x0607 | 0x0609))
}

/// What an `iommu_group` link says: `link` is the result of reading it, `device_is_dir` tells
/// a missing device from a device without the link (asked only then).
fn group_of(link: io::Result<PathBuf>, device_is_dir: impl FnOnce() -> bool) -> Result<u32, GroupUnknown> {
    match link {
        Ok(target) => {
            let group = target
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.parse().ok());
            group.ok_or_else(|| GroupUnknown::BadLink(target.display().to_string()))
        }
        Err(e) if e.kind() == ErrorKind::NotFound && !device_is_dir() => Err(GroupUnknown::NoDevice),
        Err(e) if e.kind() == ErrorKind::NotFound => Err(GroupUnknown::NoLink),
        // EINVAL: an iommu_group that is not a symbolic link at all.
        Err(e) if e.kind() == ErrorKind::InvalidInput => {
            Err(GroupUnknown::BadLink("(not a symbolic link)".into()))
        }
        Err(e) => Err(GroupUnknown::Unreadable(e.to_string())),
    }
}

impl HostFacts for Sysfs {
    /// As libvirt reads it (src/util/virpci.c, virPCIDeviceAddressGetIOMMUGroupNum): the
    /// device's own `iommu_group` link, symbolic links followed on the way as a path lookup
    /// does.
    fn iommu_group(&self, addr: PciAddr) -> Result<u32, GroupUnknown> {
        let dir = self.device_dir(addr);
        group_of(std::fs::read_link(dir.join("iommu_group")), || dir.is_dir())
    }

    /// Each link read relative to `bus/pci/devices` opened once: the kernel walks two path
    /// components per device instead of the whole path (a 2,000-device guest asks about 1,000).
    fn iommu_groups(&self, addrs: &[PciAddr]) -> Vec<Result<u32, GroupUnknown>> {
        match self.open_devices() {
            Some(devices) => addrs.iter().map(|&a| Self::iommu_group_at(&devices, a)).collect(),
            None => addrs.iter().map(|&a| self.iommu_group(a)).collect(),
        }
    }

    /// The entries of `kernel/iommu_groups/N/devices`, the kernel's list of the group's
    /// devices (each a link named by its address), at most [`MAX_GROUP_MEMBERS`].
    fn group_members(&self, group: u32) -> Result<Vec<PciAddr>, String> {
        let groups = self.open_dir("kernel/iommu_groups", OFlags::PATH);
        self.members_at(groups.as_ref().map(|fd| fd.as_fd()), group)
    }

    /// Each group's directory opened under `kernel/iommu_groups` opened once.
    fn groups_members(&self, groups: &[u32]) -> Vec<Result<Vec<PciAddr>, String>> {
        let dir = self.open_dir("kernel/iommu_groups", OFlags::PATH);
        let at = dir.as_ref().map(|fd| fd.as_fd());
        groups.iter().map(|&g| self.members_at(at, g)).collect()
    }

    /// The device's `driver` link, whose last component is the driver's name (libvirt's
    /// `virPCIDeviceGetDriverPathAndName` reads the same link).
    fn driver(&self, addr: PciAddr) -> Result<Option<String>, String> {
        let dir = self.device_dir(addr);
        driver_of(std::fs::read_link(dir.join("driver")), || dir.is_dir())
    }

    /// From the device's `class` (`0x060400`): classes 06.04 and 06.09 are PCI-to-PCI bridges
    /// and 06.07 CardBus bridges, the devices whose header is not type 0 (the kernel decides by
    /// the header type, `pdev->hdr_type`; the PCI specification ties these classes to it).
    fn is_bridge(&self, addr: PciAddr) -> Result<bool, String> {
        let path = self.device_dir(addr).join("class");
        let bytes = read_regular(&path, MAX_ATTRIBUTE_BYTES, Links::Follow)
            .map_err(|e| format!("its class cannot be read: {e}"))?;
        bridge_class(&bytes)
    }

    /// Each `driver` link read under `bus/pci/devices` opened once.
    fn bindings(&self, addrs: &[PciAddr]) -> Vec<Binding> {
        let devices = self.open_devices();
        addrs
            .iter()
            .map(|&a| {
                let driver = match &devices {
                    Some(devices) => Self::driver_at(devices, a),
                    None => self.driver(a),
                };
                let bridge = Binding::needs_bridge(&driver).then(|| self.is_bridge(a));
                Binding { driver, bridge }
            })
            .collect()
    }

    fn is_nvlink2_bridge(&self, addr: PciAddr) -> Option<bool> {
        let of_node = self.device_dir(addr).join("of_node");
        let files = ["ibm,gpu", "ibm,nvlink", "ibm,nvlink-speed", "memory-region"];
        Some(files.iter().all(|f| of_node.join(f).exists()))
    }

    fn numa_node(&self, addr: PciAddr) -> Option<u32> {
        // Non-blocking, regular files only, a few bytes: a FIFO or /dev/zero planted in a
        // sysfs tree must not hang or eat a guest start (the kernel's attribute is "-1\n"
        // up to a few digits).
        let path = self.device_dir(addr).join("numa_node");
        let bytes = read_regular(&path, MAX_ATTRIBUTE_BYTES, Links::Follow).ok()?;
        let text = String::from_utf8(bytes).ok()?;
        // The kernel writes -1 when the platform does not say; that parses as no node.
        text.trim().parse::<u32>().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEV: PciAddr = PciAddr {
        domain: 2,
        bus: 1,
        slot: 0,
        function: 0,
    };

    fn tree() -> (tempfile::TempDir, PathBuf) {
        let root = tempfile::tempdir().unwrap();
        let dev = root.path().join("bus/pci/devices/0002:01:00.0");
        std::fs::create_dir_all(&dev).unwrap();
        (root, dev)
    }

    #[test]
    fn a_root_that_is_not_a_directory_is_refused() {
        assert!(
            Sysfs::new("/nonexistent/sys")
                .check_root()
                .unwrap_err()
                .contains("/nonexistent/sys")
        );
        let err = Sysfs::new("/dev/null").check_root().unwrap_err();
        assert_eq!(err, "sysfs root /dev/null: not a directory");
        assert_eq!(Sysfs::new("/").check_root(), Ok(()));
    }

    #[test]
    fn a_fifo_or_device_as_numa_node_is_no_node_and_does_not_block() {
        let (root, dev) = tree();
        let status = std::process::Command::new("mkfifo")
            .arg(dev.join("numa_node"))
            .status()
            .unwrap();
        assert!(status.success());
        assert_eq!(Sysfs::new(root.path()).numa_node(DEV), None);
        std::fs::remove_file(dev.join("numa_node")).unwrap();
        std::os::unix::fs::symlink("/dev/zero", dev.join("numa_node")).unwrap();
        assert_eq!(Sysfs::new(root.path()).numa_node(DEV), None);
        std::fs::remove_file(dev.join("numa_node")).unwrap();
        std::fs::write(dev.join("numa_node"), "1\n").unwrap();
        assert_eq!(Sysfs::new(root.path()).numa_node(DEV), Some(1));
    }

    /// The group of `addr` asked alone (by the full path) and in a batch (under the open
    /// `bus/pci/devices`): the two ways must agree on every answer.
    fn group(host: &Sysfs, addr: PciAddr) -> Result<u32, GroupUnknown> {
        let alone = host.iommu_group(addr);
        let batch = host.iommu_groups(&[DEV, addr]).pop().unwrap();
        assert_eq!(alone, batch, "{addr}");
        alone
    }

    #[test]
    fn iommu_group_errors_keep_their_reason() {
        let (root, dev) = tree();
        let host = Sysfs::new(root.path());
        assert_eq!(group(&host, DEV), Err(GroupUnknown::NoLink));
        let other = PciAddr { bus: 9, ..DEV };
        assert_eq!(group(&host, other), Err(GroupUnknown::NoDevice));
        // A loop in the path: ELOOP, not "no link".
        let looped = root.path().join("bus/pci/devices/0002:02:00.0");
        std::os::unix::fs::symlink(&looped, &looped).unwrap();
        match group(&host, PciAddr { bus: 2, ..DEV }) {
            Err(GroupUnknown::Unreadable(why)) => assert!(why.contains("symbolic links"), "{why}"),
            other => panic!("{other:?}"),
        }
        // A device entry that is a file: its link cannot be read (ENOTDIR), and says why.
        std::fs::write(root.path().join("bus/pci/devices/0002:03:00.0"), "").unwrap();
        match group(&host, PciAddr { bus: 3, ..DEV }) {
            Err(GroupUnknown::Unreadable(why)) => assert!(why.contains("Not a directory"), "{why}"),
            other => panic!("{other:?}"),
        }
        // A regular file where the link should be.
        std::fs::write(dev.join("iommu_group"), "7").unwrap();
        assert!(matches!(group(&host, DEV), Err(GroupUnknown::BadLink(_))));
        std::fs::remove_file(dev.join("iommu_group")).unwrap();
        std::fs::create_dir_all(root.path().join("kernel/iommu_groups/7")).unwrap();
        std::os::unix::fs::symlink("../../../../kernel/iommu_groups/7", dev.join("iommu_group")).unwrap();
        assert_eq!(group(&host, DEV), Ok(7));
        // A link to something not a group.
        let odd = PciAddr { bus: 4, ..DEV };
        let odd_dir = root.path().join("bus/pci/devices/0002:04:00.0");
        std::fs::create_dir_all(&odd_dir).unwrap();
        std::os::unix::fs::symlink(
            "../../../../kernel/iommu_groups/seven",
            odd_dir.join("iommu_group"),
        )
        .unwrap();
        assert_eq!(
            group(&host, odd),
            Err(GroupUnknown::BadLink(
                "../../../../kernel/iommu_groups/seven".into()
            ))
        );
        // The batch answers in the order asked.
        assert_eq!(
            host.iommu_groups(&[other, DEV, odd, DEV]),
            [host.iommu_group(other), Ok(7), host.iommu_group(odd), Ok(7)]
        );
    }

    #[test]
    fn without_a_devices_directory_every_device_is_missing_or_unreadable() {
        // No bus/pci/devices at all: every device is not on this host.
        let root = tempfile::tempdir().unwrap();
        let host = Sysfs::new(root.path());
        assert_eq!(host.iommu_groups(&[DEV]), [Err(GroupUnknown::NoDevice)]);
        assert_eq!(host.iommu_group(DEV), Err(GroupUnknown::NoDevice));
        // bus/pci/devices is a file: the batch cannot open it and says what the path says.
        std::fs::create_dir_all(root.path().join("bus/pci")).unwrap();
        std::fs::write(root.path().join("bus/pci/devices"), "").unwrap();
        match &host.iommu_groups(&[DEV])[..] {
            [Err(GroupUnknown::Unreadable(why))] => assert!(why.contains("Not a directory"), "{why}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(host.iommu_groups(&[DEV]), [host.iommu_group(DEV)]);
    }

    #[test]
    fn group_members_drivers_and_bridges_as_a_host_lays_them_out() {
        let (root, dev) = tree();
        let host = Sysfs::new(root.path());
        let members = root.path().join("kernel/iommu_groups/7/devices");
        std::fs::create_dir_all(&members).unwrap();
        let bridge = root.path().join("bus/pci/devices/0002:00:00.0");
        std::fs::create_dir_all(&bridge).unwrap();
        for name in ["0002:01:00.0", "0002:00:00.0"] {
            std::os::unix::fs::symlink(format!("../../../../bus/pci/devices/{name}"), members.join(name))
                .unwrap();
        }
        let port = PciAddr { bus: 0, ..DEV };
        assert_eq!(host.group_members(7), Ok(vec![port, DEV]));
        assert!(
            host.group_members(8)
                .unwrap_err()
                .contains("kernel/iommu_groups/8/devices")
        );
        // The batch, under one open kernel/iommu_groups, answers as each question alone.
        assert_eq!(
            host.groups_members(&[8, 7]),
            [host.group_members(8), host.group_members(7)]
        );
        // No driver link: no driver; a link: its last component.
        assert_eq!(host.driver(DEV), Ok(None));
        std::fs::create_dir_all(root.path().join("bus/pci/drivers/mlx5_core")).unwrap();
        std::os::unix::fs::symlink("../../drivers/mlx5_core", dev.join("driver")).unwrap();
        assert_eq!(host.driver(DEV), Ok(Some("mlx5_core".into())));
        assert!(host.driver(PciAddr { bus: 9, ..DEV }).is_err());
        // The class tells a bridge; one that cannot be read is unknown, not "no".
        std::fs::write(dev.join("class"), "0x020000\n").unwrap();
        std::fs::write(bridge.join("class"), "0x060400\n").unwrap();
        assert_eq!(host.is_bridge(DEV), Ok(false));
        assert_eq!(host.is_bridge(port), Ok(true));
        std::fs::write(bridge.join("class"), "bridge\n").unwrap();
        assert!(host.is_bridge(port).is_err());
        // The batch reads under one open directory, and asks the class only of a device on a
        // driver that claims DMA.
        let bindings = host.bindings(&[DEV, port]);
        assert_eq!(bindings[0].driver, Ok(Some("mlx5_core".into())));
        assert_eq!(bindings[0].bridge, Some(Ok(false)));
        assert_eq!(bindings[1].driver, Ok(None));
        assert_eq!(bindings[1].bridge, None);
        // A name in the group that is no PCI address: the members are unknown.
        std::fs::write(members.join("platform-thing"), "").unwrap();
        assert!(host.group_members(7).unwrap_err().contains("is not a PCI device"));
    }
}
