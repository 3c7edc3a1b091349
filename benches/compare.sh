#!/usr/bin/env bash
# What the hook costs libvirtd per call, side by side with the alternatives, in one run on the
# same inputs (the 40- and 2,000-device guests of benches/check.rs, made by
# benches/gen_guest.py with a fake sysfs that knows every hostdev):
#   - the installed hook form (hooks/qemu.d/phbguard, its '#!' line pointing at a release
#     build) on 'prepare begin' (judged) and 'stopped end' (let through at once);
#   - `phbguard check FILE`;
#   - benches/baseline_hook.py: the Python standard-library hook an admin could write (a
#     baseline, not part of phbguard), run through its '#!/usr/bin/python3' line;
#   - `xmllint --noout FILE` (parsing the XML and nothing else, in C);
#   - /bin/true, the floor of starting any process, and an empty Rust program (`fn main() {}`,
#     built here with rustc -O, linked as distributions link Rust: dynamically, against libc
#     and libgcc_s), the floor of starting any Rust program that way.
# Prints per-call times, the ratios the README's speed table states with their goals, peak RSS and ldd.
#
# Usage: benches/compare.sh [--quick]       (--quick: fewer runs, for trying the script)
#        PHBGUARD_BIN=/path/to/phbguard benches/compare.sh   (skip the cargo build; e.g. a
#        static build: RUSTFLAGS="-C target-feature=+crt-static" cargo build --release
#        --target x86_64-unknown-linux-gnu, see docs/hook.md)
# Needs hyperfine, xmllint (libxml2-utils), python3, /usr/bin/time (Debian: apt-get install
# hyperfine libxml2-utils python3 time).
set -euo pipefail
cd "$(dirname "$0")/.."

runs=2000 loop_runs=5 loop40=200 loop2000=40
if [[ ${1:-} == --quick ]]; then
    runs=100 loop_runs=2 loop40=20 loop2000=4
fi

# The baseline runs as an admin's hook would: '#!/usr/bin/python3' (the distribution's Python,
# not a version manager's shim in PATH).
for tool in hyperfine xmllint python3 /usr/bin/python3 /usr/bin/time rustc; do
    command -v "$tool" >/dev/null || { echo "compare: $tool is needed" >&2; exit 2; }
done

if [[ -z ${PHBGUARD_BIN:-} ]]; then
    cargo build --release --locked --quiet
    PHBGUARD_BIN=$PWD/target/release/phbguard
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Inputs, a config per guest pointing the hook at its fake sysfs (and at no syslog socket),
# the hook file as the RPM installs it with its '#!' line rewritten, and the '#!/bin/sh' form
# not chosen, for comparison.
for n in 40 2000; do
    d=$work/$n
    mkdir -p "$d"
    python3 benches/gen_guest.py "$n" "$d"
    printf 'sysfs_root = "%s"\nsyslog_socket = "%s"\n' "$d/sys" "$work/no-syslog-here" > "$d/phbguard.toml"
    sed "1s|.*|#!$PHBGUARD_BIN hook --config=$d/phbguard.toml|" hooks/qemu.d/phbguard > "$d/hook"
    chmod 755 "$d/hook"
done
printf '#!/bin/sh\nexec %s hook --config=%s "$0" "$@"\n' "$PHBGUARD_BIN" "$work/40/phbguard.toml" > "$work/sh-hook"
chmod 755 "$work/sh-hook"
printf 'fn main() {}\n' > "$work/empty.rs"
rustc -O -C panic=abort -o "$work/rust-empty" "$work/empty.rs"

# Every candidate must give the verdict it is timed for, or this measures the wrong path:
# accept the compliant guest, and (the judging ones) refuse the broken one.
verdict() { # verdict WANT DESCRIPTION COMMAND...
    local want=$1 what=$2 rc=0
    shift 2
    "$@" > /dev/null 2>&1 || rc=$?
    if [[ $rc != "$want" ]]; then
        echo "compare: $what exited $rc, expected $want" >&2
        exit 1
    fi
}
for n in 40 2000; do
    d=$work/$n
    verdict 0 "hook, $n devices, compliant" "$d/hook" bench prepare begin - < "$d/guest.xml"
    verdict 1 "hook, $n devices, broken" "$d/hook" bench prepare begin - < "$d/broken.xml"
    verdict 0 "check, $n devices" "$PHBGUARD_BIN" check --sysfs-root "$d/sys" "$d/guest.xml"
    verdict 1 "check, $n devices, broken" "$PHBGUARD_BIN" check --sysfs-root "$d/sys" "$d/broken.xml"
    verdict 0 "baseline, $n devices" env BASELINE_SYSFS="$d/sys" benches/baseline_hook.py bench prepare begin - < "$d/guest.xml"
    verdict 1 "baseline, $n devices, broken" env BASELINE_SYSFS="$d/sys" benches/baseline_hook.py bench prepare begin - < "$d/broken.xml"
    verdict 0 "xmllint, $n devices" xmllint --noout "$d/guest.xml"
done

echo "machine: $(uname -m), $(nproc) CPUs, $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1), $(uname -r)"
echo "binary:  $PHBGUARD_BIN ($(stat -c %s "$PHBGUARD_BIN") bytes), $(/usr/bin/python3 --version), $(xmllint --version 2>&1 | head -1)"
for n in 40 2000; do
    echo "guest:   $n devices, $(wc -c < "$work/$n/guest.xml") bytes"
done

# 1. hyperfine -N (no shell between it and the command): the precise figure, but hyperfine
#    1.15 gives the command /dev/null as stdin, so only the call that does not read stdin fits.
echo
hyperfine -N --style basic --warmup 100 --runs "$runs" --export-csv "$work/direct.csv" \
    -n true /bin/true \
    -n 'rust empty' "$work/rust-empty" \
    -n 'stopped end' "$work/40/hook bench stopped end -" \
    -n 'sh stopped end' "$work/sh-hook bench stopped end -"

# 2. With the XML on stdin as libvirt's pipe gives it: each command LOOP times in one bash loop,
#    stdin redirected from the file; the loop's own fork per call is paid by every command.
loop() { # loop N COMMAND: a bash command line that runs COMMAND N times
    printf 'bash -c %q' "for ((i = 0; i < $1; i++)); do $2; done"
}
for n in 40 2000; do
    d=$work/$n
    l=$loop40
    [[ $n == 2000 ]] && l=$loop2000
    echo "$l" > "$d/loop"
    echo
    hyperfine -N --style basic --warmup 1 --runs "$loop_runs" --export-csv "$d/loop.csv" \
        -n true "$(loop "$l" "/bin/true < $d/guest.xml")" \
        -n 'stopped end' "$(loop "$l" "$d/hook bench stopped end - < $d/guest.xml")" \
        -n 'prepare begin' "$(loop "$l" "$d/hook bench prepare begin - < $d/guest.xml")" \
        -n 'phbguard check' "$(loop "$l" "$PHBGUARD_BIN check --sysfs-root $d/sys $d/guest.xml < $d/guest.xml")" \
        -n 'python hook' "$(loop "$l" "BASELINE_SYSFS=$d/sys benches/baseline_hook.py bench prepare begin - < $d/guest.xml")" \
        -n 'xmllint' "$(loop "$l" "xmllint --noout $d/guest.xml < $d/guest.xml")"
done

# Median per call in ms: ms CSV LOOP NAME. The median, not the mean: on a shared machine a
# few runs slowed by other work move the mean of every command by different amounts.
ms() { awk -F, -v per="$2" -v name="$3" 'NR > 1 && $1 == name { printf "%.3f", $4 * 1000 / per }' "$1"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

echo
echo "median per call (ms), XML on stdin, bash loop ($loop40 calls per run at 40 devices, $loop2000 at 2,000):"
printf '  %-16s %10s %8s %10s %8s\n' call "40 dev" "x true" "2000 dev" "x true"
for name in true 'stopped end' 'prepare begin' 'phbguard check' 'python hook' xmllint; do
    a=$(ms "$work/40/loop.csv" "$loop40" "$name") b=$(ms "$work/2000/loop.csv" "$loop2000" "$name")
    t40=$(ms "$work/40/loop.csv" "$loop40" true) t2000=$(ms "$work/2000/loop.csv" "$loop2000" true)
    printf '  %-16s %10s %7sx %10s %7sx\n' "$name" "$a" "$(ratio "$a" "$t40")" "$b" "$(ratio "$b" "$t2000")"
done
true_n=$(ms "$work/direct.csv" 1 true) stopped_n=$(ms "$work/direct.csv" 1 'stopped end') sh_n=$(ms "$work/direct.csv" 1 'sh stopped end')
rust_n=$(ms "$work/direct.csv" 1 'rust empty')
echo "median per call (ms), hyperfine -N, $runs runs: /bin/true $true_n, 'stopped end' $stopped_n ($(ratio "$stopped_n" "$true_n")x), the same through '#!/bin/sh' + exec $sh_n ($(ratio "$sh_n" "$true_n")x)"
echo "floor of a dynamically linked Rust program (fn main() {}): $rust_n ms ($(ratio "$rust_n" "$true_n")x /bin/true); 'stopped end' is $(ratio "$stopped_n" "$rust_n")x that floor"

p40=$(ms "$work/40/loop.csv" "$loop40" 'prepare begin') p2000=$(ms "$work/2000/loop.csv" "$loop2000" 'prepare begin')
py40=$(ms "$work/40/loop.csv" "$loop40" 'python hook') py2000=$(ms "$work/2000/loop.csv" "$loop2000" 'python hook')
t40=$(ms "$work/40/loop.csv" "$loop40" true) t2000=$(ms "$work/2000/loop.csv" "$loop2000" true)
verdict_of() { awk -v v="$1" -v g="$2" -v op="$3" 'BEGIN { print ((op == "<=" ? v <= g : v >= g) ? "met" : "NOT met") }'; }
row() { # row CALL VALUE GOAL-OP GOAL [NOTE]
    printf '| %s | %sx%s | %s %sx | %s |\n' "$1" "$2" "${5:+ ($5)}" "$3" "$4" "$(verdict_of "$2" "$4" "$3")"
}
echo
echo "| call | phbguard | goal | |"
echo "|---|---|---|---|"
row '`prepare begin`, 40-device guest' "$(ratio "$p40" "$t40")" '<=' 1.5 "$p40 ms"
row '`stopped end` (not judged), hyperfine -N' "$(ratio "$stopped_n" "$true_n")" '<=' 1.1 "$stopped_n ms"
row '`prepare begin`, 2,000-device guest' "$(ratio "$p2000" "$t2000")" '<=' 4 "$p2000 ms"
row 'Python stdlib hook / phbguard, 40 devices' "$(ratio "$py40" "$p40")" '>=' 20
row 'Python stdlib hook / phbguard, 2,000 devices' "$(ratio "$py2000" "$p2000")" '>=' 20
echo "(floor: /bin/true $true_n ms with hyperfine -N; $t40 / $t2000 ms per call in the bash loops)"

echo
rss() { /usr/bin/time -v "$@" 2>&1 >/dev/null | awk -F': ' '/Maximum resident set size/ { print $2 }'; }
printf 'peak RSS /bin/true                 %6s KiB\n' "$(rss /bin/true < /dev/null)"
printf 'peak RSS stopped end               %6s KiB\n' "$(rss "$work/40/hook" bench stopped end - < "$work/40/guest.xml")"
printf 'peak RSS prepare begin, 40 dev     %6s KiB\n' "$(rss "$work/40/hook" bench prepare begin - < "$work/40/guest.xml")"
printf 'peak RSS prepare begin, 2000 dev   %6s KiB\n' "$(rss "$work/2000/hook" bench prepare begin - < "$work/2000/guest.xml")"
printf 'peak RSS python hook, 2000 dev     %6s KiB\n' "$(BASELINE_SYSFS=$work/2000/sys rss benches/baseline_hook.py bench prepare begin - < "$work/2000/guest.xml")"

echo
echo "ldd $PHBGUARD_BIN:"
ldd "$PHBGUARD_BIN" || true
if ldd "$PHBGUARD_BIN" 2>/dev/null | grep -q libvirt; then
    echo "compare: the binary links libvirt; the hook must not" >&2
    exit 1
fi
