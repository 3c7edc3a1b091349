# Shared by the packaging test scripts (packaging/test-*): counting checks, the summary line
# scripts/test-all adds up, installing Debian packages, and the shared libvirtd's lock.
# Source it after setting `suite` (the word before the counts on the summary line).
#
# The summary line, the last line a script prints: `SUITE: N passed, N failed, N skipped`.
# A script that runs cargo's tests indents cargo's output (testlib_indent) and adds cargo's
# counts to its own, so that each check is counted once, on that one line.

passed=0 failed=0 skipped=0
testlib_started=$SECONDS
ok() { passed=$((passed + 1)); printf '  ok    %s\n' "$1"; }
bad() {
    failed=$((failed + 1))
    printf '  FAIL  %s\n' "$1"
    [[ -z ${2:-} ]] || printf '%s\n' "$2" | sed 's/^/        /'
}
skip() { skipped=$((skipped + 1)); printf '  skip  %s\n' "$1"; }
# check DESCRIPTION COMMAND...: passes if COMMAND succeeds; its output is shown on failure.
check() {
    local what=$1 out
    shift
    if out=$("$@" 2>&1); then ok "$what"; else bad "$what" "$out"; fi
}
step() { printf '\n--- %s\n' "$*"; }
summary() {
    echo
    echo "$suite: $passed passed, $failed failed, $skipped skipped ($((SECONDS - testlib_started)) s)"
    ((failed == 0))
}
# Ends the script now (a step the rest depends on failed): the summary counts what ran.
abort() {
    bad "$@"
    summary
    exit 1
}

# cargo_counts LOG: adds the counts of cargo's `test result:` lines in LOG (ignored tests and
# those a --skip filtered out are skipped ones); prints nothing. A cargo run that failed without counting a failure (a build
# error, a crashed test binary) is counted by the caller.
cargo_counts() {
    local p f s
    read -r p f s < <(awk '
        /^test result: / { for (i = 1; i <= NF; i++) {
            if ($(i+1) ~ /^passed;?$/) p += $i; if ($(i+1) ~ /^failed;?$/) f += $i;
            if ($(i+1) ~ /^ignored;?$/) s += $i
            if ($(i+1) == "filtered" && $(i+2) ~ /^out;?$/) s += $i } }
        END { print p + 0, f + 0, s + 0 }' "$1")
    passed=$((passed + p)) failed=$((failed + f)) skipped=$((skipped + s))
    cargo_failed=$f
}
# Indents a command's output so that only this script's summary line is counted by test-all.
testlib_indent() { sed -u 's/^/    /'; }

# apt_need PACKAGE...: installs those of PACKAGE... that dpkg does not have (names may carry
# an architecture, libvirt-dev:ppc64el); apt-get update first when the lists are missing or
# an install fails on stale ones.
apt_need() {
    local pkg missing=()
    for pkg in "$@"; do
        [[ $(dpkg-query -W -f='${Status}' "$pkg" 2> /dev/null) == "install ok installed" ]] || missing+=("$pkg")
    done
    ((${#missing[@]})) || return 0
    echo "installing: ${missing[*]}"
    local install=(apt-get install -y -q --no-install-recommends -o DPkg::Lock::Timeout=900)
    if ! compgen -G '/var/lib/apt/lists/*_Packages*' > /dev/null; then apt-get update -q; fi
    DEBIAN_FRONTEND=noninteractive "${install[@]}" "${missing[@]}" \
        || { apt-get update -q && DEBIAN_FRONTEND=noninteractive "${install[@]}" "${missing[@]}"; }
}

# The lock everyone holds while using the machine's one libvirtd (and its global hook
# directory). with_libvirtd_lock COMMAND...: runs COMMAND (a function too) holding it, unless it
# is held already by this script's caller: PHBGUARD_LIBVIRTD_LOCKED=1 in the environment (what
# with_libvirtd_lock exports), or a process this one descends from holding it
# (`flock /tmp/phbguard-libvirtd.lock scripts/test-all`). A second flock on the same file from
# a descendant would wait for its own ancestor forever.
PHBGUARD_LIBVIRTD_LOCK=${PHBGUARD_LIBVIRTD_LOCK:-/tmp/phbguard-libvirtd.lock}
libvirtd_lock_held_above() {
    [[ ${PHBGUARD_LIBVIRTD_LOCKED:-} == 1 ]] && return 0
    [[ -e $PHBGUARD_LIBVIRTD_LOCK ]] || return 1
    local inode holders pid stat
    inode=$(stat -c %i "$PHBGUARD_LIBVIRTD_LOCK")
    # /proc/locks: "1: FLOCK  ADVISORY  WRITE 1234 fd:01:5678 0 EOF" (pid, dev:inode).
    holders=$(awk -v ino="$inode" '$2 == "FLOCK" { split($6, d, ":"); if (d[3] == ino) print $5 }' /proc/locks)
    [[ -n $holders ]] || return 1
    pid=$$
    while ((pid > 1)); do
        grep -qx "$pid" <<< "$holders" && return 0
        stat=$(< "/proc/$pid/stat") || return 1
        stat=${stat##*) }             # past "PID (COMM) ": STATE PPID ...
        set -- $stat
        pid=$2
    done
    return 1
}
with_libvirtd_lock() {
    if libvirtd_lock_held_above; then
        "$@"
        return
    fi
    local fd rc=0
    exec {fd}>> "$PHBGUARD_LIBVIRTD_LOCK"
    if ! flock -w 1800 "$fd"; then
        exec {fd}>&-
        echo "timed out waiting for $PHBGUARD_LIBVIRTD_LOCK" >&2
        return 1
    fi
    PHBGUARD_LIBVIRTD_LOCKED=1 "$@" || rc=$?
    exec {fd}>&-
    return $rc
}

# ppc64le_setup: what running ppc64le code here needs (docs/ppc64le.md): the ppc64el
# architecture and Debian's ppc64le Rust (rustc-web, libstd-rust-web-dev:ppc64el), the cross
# gcc and binutils, libvirt-dev:ppc64el, and qemu-user registered with binfmt_misc. Counts one
# check for each; returns 1 if either failed.
ppc64le_setup() {
    local t=$SECONDS status=0
    if ! grep -qx ppc64el <<< "$(dpkg --print-foreign-architectures)"; then
        dpkg --add-architecture ppc64el
        # The lists must now hold the ppc64el packages too.
        apt-get update -q 2>&1 | testlib_indent
    fi
    apt_need rustc-web cargo-web libstd-rust-web-dev:ppc64el gcc-powerpc64le-linux-gnu \
        libc6-dev-ppc64el-cross binutils-powerpc64le-linux-gnu qemu-user libvirt-dev:ppc64el \
        binutils pkg-config 2>&1 | testlib_indent || status=$?
    if ((status != 0)) || [[ ! -x /usr/bin/rustc || ! -d /usr/lib/rustlib/powerpc64le-unknown-linux-gnu ]]; then
        bad "the ppc64le toolchain is installed"
        return 1
    fi
    ok "the ppc64le toolchain is installed ($(/usr/bin/rustc --version | cut -d' ' -f1-2); $((SECONDS - t)) s)"
    # binfmt_misc is the machine's (one registration for every process): mount it if needed
    # and register once. Not `-L /usr/powerpc64le-linux-gnu` (docs/ppc64le.md): the multiarch
    # libc6:ppc64el is the one /lib64/ld64.so.2 loads. F (fix binary): the kernel opens the
    # emulator now, so it is found from a chroot too (whose root still needs the emulator's
    # own x86_64 libraries: it is dynamically linked).
    local binfmt=/proc/sys/fs/binfmt_misc
    mountpoint -q "$binfmt" || mount -t binfmt_misc binfmt_misc "$binfmt"
    if [[ ! -e $binfmt/qemu-ppc64le ]]; then
        printf '%s' ':qemu-ppc64le:M::\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x15\x00:\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\x00:/usr/bin/qemu-ppc64le:F' \
            > "$binfmt/register" 2> /dev/null || :
    fi
    if [[ $(head -2 "$binfmt/qemu-ppc64le" 2> /dev/null | tr '\n' ' ') == "enabled interpreter /usr/bin/qemu-ppc64le "* ]]; then
        ok "binfmt_misc runs ppc64le ELF binaries with qemu-ppc64le"
    else
        bad "binfmt_misc runs ppc64le ELF binaries with qemu-ppc64le" "$(cat "$binfmt/qemu-ppc64le" 2>&1)"
        return 1
    fi
}

# elf_libs BINARY...: the shared libraries BINARY... load, one path a line: through ldd for
# this machine's binaries, through the target's own dynamic loader (run by binfmt_misc; the
# variable passed through qemu's QEMU_SET_ENV, or the emulator's own loader would answer) for
# foreign ones, plus, for those, the emulator's libraries.
elf_libs() {
    local b
    for b in "$@"; do
        if readelf -h "$b" | grep -q 'Machine:.*PowerPC64'; then
            QEMU_SET_ENV=LD_TRACE_LOADED_OBJECTS=1 "$b"
            ldd /usr/bin/qemu-ppc64le
        else
            ldd "$b"
        fi
    done | grep -o '/[^ ]*' | sort -u
}
