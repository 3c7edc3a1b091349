#!/usr/bin/env bash
# Judging a fleet: `phbguard audit` (one connection, one pass over virConnectListAllDomains)
# against the loop an admin would write without it:
#   for d in $(virsh list --all --name); do virsh dumpxml --inactive "$d" | phbguard check -; done
#
# The host is libvirt's test driver (test:///ABS/PATH/fleet.xml, in-process, no daemon) holding
# N pSeries guests (default 200), each with 4 hostdevs on PHBs of their own and 2 virtio disks,
# and a node device (IOMMU group, NUMA node) for every hostdev; the loop's `check` gets the same
# facts from a fake sysfs tree. Both judge the same definitions with the same engine: what
# differs is one process and one connection versus two processes and a connection per guest.
# With the test driver every virsh connection re-reads the host file, as every real connection
# pays a handshake with libvirtd; the exact ratio differs against a daemon, the shape does not.
#
# Usage: benches/audit-fleet.sh [GUESTS]   (needs hyperfine and virsh)
#        PHBGUARD_BIN_DIR=target/release benches/audit-fleet.sh   (default: a debug build)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-200}

for tool in hyperfine virsh; do
    command -v "$tool" >/dev/null || { echo "audit-fleet: $tool is needed" >&2; exit 2; }
done
if [[ -z ${PHBGUARD_BIN_DIR:-} ]]; then
    cargo build --locked --quiet --workspace --bins
    PHBGUARD_BIN_DIR=$PWD/target/debug
fi
bin=$PHBGUARD_BIN_DIR/phbguard

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
node=$work/fleet.xml
{
    echo "<node>"
    for g in $(seq 1 "$N"); do
        echo "<domain type='kvm'><name>guest$g</name><memory>1048576</memory>"
        echo "<os><type arch='ppc64le' machine='pseries'>hvm</type></os><devices>"
        echo "<controller type='pci' index='0' model='pci-root'><model name='spapr-pci-host-bridge'/><target index='0'/></controller>"
        for h in 1 2 3 4; do
            echo "<controller type='pci' index='$h' model='pci-root'><model name='spapr-pci-host-bridge'/><target index='$h'/></controller>"
            printf "<hostdev mode='subsystem' type='pci' managed='yes'><source><address domain='0x%04x' bus='0x%02x' slot='0x00' function='0x0'/></source>" "$g" "$h"
            echo "<address type='pci' domain='0x0000' bus='0x0$h' slot='0x01' function='0x0'/></hostdev>"
        done
        for d in a b; do
            echo "<disk type='file' device='disk'><source file='/var/lib/libvirt/images/g$g$d.qcow2'/><target dev='vd$d' bus='virtio'/>"
            echo "<address type='pci' domain='0x0000' bus='0x00' slot='0x0$([[ $d = a ]] && echo 4 || echo 5)' function='0x0'/></disk>"
        done
        echo "</devices></domain>"
    done
    for g in $(seq 1 "$N"); do
        for h in 1 2 3 4; do
            group=$((g * 10 + h))
            addr=$(printf '%04x:%02x:00.0' "$g" "$h")
            printf "<device><name>pci_%04x_%02x_00_0</name><parent>computer</parent><capability type='pci'>" "$g" "$h"
            echo "<domain>$g</domain><bus>$h</bus><slot>0</slot><function>0</function><product id='0x1017'/><vendor id='0x15b3'/>"
            printf "<iommuGroup number='%d'><address domain='0x%04x' bus='0x%02x' slot='0x00' function='0x0'/></iommuGroup>" "$group" "$g" "$h"
            echo "<numa node='0'/></capability></device>"
            mkdir -p "$work/sys/bus/pci/devices/$addr" "$work/sys/kernel/iommu_groups/$group"
            ln -s "../../../../kernel/iommu_groups/$group" "$work/sys/bus/pci/devices/$addr/iommu_group"
            echo 0 > "$work/sys/bus/pci/devices/$addr/numa_node"
        done
    done
    echo "</node>"
} > "$node"
uri=test://$node

# Both must agree that the fleet is clean before timing them.
"$bin" audit -c "$uri" --format json > "$work/audit.json"
grep -q '"definition":"live"' "$work/audit.json"
[[ $(grep -o '"findings":\[\]' "$work/audit.json" | wc -l) == $((2 * N)) ]] || {
    echo "audit-fleet: the generated fleet is not clean" >&2; exit 1; }
export bin uri work
loop='for d in $(virsh -q -c "$uri" list --all --name); do virsh -q -c "$uri" dumpxml --inactive "$d" | "$bin" check --sysfs-root "$work/sys" - > /dev/null; done'
bash -c "$loop"

hyperfine --warmup 1 --runs 3 --export-markdown "$work/result.md" \
    -n "phbguard audit ($N guests, persistent + live)" "$bin audit -c '$uri' > /dev/null" \
    -n "virsh dumpxml | phbguard check - loop ($N guests, persistent only)" "bash -c '$loop'"
cat "$work/result.md"
