#!/usr/bin/env bash
# Sorted list (stage03) against min-heap (stage04): runs the criterion
# benchmark in scripts/timer-bench and prints, per operation, a markdown
# table of nanoseconds per operation at N = 10 … 100,000 timers, the ratio
# list/heap, the crossover N, and a text chart (log scale).
#
#   scripts/bench-timers.sh
#
# With CSV=FILE, every figure also goes to FILE (csv_row in lib.sh).
# The raw criterion report stays in target/criterion/ (in CARGO_TARGET_DIR
# when that is set).
. "$(dirname "$0")/lib.sh"

script_start 0 "$@"

make_tmp
(cd "$ROOT" && cargo bench --quiet -p timer-bench --bench timers -- --output-format bencher) \
    >"$tmp/raw" 2>"$tmp/err" || { cat "$tmp/err" >&2; exit 1; }
# Lines like: test insert/list/1000 ... bench:        1234 ns/iter (+/- 56)
awk '/^test / { split($2, k, "/"); gsub(",", "", $5); print k[1], k[2], k[3], $5 }' "$tmp/raw" >"$tmp/rows"
# For CSV=FILE (csv_row in lib.sh): a row per N; per operation, list,
# heap and list/heap.
if [ -n "${CSV:-}" ]; then
    awk '{ t[$1, $2, $3] = $4; if (!(($1, $3) in seen)) { seen[$1, $3] = 1; key[++k] = $1 " " $3 } }
        END { for (i = 1; i <= k; i++) { split(key[i], f, " "); l = t[f[1], "list", f[2]]; h = t[f[1], "heap", f[2]]
              printf "%s %s %s %s %.2f\n", f[1], f[2], l, h, (h > 0 ? l / h : 0) } }' "$tmp/rows" |
        while read -r op n l h r; do
            csv_row "$n" "$op: list ns" "$l"
            csv_row "$n" "$op: heap ns" "$h"
            csv_row "$n" "$op: list / heap" "$r×"
        done
fi

echo "### Timer structures: nanoseconds per operation"
echo
machine_line
echo "Command: \`scripts/bench-timers.sh\` (criterion, \`cargo bench -p timer-bench\`)"
for op in insert adjust expire; do
    echo
    echo "**$op**"
    echo
    echo "| N | list ns | heap ns | list / heap |"
    echo "|---:|---:|---:|---:|"
    awk -v op="$op" '
        $1 == op { t[$2, $3] = $4; if (!($3 in seen)) { seen[$3] = 1; ns[++n] = $3 } }
        END {
            for (i = 1; i <= n; i++) {
                s = ns[i]; l = t["list", s]; h = t["heap", s]
                printf "| %s | %s | %s | %.2f× |\n", s, l, h, (h > 0 ? l / h : 0)
                if (!cross && l > h) cross = s
            }
            if (cross) printf "\nThe heap is faster from N = %s on.\n", cross
            else printf "\nThe list stays faster at every N measured.\n"
        }' "$tmp/rows"
done

echo
echo "**Chart** (each \`#\` is a factor of two in ns per operation)"
echo
echo '```text'
awk '
    { t = $4; bars = 1; while (t >= 2 && bars < 40) { t /= 2; bars++ }
      line = sprintf("%-7s %-5s %7s |", $1, $2, $3)
      for (i = 0; i < bars; i++) line = line "#"
      printf "%s %s ns\n", line, $4 }' "$tmp/rows"
echo '```'
