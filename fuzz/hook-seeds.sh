#!/usr/bin/env bash
# Seeds for the `hook` fuzz target (docs/fuzzing.md): its input is the domain XML libvirt pipes
# in, then `\0\0`, a byte that picks the call, and a policy file. Each XML file the tests have,
# with every pick (prepare, migrate, restore; incoming; setup in doubt) and a few policies.
# Usage: fuzz/hook-seeds.sh OUTDIR (run from the repository root).
set -euo pipefail
out=${1:?usage: $0 OUTDIR}
mkdir -p "$out"
policies=(
    ''
    'mode = "enforce"'
    'mode = "warn"'
    'mode = "off"'
    $'mode = "enforce"\nincoming = "refuse"'
    $'mode = "enforce"\nexempt = ["db01", "7e57f1ee-0000-4000-8000-000000000001"]'
    $'mode = "enforce"\nreject_iommu_group_unknown = true\non_internal_error = "deny"'
    $'mode = "enforce"\n[watch]\naction = "fix"'
    'mode = enforce'
)
n=0
while IFS= read -r -d '' xml; do
    for pick in 0 1 2 4 5 6 8 12; do
        p=${policies[$((n % ${#policies[@]}))]}
        { cat "$xml"; printf '\0\0'; printf "\\$(printf '%03o' "$pick")"; printf '%s' "$p"; } \
            > "$out/$(printf '%04d' "$n")"
        n=$((n + 1))
    done
done < <(find tests/cases tests/corpus examples -name '*.xml' -print0 | sort -z)
echo "$n seeds in $out"
