#!/bin/bash
# bench/ab.sh: lda against earlier lda, commit by commit, in one run.
#
#   sudo bench/ab.sh REV [REV...]        e.g. bench/ab.sh dda4bfa 8ad1c5f HEAD
#
# Builds each revision (git worktree, the work tree is not touched), starts
# one `lda serve` per revision on the same users and the same disk, and
# runs lmtpload against them in turn (alternating, REPS repetitions of
# MESSAGES messages, every run from empty mailboxes) for each cell in
# CELLS ("connections:size:recipients"). Prints the median deliveries/s
# and p50 per revision and cell, the ratio to the first revision, and
# the paired ratio (within each repetition; see below).
# Root is needed for the users and the privilege separation.
#
# PERF=1 adds, per revision, the cost of one delivery in each process:
# `perf stat` on the listener and on the direct worker of one user while
# 900 messages (450 with SIEVE, whose messages cost a worker two jobs)
# go to that user over 1 connection (fewer jobs than a worker's
# default max_deliveries, so the same worker serves them all): system
# calls, sysmon's nanosleeps, futex calls, context switches, page faults
# (a young worker's heap grows by every byte a job allocates, and on this
# guest each new page costs a fault of about 10 us: bench/hopcost) and CPU
# ms.
#
# HOMES=tmpfs puts the users' homes (their Maildirs) on a tmpfs mounted
# for the run, where fsync costs nothing: what is left is lda's own path
# (LMTP, the hops between processes, the checks and the system calls),
# measured without the disk's drift, which can hide a change of a few
# per cent. Not a durability setting: a tool for comparing revisions.
# KEEP_TSV=FILE copies the per-run figures there before the clean-up.
#
# STRETCHES=1 then follows one delivery's path, per revision: perf
# records the system calls of the listener and of one direct worker while
# 1000 messages go to one user over 1 connection, and bench/stretches.awk
# cuts each delivery into ten stretches (the client's turn-arounds, the
# listener's work, the two hops, the worker's work before, during and
# after its fsyncs); the median of each is printed per revision. Tracing
# adds a microsecond or two per system call, alike for every revision.
# These messages go over DATA (the stretches start at its 354) whatever
# +chunking says, and not with SIEVE (whose RCPT-time job is a third hop).
#
# DEST=mbox delivers into ~/mbox (fcntl locking, created by the first
# delivery) instead of ~/Maildir, so that changes to the mbox path can be
# measured the same way, on the disk or on the tmpfs; the PERF=1 figures
# then describe mbox deliveries too.
#
# SIEVE=FILE gives every user FILE as their Sieve script (~/.lda.sieve, a
# symlink to a copy the user owns, so that the script's own times are
# those of the setup, not of each run's fresh home), e.g.
# SIEVE=bench/typical.sieve. Each message then costs an envelope job at
# RCPT time and a filtering delivery after DATA.
#
# A REV written REV+chunking is driven with lmtpload -chunking (BDAT LAST
# instead of DATA; the revision must offer CHUNKING), so that
# `bench/ab.sh HEAD HEAD+chunking` measures what BDAT saves. A REV
# written REV+cpu=LIST runs that revision's `lda serve` (and so its
# listener and workers, which inherit the mask) under `taskset -c LIST`,
# the client staying free: `bench/ab.sh HEAD HEAD+cpu=1` measures what
# keeping lda on one vCPU does. Both may be given, in that order.
set -euo pipefail
if [ -n "${SIEVE:-}" ]; then
	[ -r "$SIEVE" ] || { echo "ab.sh: SIEVE=$SIEVE: no such file" >&2; exit 2; }
	SIEVE=$(realpath "$SIEVE")
fi
cd "$(dirname "$0")/.."
. bench/lib.sh
[ "$(id -u)" = 0 ] || die "run as root"
[ $# -ge 1 ] || die "usage: $0 REV [REV...]"
REPS=${REPS:-3}
MESSAGES=${MESSAGES:-2000}
CELLS=${CELLS:-"1:1024:1 8:1024:1"}
BASE=$(mktemp -d /tmp/lda-ab.XXXXXX)
chmod 755 "$BASE"
USERS=()
cleanup() {
	[ -f "$BASE/pids" ] && while read -r pid _; do stop_pid "$pid" 10; done <"$BASE/pids"
	for u in "${USERS[@]}" abl$$; do userdel -f "$u" 2>/dev/null || true; done
	mountpoint -q "$BASE/home" && umount "$BASE/home"
	for wt in "$BASE"/src-*; do [ -d "$wt" ] && git worktree remove --force "$wt" 2>/dev/null || true; done
	[ -n "${KEEP_TSV:-}" ] && cp "$BASE/runs.tsv" "$KEEP_TSV"
	rm -rf "$BASE"
}
trap cleanup EXIT
mkdir -p "$BASE/home" "$BASE/bin"
case ${HOMES:-disk} in
disk) ;;
tmpfs)
	run mount -t tmpfs -o size=4g,mode=755 ab-homes "$BASE/home"
	RESET=remove # retired Maildirs would fill it, and it has no inode scan to spare
	;;
*) die "HOMES is disk or tmpfs" ;;
esac
chmod 755 "$BASE/home" "$BASE/bin"
for i in $(seq 1 10); do
	u=ab$$u$i
	useradd -M -U -d "$BASE/home/$u" -s /usr/sbin/nologin "$u"
	USERS+=("$u")
done
useradd -M -U -d /nonexistent -s /usr/sbin/nologin abl$$
ulist=$(IFS=,; echo "${USERS[*]}")
# PERF=1 and STRETCHES=1 each measure with a user of their own, whose
# worker starts fresh (and does not reach max_deliveries while measured).
pu=ab$$p
su=ab$$s
if [ "${PERF:-0}" = 1 ]; then
	useradd -M -U -d "$BASE/home/$pu" -s /usr/sbin/nologin "$pu"
	USERS+=("$pu")
fi
if [ "${STRETCHES:-0}" = 1 ]; then
	useradd -M -U -d "$BASE/home/$su" -s /usr/sbin/nologin "$su"
	USERS+=("$su")
fi
CGO_ENABLED=0 go build -o "$BASE/bin/lmtpload" ./bench/lmtpload
case ${DEST:-maildir} in
maildir)
	cat >"$BASE/policy.yaml" <<P
version: 1
min_uid: 1000
default: {maildir: ~/Maildir}
allow:
  - {maildir: ~/Maildir}
maildir: {create: true}
P
	;;
mbox)
	cat >"$BASE/policy.yaml" <<P
version: 1
min_uid: 1000
default: {mbox: ~/mbox}
allow:
  - {mbox: ~/mbox}
mbox: {locking: [fcntl], create: true}
P
	;;
*) die "DEST is maildir or mbox" ;;
esac
n=0
CLIENT=()
PIN=()
for arg in "$@"; do
	n=$((n + 1))
	rev=$arg
	PIN[n]=
	case $rev in
	*+cpu=*)
		PIN[n]=${rev##*+cpu=}
		rev=${rev%+cpu=*}
		[[ ${PIN[n]} =~ ^[0-9][0-9,-]*$ ]] && taskset -c "${PIN[n]}" true >/dev/null 2>&1 ||
			die "$arg: +cpu= takes a CPU list of this machine, such as 1 or 0-1 (and comes after +chunking)"
		;;
	esac
	CLIENT[n]=
	case $rev in *+chunking) CLIENT[n]=-chunking rev=${rev%+chunking} ;; esac
	sha=$(git rev-parse --short "$rev")
	run git worktree add --detach "$BASE/src-$n" "$sha" >/dev/null
	(cd "$BASE/src-$n" && CGO_ENABLED=0 go build -o "$BASE/bin/lda-$n" ./cmd/lda)
	chmod 755 "$BASE/bin/lda-$n"
	mkdir -p "$BASE/run-$n" && chmod 755 "$BASE/run-$n"
	cat >"$BASE/lda-$n.yaml" <<C
version: 1
policy: $BASE/policy.yaml
socket: $BASE/run-$n/lmtp.sock
listener_user: abl$$
peers: [root]
spool_dir: $BASE/spool-$n
hostname: ab.test
log: $BASE/lda-$n.log
sieve_dir: ""
limits: {connections: 64}
C
	pin=()
	[ -n "${PIN[n]}" ] && pin=(taskset -c "${PIN[n]}")
	"${pin[@]}" "$BASE/bin/lda-$n" serve -config "$BASE/lda-$n.yaml" 2>>"$BASE/lda-$n.err" &
	remember_pid $! "lda $rev"
	wait_socket "$BASE/run-$n/lmtp.sock" $! 10 || die "lda $rev did not start"
	say "revision $n: $arg = $sha: $(git log -1 --format=%s "$sha")"
done
if [ -n "${SIEVE:-}" ]; then
	[ -r "$SIEVE" ] || die "SIEVE=$SIEVE: no such file"
	for u in "${USERS[@]}"; do install -m 600 -o "$u" -g "$u" "$SIEVE" "$BASE/bin/$u.sieve"; done
fi
empty() {
	for u in "${USERS[@]}"; do
		retire "$BASE/home/$u"
		mkdir -m 700 "$BASE/home/$u"
		chown "$u:$u" "$BASE/home/$u"
		if [ -n "${SIEVE:-}" ]; then
			ln -s "$BASE/bin/$u.sieve" "$BASE/home/$u/.lda.sieve"
			chown -h "$u:$u" "$BASE/home/$u/.lda.sieve"
		fi
	done
	sync
}
printf 'rev\tcell\trep\tdeliveries_per_s\tp50_ms\n' >"$BASE/runs.tsv"
for cell in $CELLS; do
	IFS=: read -r c size r <<<"$cell"
	for rep in $(seq 1 "$REPS"); do
		for i in $(seq 1 $n); do
			empty
			out=$("$BASE/bin/lmtpload" -json -pipelining ${CLIENT[i]} -socket "$BASE/run-$i/lmtp.sock" -users "$ulist" -n "$MESSAGES" -c "$c" -size "$size" -rcpts "$r" -id "ab$i$rep")
			printf '%s\t%s\t%s\t%s\t%s\n' "$i" "$cell" "$rep" "$(jget deliveries_per_s "$out")" "$(jget p50_ms "$out")" >>"$BASE/runs.tsv"
		done
	done
done
say "medians of $REPS runs of $MESSAGES messages (connections:size:recipients)"
# "paired": the revision's rate over the first revision's in each
# repetition (they ran one after the other), as median (min-max), and in
# how many repetitions it was ahead. The machine's speed drifts over
# minutes, by more than most changes are worth; a ratio taken within one
# repetition does not drift with it.
awk -F'\t' -v n="$n" 'NR > 1 { k = $1 SUBSEP $2; c[k]++; d[k, c[k]] = $4; p[k, c[k]] = $5; cells[$2] = 1; byrep[$1, $2, $3] = $4 }
function med(a, k, m,   i, j, t, v) { for (i = 1; i <= m; i++) v[i] = a[k, i]
	for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (v[j] + 0 < v[i] + 0) { t = v[i]; v[i] = v[j]; v[j] = t }
	return (m % 2) ? v[(m + 1) / 2] : (v[m / 2] + v[m / 2 + 1]) / 2 }
function paired(i, cell,   r, m, w, x, y) { m = w = 0
	for (r = 1; (1, cell, r) in byrep; r++) if (((i, cell, r) in byrep) && byrep[1, cell, r] + 0 > 0) {
		x[1, ++m] = byrep[i, cell, r] / byrep[1, cell, r]; if (x[1, m] > 1) w++ }
	if (m == 0) return "-"
	y = med(x, 1, m)
	return sprintf("%.2f (%.2f-%.2f) %d/%d", y, minv(x, m), maxv(x, m), w, m) }
function minv(x, m,   i, v) { v = x[1, 1]; for (i = 2; i <= m; i++) if (x[1, i] < v) v = x[1, i]; return v }
function maxv(x, m,   i, v) { v = x[1, 1]; for (i = 2; i <= m; i++) if (x[1, i] > v) v = x[1, i]; return v }
END { printf "%-14s %4s %14s %10s %8s  %s\n", "cell", "rev", "deliveries/s", "p50 ms", "ratio", "paired (ahead)"
	for (cell in cells) for (i = 1; i <= n; i++) { k = i SUBSEP cell; dm = med(d, k, c[k]); if (i == 1) base = dm
		printf "%-14s %4d %14.1f %10.2f %8.2f  %s\n", cell, i, dm, med(p, k, c[k]), dm / base, (i == 1) ? "-" : paired(i, cell) } }' "$BASE/runs.tsv"

if [ "${PERF:-0}" = 1 ]; then
	command -v perf >/dev/null || die "PERF=1 needs perf (linux-perf)"
	pn=900
	[ -n "${SIEVE:-}" ] && pn=450
	say "per delivery, $pn ${DEST:-maildir} deliveries to one user over 1 connection (perf stat)"
	ev=raw_syscalls:sys_enter,syscalls:sys_enter_nanosleep,syscalls:sys_enter_futex,context-switches,page-faults,task-clock
	printf '%-4s %-9s %9s %10s %7s %9s %7s %8s\n' rev process syscalls nanosleep futex switches faults cpu_ms
	for i in $(seq 1 $n); do
		empty
		"$BASE/bin/lmtpload" -pipelining ${CLIENT[i]} -socket "$BASE/run-$i/lmtp.sock" -users "$pu" -n 20 -id "abw$i" >/dev/null
		lis=$(pgrep -f "^$BASE/bin/lda-$i listener" | head -1)
		wrk=$(pgrep -n -u "$pu" -f "^$BASE/bin/lda-$i worker direct")
		[ -n "$lis" ] && [ -n "$wrk" ] || die "revision $i: no listener or worker process to measure"
		perf stat -x, -e "$ev" -p "$lis" -o "$BASE/perf-l$i" &
		p1=$!
		perf stat -x, -e "$ev" -p "$wrk" -o "$BASE/perf-w$i" &
		p2=$!
		sleep 0.5
		"$BASE/bin/lmtpload" -pipelining ${CLIENT[i]} -socket "$BASE/run-$i/lmtp.sock" -users "$pu" -n "$pn" -id "abp$i" >/dev/null
		kill -INT "$p1" "$p2"
		wait "$p1" "$p2" || true
		for w in l w; do
			awk -F, -v rev="$i" -v proc="$([ $w = l ] && echo listener || echo worker)" -v n="$pn" '/^[0-9]/ { v[$3] = $1 / n }
				END { printf "%-4s %-9s %9.1f %10.2f %7.2f %9.2f %7.2f %8.3f\n", rev, proc, v["raw_syscalls:sys_enter"],
					v["syscalls:sys_enter_nanosleep"], v["syscalls:sys_enter_futex"], v["context-switches"], v["page-faults"], v["task-clock"] }' "$BASE/perf-$w$i"
		done
	done
fi

if [ "${STRETCHES:-0}" = 1 ]; then
	command -v perf >/dev/null || die "STRETCHES=1 needs perf (linux-perf)"
	[ -z "${SIEVE:-}" ] || die "STRETCHES=1 follows deliveries without a RCPT-time job; leave SIEVE unset"
	sn=1000
	say "one delivery's path, stretch by stretch: medians in µs over about $sn ${DEST:-maildir} deliveries to one user over 1 connection (perf's system-call tracepoints; bench/stretches.awk)"
	for i in $(seq 1 $n); do
		empty
		"$BASE/bin/lmtpload" -pipelining -socket "$BASE/run-$i/lmtp.sock" -users "$su" -n 20 -id "abs$i" >/dev/null
		lis=$(pgrep -f "^$BASE/bin/lda-$i listener" | head -1)
		wrk=$(pgrep -n -u "$su" -f "^$BASE/bin/lda-$i worker direct")
		[ -n "$lis" ] && [ -n "$wrk" ] || die "revision $i: no listener or worker process to trace"
		perf record -q -m 1024 -e raw_syscalls:sys_enter,raw_syscalls:sys_exit -p "$lis,$wrk" -o "$BASE/trace-$i" 2>/dev/null &
		p1=$!
		sleep 0.5
		"$BASE/bin/lmtpload" -pipelining -socket "$BASE/run-$i/lmtp.sock" -users "$su" -n "$sn" -id "abt$i" >/dev/null
		kill -INT "$p1"
		wait "$p1" || true
		perf script -i "$BASE/trace-$i" -F pid,tid,time,event,trace >"$BASE/trace-$i.txt" 2>/dev/null || true
		awk -v L="$lis" -v W="$wrk" -f bench/stretches.awk "$BASE/trace-$i.txt" "$BASE/trace-$i.txt" |
			sort -k1,1n -k2,2n >"$BASE/stretches-$i"
		rm -f "$BASE/trace-$i" "$BASE/trace-$i.txt"
	done
	awk -v n="$n" '{ rev = FILENAME; sub(/.*-/, "", rev); c[rev, $1]++; v[rev, $1, c[rev, $1]] = $2 }
		function med(r, k,   m) { m = c[r, k]; if (!m) return "-"
			return sprintf("%.0f", (m % 2) ? v[r, k, (m + 1) / 2] : (v[r, k, m / 2] + v[r, k, m / 2 + 1]) / 2) }
		BEGIN { split("client: 354 -> body read|listener: body -> job sent|hop: job sent -> worker has it|worker: job -> first fsync|worker: first fsync -> last fsync returns|worker: last fsync -> result sent|hop: result sent -> listener has it|listener: result -> reply written|client: reply -> next MAIL read|listener: MAIL read -> 354 written", name, "|") }
		END { printf "%-44s", "stretch"; for (r = 1; r <= n; r++) printf " %8s", "rev " r; printf "\n"
			for (k = 1; k <= 10; k++) { printf "%-44s", name[k]; for (r = 1; r <= n; r++) printf " %8s", med(r, k); printf "\n" }
			printf "%-44s", "deliveries followed"; for (r = 1; r <= n; r++) printf " %8d", c[r, 1]; printf "\n" }' $(for i in $(seq 1 $n); do echo "$BASE/stretches-$i"; done)
fi
