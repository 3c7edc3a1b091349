#!/usr/bin/env bash
# What the hook costs libvirtd per call, against the floor of starting any process.
#
# Runs the *installed hook form* (hooks/qemu.d/phbguard, its '#!' line pointing at a release
# build) on
#   - 'prepare begin' with a 40-device domain XML on stdin (20 hostdevs, each on a PHB of its
#     own, 20 virtio disks on the default PHB; compliant, so the full judgement runs), against a
#     fake sysfs that knows every hostdev;
#   - 'stopped end' (stands for every op phbguard lets through at once);
# beside /bin/true, with hyperfine, and prints the ratios (targets: prepare <= 2x, others
# <= 1.3x). Then the peak RSS of each hook call (/usr/bin/time -v; target < 4 MiB), and ldd.
#
# Usage: benches/hook-latency.sh [RUNS]      (default 2000; needs hyperfine, /usr/bin/time)
#        PHBGUARD_BIN=/path/to/phbguard benches/hook-latency.sh   (skip the cargo build; e.g. a
#        static build: RUSTFLAGS="-C target-feature=+crt-static" cargo build --release
#        --target x86_64-unknown-linux-gnu, see docs/hook.md)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-2000}

for tool in hyperfine /usr/bin/time; do
    command -v "$tool" >/dev/null || { echo "hook-latency: $tool is needed" >&2; exit 2; }
done

if [[ -z ${PHBGUARD_BIN:-} ]]; then
    cargo build --release --locked --quiet
    PHBGUARD_BIN=$PWD/target/release/phbguard
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The fake host and the 40-device guest.
devices=""
for i in $(seq 1 20); do
    addr=$(printf '%04x:01:00.0' "$i")
    mkdir -p "$work/sys/bus/pci/devices/$addr" "$work/sys/kernel/iommu_groups/$((100 + i))"
    ln -s "../../../../kernel/iommu_groups/$((100 + i))" "$work/sys/bus/pci/devices/$addr/iommu_group"
    echo 0 >"$work/sys/bus/pci/devices/$addr/numa_node"
    devices+="    <controller type='pci' index='$i' model='pci-root'>
      <model name='spapr-pci-host-bridge'/>
      <target index='$i'/>
    </controller>
    <hostdev mode='subsystem' type='pci' managed='yes'>
      <source><address domain='$(printf '0x%04x' "$i")' bus='0x01' slot='0x00' function='0x0'/></source>
      <address type='pci' domain='0x0000' bus='$(printf '0x%02x' "$i")' slot='0x01' function='0x0'/>
    </hostdev>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='/var/lib/libvirt/images/bench-$i.qcow2'/>
      <target dev='vd$(printf "\\x$(printf %x $((96 + i)))")' bus='virtio'/>
      <address type='pci' domain='0x0000' bus='0x00' slot='$(printf '0x%02x' $((i + 2)))' function='0x0'/>
    </disk>
"
done
cat >"$work/guest.xml" <<EOF
<domain type='kvm'>
  <name>bench</name>
  <uuid>00000000-0000-4000-8000-000000000040</uuid>
  <memory unit='GiB'>64</memory>
  <vcpu>16</vcpu>
  <os>
    <type arch='ppc64le' machine='pseries'>hvm</type>
  </os>
  <devices>
    <emulator>/usr/bin/qemu-system-ppc64</emulator>
    <controller type='pci' index='0' model='pci-root'>
      <model name='spapr-pci-host-bridge'/>
      <target index='0'/>
    </controller>
$devices  </devices>
</domain>
EOF

cat >"$work/phbguard.toml" <<EOF
sysfs_root = "$work/sys"
syslog_socket = "$work/no-syslog-here"
EOF
hook=$work/phbguard
sed "1s|.*|#!$PHBGUARD_BIN hook --config=$work/phbguard.toml|" hooks/qemu.d/phbguard >"$hook"
# The form not chosen, for comparison: a shell script that execs phbguard.
printf '#!/bin/sh\nexec %s hook --config=%s "$0" "$@"\n' "$PHBGUARD_BIN" "$work/phbguard.toml" >"$work/sh-hook"
chmod 755 "$hook" "$work/sh-hook"

# The guest must be judged compliant, or this measures the wrong path.
if ! "$hook" bench prepare begin - <"$work/guest.xml"; then
    echo "hook-latency: the benchmark guest was rejected" >&2
    exit 1
fi
ndev=$(grep -cE '<(hostdev|disk) ' "$work/guest.xml")
echo "guest: $ndev devices ($(wc -c <"$work/guest.xml") bytes); binary: $PHBGUARD_BIN ($(stat -c %s "$PHBGUARD_BIN") bytes)"

# 1. hyperfine -N (no shell between it and the command): the precise figure, but hyperfine
#    1.15 gives the command /dev/null as stdin, so only calls that don't read stdin fit.
hyperfine -N --warmup 100 --runs "$RUNS" --export-csv "$work/direct.csv" \
    -n true /bin/true \
    -n 'stopped end' "$hook bench stopped end -" \
    -n 'sh+exec' "$work/sh-hook bench stopped end -"

# 2. With the XML on stdin: each command $LOOP times in one bash loop, stdin redirected from
#    the file as libvirt's pipe would be; the loop's own fork per call is paid by all three.
LOOP=500
loop() { printf 'bash -c %q' "for ((i = 0; i < $LOOP; i++)); do $1; done"; }
hyperfine -N --warmup 2 --runs $((RUNS / 100 > 5 ? RUNS / 100 : 5)) --export-csv "$work/loop.csv" \
    -n true "$(loop "/bin/true <$work/guest.xml")" \
    -n 'stopped end' "$(loop "$hook bench stopped end - <$work/guest.xml")" \
    -n 'prepare begin' "$(loop "$hook bench prepare begin - <$work/guest.xml")"

echo
report() {
    awk -F, -v per="$2" -v what="$3" 'NR > 1 { mean[$1] = $2 * 1000 / per }
        END {
            print what
            printf "  %-14s %7.3f ms\n", "/bin/true", mean["true"]
            printf "  %-14s %7.3f ms  %.2fx the floor (target 1.3x)\n", "stopped end", mean["stopped end"], mean["stopped end"] / mean["true"]
            if ("sh+exec" in mean)
                printf "  %-14s %7.3f ms  %.2fx the floor (the #!/bin/sh form, not shipped)\n", "stopped end, sh", mean["sh+exec"], mean["sh+exec"] / mean["true"]
            if ("prepare begin" in mean)
                printf "  %-14s %7.3f ms  %.2fx the floor (target 2x)\n", "prepare begin", mean["prepare begin"], mean["prepare begin"] / mean["true"]
        }' "$1"
}
report "$work/direct.csv" 1 "per call, hyperfine -N ($RUNS runs):"
report "$work/loop.csv" $LOOP "per call, XML on stdin, bash loop of $LOOP:"

echo
rss() { /usr/bin/time -v "$@" 2>&1 >/dev/null | awk -F': ' '/Maximum resident set size/ { print $2 }'; }
printf 'peak RSS /bin/true      %6s KiB\n' "$(rss /bin/true </dev/null)"
printf 'peak RSS stopped end    %6s KiB\n' "$(rss "$hook" bench stopped end - <"$work/guest.xml")"
printf 'peak RSS prepare begin  %6s KiB (target < 4096)\n' "$(rss "$hook" bench prepare begin - <"$work/guest.xml")"

echo
echo "ldd $PHBGUARD_BIN:"
ldd "$PHBGUARD_BIN"
if ldd "$PHBGUARD_BIN" | grep -q libvirt; then
    echo "hook-latency: the binary links libvirt; the hook must not" >&2
    exit 1
fi
