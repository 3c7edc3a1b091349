#!/usr/bin/env python3
"""Writes a compliant pSeries guest of N devices and the fake sysfs that knows its hostdevs.

    benches/gen_guest.py N DIR      -> DIR/guest.xml, DIR/broken.xml, DIR/sys/

The layout of benches/check.rs's domain(): PHB 0..=30 declared; even devices are hostdevs on
PHBs 1..=15 (host PCI domain = PHB, bus 1; PHB N's functions all in IOMMU group N+100),
odd ones virtio disks on PHB 0 and PHBs 16..=30, filling slots 1..31 and functions 0..7.
broken.xml is the same guest with its first hostdev moved onto the default PHB.
"""
import os
import sys


def main():
    devices, out = int(sys.argv[1]), sys.argv[2]
    sysfs = os.path.join(out, "sys")
    parts = [
        "<domain type='kvm'>\n  <name>bench</name>\n"
        "  <uuid>00000000-0000-4000-8000-000000000001</uuid>\n"
        "  <memory unit='GiB'>64</memory>\n  <os>\n"
        "    <type arch='ppc64le' machine='pseries'>hvm</type>\n  </os>\n  <devices>\n"
    ]
    for phb in range(31):
        parts.append(
            f"    <controller type='pci' index='{phb}' model='pci-root'>\n"
            f"      <model name='spapr-pci-host-bridge'/>\n      <target index='{phb}'/>\n"
            "    </controller>\n"
        )
    hostdev_pos = emulated_pos = 0
    first_hostdev = None
    for i in range(devices):
        if i % 2 == 0:
            phb, slot_fn = 1 + hostdev_pos % 15, hostdev_pos // 15
            slot, function = 1 + slot_fn // 8, slot_fn % 8
            host = f"{phb:04x}:01:{slot:02x}.{function:x}"
            dev = os.path.join(sysfs, "bus/pci/devices", host)
            os.makedirs(dev, exist_ok=True)
            os.makedirs(os.path.join(sysfs, "kernel/iommu_groups", str(phb + 100)), exist_ok=True)
            link = os.path.join(dev, "iommu_group")
            if not os.path.islink(link):
                os.symlink(f"../../../../kernel/iommu_groups/{phb + 100}", link)
            with open(os.path.join(dev, "numa_node"), "w") as f:
                f.write("0\n")
            # As a host lists a group's devices and a device's driver (the hook reads both
            # for iommu-group-not-viable): every hostdev on vfio-pci.
            members = os.path.join(sysfs, "kernel/iommu_groups", str(phb + 100), "devices")
            os.makedirs(members, exist_ok=True)
            os.symlink(f"../../../../bus/pci/devices/{host}", os.path.join(members, host))
            os.makedirs(os.path.join(sysfs, "bus/pci/drivers/vfio-pci"), exist_ok=True)
            os.symlink("../../drivers/vfio-pci", os.path.join(dev, "driver"))
            guest = f"bus='{phb:#04x}' slot='{slot:#04x}' function='{function:#x}'"
            text = (
                "    <hostdev mode='subsystem' type='pci' managed='yes'>\n      <source>\n"
                f"        <address domain='{phb:#06x}' bus='0x01' slot='{slot:#04x}' function='{function:#x}'/>\n"
                f"      </source>\n      <address type='pci' domain='0x0000' {guest}/>\n"
                "    </hostdev>\n"
            )
            if first_hostdev is None:
                first_hostdev = (len(parts), guest)
            hostdev_pos += 1
        else:
            phb_pos, slot_fn = emulated_pos % 16, emulated_pos // 16
            phb = 0 if phb_pos == 0 else 15 + phb_pos
            slot, function = 1 + slot_fn // 8, slot_fn % 8
            text = (
                "    <disk type='file' device='disk'>\n      <driver name='qemu' type='raw'/>\n"
                f"      <source file='/var/lib/libvirt/images/d{i}.img'/>\n"
                f"      <target dev='vd{i}' bus='virtio'/>\n"
                f"      <address type='pci' domain='0x0000' bus='{phb:#04x}' slot='{slot:#04x}' function='{function:#x}'/>\n"
                "    </disk>\n"
            )
            emulated_pos += 1
        parts.append(text)
    parts.append("  </devices>\n</domain>\n")
    with open(os.path.join(out, "guest.xml"), "w") as f:
        f.write("".join(parts))
    if first_hostdev is not None:
        index, guest = first_hostdev
        # The guest-side address is the hostdev's last one (the source address comes first).
        head, _, tail = parts[index].rpartition(guest)
        parts[index] = head + "bus='0x00' slot='0x1f' function='0x7'" + tail
    with open(os.path.join(out, "broken.xml"), "w") as f:
        f.write("".join(parts))


if __name__ == "__main__":
    main()
