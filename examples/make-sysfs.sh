#!/usr/bin/env bash
# Rebuilds examples/sysfs, the fake host the example domains are judged on:
#
#   phbguard check --sysfs-root examples/sysfs examples/domains/*.xml
#
# The host is a two-socket POWER9 box (NUMA nodes 0 and 8, the chip ids): PCI domains
# 0000-0005 hang off chip 0, 0030-0035 off chip 8. For each device in the table below it makes
#
#   bus/pci/devices/DDDD:BB:SS.F/iommu_group -> ../../../../kernel/iommu_groups/N   (relative)
#   bus/pci/devices/DDDD:BB:SS.F/numa_node      "N\n", as the kernel writes it (-1 = none)
#   kernel/iommu_groups/N/devices/DDDD:BB:SS.F -> ../../../../bus/pci/devices/DDDD:BB:SS.F
#
# (the group's devices/ links also keep each group directory non-empty, so git keeps it).
#
# Usage: examples/make-sysfs.sh            rebuild examples/sysfs in place
#        examples/make-sysfs.sh DIR        build the tree in DIR (must not exist yet)
#        examples/make-sysfs.sh --check    exit 1 unless examples/sysfs is exactly what the table gives
set -euo pipefail

# address        iommu_group  numa_node   what it is                        used by (examples/domains/)
DEVICES='
0000:01:00.0     0            0           NVMe SSD                          compliant-db01.xml
0001:01:00.0     1            0           NVMe SSD                          hostdev-on-default-phb.xml
0002:01:00.0     6            -1          NVMe SSD, firmware gives no node  warning-only-phb-numa-mismatch.xml
0003:01:00.2     7            0           ConnectX-5 SR-IOV VF              compliant-sriov-numa-ai-train03.xml
0003:01:00.3     8            0           ConnectX-5 SR-IOV VF              hostdev-behind-bridge.xml
0004:04:00.0     2            0           GPU                               phb-mixes-iommu-groups.xml
0004:05:00.0     3            0           GPU                               phb-mixes-iommu-groups.xml
0005:01:00.0     4            0           2-port FC HBA, port 0             iommu-group-split.xml
0005:01:00.1     4            0           2-port FC HBA, port 1             iommu-group-split.xml
0030:01:00.0     10           8           NVMe SSD                          compliant-db01.xml
0031:01:00.0     11           8           2-port 25GbE NIC, port 0          compliant-sriov-numa-ai-train03.xml
0031:01:00.1     11           8           2-port 25GbE NIC, port 1          compliant-sriov-numa-ai-train03.xml
0032:01:00.0     14           8           NVMe SSD                          warning-only-phb-numa-mismatch.xml
0034:01:00.0     15           8           FC HBA (tape library)             emulated-on-hostdev-phb.xml
0035:03:00.0     12           8           GPU                               phb-target-duplicate.xml
0035:04:00.0     13           8           GPU                               phb-target-duplicate.xml
'
# Deliberately absent: 0033:01:00.0, which unknown-device.xml passes through
# (phbguard reports iommu-group-unknown for it).

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
tree="$here/sysfs"

build() {
    local root=$1 addr group node rest
    mkdir -p "$root/bus/pci/devices" "$root/kernel/iommu_groups"
    while read -r addr group node rest; do
        [ -n "$addr" ] || continue
        mkdir -p "$root/bus/pci/devices/$addr" "$root/kernel/iommu_groups/$group/devices"
        ln -s "../../../../kernel/iommu_groups/$group" "$root/bus/pci/devices/$addr/iommu_group"
        printf '%s\n' "$node" >"$root/bus/pci/devices/$addr/numa_node"
        ln -s "../../../../bus/pci/devices/$addr" "$root/kernel/iommu_groups/$group/devices/$addr"
    done <<<"$DEVICES"
}

case "${1:-}" in
--check)
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    build "$tmp/sysfs"
    # diff -r compares symlink targets as text with --no-dereference (GNU diffutils >= 3.3).
    if ! diff -r --no-dereference "$tmp/sysfs" "$tree"; then
        echo "examples/sysfs differs from the table in $0; run it without arguments" >&2
        exit 1
    fi
    ;;
"")
    rm -rf "$tree"
    build "$tree"
    ;;
-*)
    echo "usage: $0 [--check | DIR]" >&2
    exit 2
    ;;
*)
    if [ -e "$1" ]; then
        echo "$0: $1 already exists" >&2
        exit 2
    fi
    build "$1"
    ;;
esac
