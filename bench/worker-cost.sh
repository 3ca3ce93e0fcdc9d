#!/bin/sh
# Per-delivery cost of the privilege boundary: a worker re-executed as the
# user (spawn, job, policy load, check, write, fsync, result), a warm
# worker (lda serve's pool: the job's round trip only), and the same write
# done in-process, measured side by side in one run.
# Needs root (real users). Prints the median ns/op of each and the ratio.
set -eu
cd "$(dirname "$0")/.."
count=${COUNT:-5}
out=$(go test -run XXX -bench 'BenchmarkDelivery' -benchtime "${BENCHTIME:-200x}" -count "$count" ./internal/e2e)
printf '%s\n' "$out" | grep '^Benchmark' | sed 's/-[0-9]* / /' | sort -k1,1 -k3,3n | awk '
{ n=$1; c[n]++; v[n, c[n]] = $3 }
END {
	printf "%-40s %12s\n", "benchmark (median of runs)", "ns/op"
	for (n in c) {
		k = c[n]; med[n] = (k % 2) ? v[n, (k+1)/2] : (v[n, k/2] + v[n, k/2+1]) / 2
		printf "%-40s %12.0f\n", n, med[n]
	}
	for (n in med) if (n ~ /\/(worker|warm)$/) {
		p = n; sub(/\/(worker|warm)$/, "/inprocess", p)
		if (p in med) printf "ratio %-34s %12.2f (/ in-process)\n", n, med[n] / med[p]
	}
}'
