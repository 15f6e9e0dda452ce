#!/usr/bin/env bash
# bench/request_flood.sh: what one user's request flood costs the others (issue 8).
#
# Runs the integration test it.test_request_flood ROUNDS (5) times. Each round measures, side
# by side in one broker + bridge, a victim's history round trip and the publish -> stored lag
# of a 300 msg/s chat load without and then with mallory flooding rooms.list; the test checks
# the functional properties (every request answered, everything stored, mallory held to her
# request_rate), this script reports the speed ratios (flood / calm) as min / median / max.
#
#   bench/request_flood.sh    (BUILD=path/to/build, default build/; ROUNDS)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$ROOT/build}
ROUNDS=${ROUNDS:-5}
T=$BUILD/tests/it_test_request_flood
[ -x "$T" ] || { echo "bench: $T is missing: build first (cmake --build $BUILD)" >&2; exit 1; }
echo "# $(nproc) cores; $(date -u +%FT%TZ); git $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null); $ROUNDS rounds"
out=$(mktemp)
trap 'rm -f "$out"' EXIT
rtt=() lag=()
for r in $(seq 1 "$ROUNDS"); do
	"$T" >"$out" 2>&1 || echo "# round $r: the test failed (see its output)"
	line=$(grep 'victim history p99:' "$out" || true)
	lline=$(grep 'publish -> stored lag p99:' "$out" || true)
	[ -n "$line" ] && [ -n "$lline" ] || { echo "# round $r: no figures"; continue; }
	a=$(sed -E 's/.*p99: ([0-9]+) us calm, ([0-9]+) us.*/\1/' <<<"$line")
	b=$(sed -E 's/.*p99: ([0-9]+) us calm, ([0-9]+) us.*/\2/' <<<"$line")
	la=$(sed -E 's/.*p99: ([0-9.]+) ms calm, ([0-9.]+) ms.*/\1/' <<<"$lline")
	lb=$(sed -E 's/.*p99: ([0-9.]+) ms calm, ([0-9.]+) ms.*/\2/' <<<"$lline")
	printf 'round %d: victim p99 %s us calm, %s us flood; lag p99 %s ms calm, %s ms flood\n' "$r" "$a" "$b" "$la" "$lb"
	rtt+=("$(awk -v a="$a" -v b="$b" 'BEGIN{printf "%.2f", b/a}')")
	lag+=("$(awk -v a="$la" -v b="$lb" 'BEGIN{printf "%.2f", (a>0)?b/a:0}')")
done
stats() { printf '%s\n' "$@" | sort -n | awk '{v[NR]=$1} END{if(NR) printf "min %s  median %s  max %s  (%d rounds)\n", v[1], v[int((NR+1)/2)], v[NR], NR}'; }
echo "victim round trip p99, flood / calm: $(stats "${rtt[@]}")"
echo "publish -> stored lag p99, flood / calm: $(stats "${lag[@]}")"
