#!/usr/bin/python3
# BASELINE for benches/compare.sh, not part of phbguard: the libvirt qemu hook an admin could
# write with Python's standard library alone, judging the same PHB isolation rule at
# 'prepare begin' (hostdevs off the default PHB, one IOMMU group per PHB, no emulated device
# beside a hostdev, no pci-bridge). It is as careful as a quick script is: no size bound, no
# syslog, no policy file, no migration handling. The point is its cost per call.
#
#   baseline_hook.py DOMAIN OP SUBOP EXTRA < domain.xml     (sysfs: $BASELINE_SYSFS or /sys)
import os
import sys
import xml.etree.ElementTree as ET


def num(text):
    return int(text, 0) if text else 0


def main():
    if sys.argv[2:4] != ["prepare", "begin"]:
        return 0
    root = ET.fromstring(sys.stdin.buffer.read())
    if root.findtext("os/type") != "hvm" or "pseries" not in (root.find("os/type").get("machine") or ""):
        return 0
    sysfs = os.environ.get("BASELINE_SYSFS", "/sys")
    devices = root.find("devices")
    errors = []
    phb_groups = {}
    emulated_buses = set()
    for dev in devices:
        if dev.tag == "controller" and dev.get("model") == "pci-bridge":
            errors.append(f"pci-bridge index {dev.get('index')} on a pSeries guest")
        addr = dev.find("address")
        if addr is None or addr.get("type") != "pci":
            continue
        bus = num(addr.get("bus"))
        if dev.tag == "hostdev":
            src = dev.find("source/address")
            host = "%04x:%02x:%02x.%x" % tuple(num(src.get(k)) for k in ("domain", "bus", "slot", "function"))
            if bus == 0:
                errors.append(f"hostdev {host} on the default PHB")
                continue
            try:
                group = os.path.basename(os.readlink(f"{sysfs}/bus/pci/devices/{host}/iommu_group"))
            except OSError:
                errors.append(f"hostdev {host}: no IOMMU group")
                continue
            phb_groups.setdefault(bus, set()).add(group)
        else:
            emulated_buses.add(bus)
    for bus, groups in sorted(phb_groups.items()):
        if len(groups) > 1:
            errors.append(f"PHB {bus} mixes IOMMU groups {sorted(groups)}")
        if bus in emulated_buses:
            errors.append(f"emulated device on hostdev PHB {bus}")
    for e in errors:
        print(f"baseline hook: {sys.argv[1]}: {e}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
