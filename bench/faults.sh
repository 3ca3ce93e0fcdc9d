#!/bin/bash
# Fault matrix of `lda serve` under load. Each case gets its own daemon,
# users and mailboxes (2 Maildir users, 2 mbox users through XLDA-DEST),
# runs lmtpload with 4 connections while the fault is applied, and then
# checks with mailcheck that every message acknowledged 250 is present and
# intact, that no mailbox holds a partial message, that every failure got
# a reply in the expected class (tallied), and that the daemon is still
# alive and delivering. Files left in a Maildir's tmp/ are counted (the
# "tmp" column) but are not a failure: a worker killed while it writes
# leaves its file there, never visible in new/ or cur/, and Maildir
# readers remove tmp/ files older than 36 hours. FAULT_STRICT_TMP=1 makes
# them a failure again.
#
#   a  kill -9 of a random `lda worker` every second      expect 250, 4xx
#   b  SIGSTOP of a worker in the middle of a job, for    expect 250, 4xx,
#      7 s, past delivery_timeout: 5s; then SIGCONT        451 4.4.7 for each
#      or leave it (3 rounds)                               stopped job
#   c  the users' mail on a 4 MiB tmpfs that fills up     expect 250, 452 4.3.1
#   d  the daemon under prlimit --fsize=1MiB, messages     expect 250, 552 5.2.2
#      of 4 KiB, 768 KiB and 1.5 MiB                         (mailbox full);
#                                                          552 5.3.4 (message
#                                                          over the limit, spool)
#
# Needs root. Environment: FAULT_MESSAGES (messages per case, 5000),
# FAULT_CASES (default "a b c d"), FAULT_KILL_INTERVAL (case a, seconds
# between kills, 1), FAULT_CHUNKING=1 sends BDAT instead of DATA
# (lmtpload -chunking), FAULT_KEEP=1 keeps the work directory,
# LDA_REV=COMMIT builds lda from that commit (git archive).
# Exit 0 only if every case passed.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
repo=$(pwd)
REPO=$repo
# shellcheck source=bench/lib.sh
. bench/lib.sh

[ "$(id -u)" = 0 ] || { echo "faults.sh: needs root" >&2; exit 2; }

nmsg=${FAULT_MESSAGES:-5000}
kill_every=${FAULT_KILL_INTERVAL:-1}
cases=${FAULT_CASES:-"a b c d"}
work=$(mktemp -d /tmp/lda-faults.XXXXXX)
chmod 755 "$work"
tag=$(printf '%04d' $(($$ % 10000)))
allusers=()
mounts=()
dpid=""
bgpids=()
summary=()
anyfail=0

log() { printf '[faults %s] %s\n' "$(date -u +%H:%M:%S)" "$*"; }

cleanup() {
	for p in "${bgpids[@]}"; do kill "$p" 2>/dev/null; done
	stop_daemon >/dev/null 2>&1
	for m in "${mounts[@]}"; do umount -l "$m" 2>/dev/null; done
	for u in "${allusers[@]}"; do userdel -f "$u" >/dev/null 2>&1; done
	if [ "${FAULT_KEEP:-0}" = 1 ]; then
		echo "faults.sh: work directory kept: $work"
	else
		rm -rf "$work"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- build ---------------------------------------------------------------
build_tools "$work/bin" bench/lmtpload bench/mailcheck
lda=$work/bin/lda
load=$work/bin/lmtpload
log "lda commit: $LDA_DESC"

workers_line=""
probe=$work/probe.yaml
printf 'version: 1\npolicy: embedded\nsocket: /run/x.sock\nlistener_user: nobody\npeers: [root]\nworkers: {max_idle: 4, idle_time: 10s, max_deliveries: 1000}\n' >"$probe"
if "$lda" check -config "$probe" >/dev/null 2>&1; then
	workers_line="workers: {max_idle: 4, idle_time: 10s, max_deliveries: 1000}"
	log "lda serve accepts workers: (warm per-user workers): $workers_line"
else
	log "lda serve has no workers: key: one worker per delivery"
fi

workerpids() { ps -eo pid=,args= | awk -v b="$lda" '$2 == b && $3 == "worker" {print $1}'; }
procpid() {
	local p
	for p in /proc/[0-9]*; do
		if [[ "$(tr '\0' ' ' 2>/dev/null <"$p/cmdline")" == "$lda $1 "* ]]; then
			echo "${p#/proc/}"
			return
		fi
	done
}

# ---- one case's world ------------------------------------------------------
# setup_case NAME MAILROOT: users, homes and mbox spool beneath MAILROOT.
setup_case() {
	c=$1
	cdir=$work/case-$c
	mailroot=$2
	mkdir -p "$cdir/run" "$mailroot/home" "$mailroot/mail"
	chmod 755 "$cdir" "$cdir/run" "$mailroot" "$mailroot/home"
	chmod 1777 "$mailroot/mail"
	users=()
	for i in 0 1 2 3; do
		u="lfl${tag}${c}$i"
		users+=("$u")
		allusers+=("$u")
		userdel -f "$u" >/dev/null 2>&1
		useradd -M -U -d "$mailroot/home/$u" -s /usr/sbin/nologin "$u" || return 1
		mkdir -p "$mailroot/home/$u"
		chown "$u:$u" "$mailroot/home/$u"
		chmod 700 "$mailroot/home/$u"
		[ "$(id -u "$u")" -ge 1000 ] || { echo "uid of $u below 1000" >&2; return 1; }
	done
	luser="lfl${tag}${c}l"
	allusers+=("$luser")
	userdel -f "$luser" >/dev/null 2>&1
	useradd -M -U -d "$cdir/run" -s /usr/sbin/nologin "$luser" || return 1
	dests=(-dest "${users[2]}=mbox:$mailroot/mail/${users[2]}" -dest "${users[3]}=mbox:$mailroot/mail/${users[3]}")
	boxes=("$mailroot/home/${users[0]}/Maildir" "$mailroot/home/${users[1]}/Maildir" "$mailroot/mail/${users[2]}" "$mailroot/mail/${users[3]}")
	userlist=$(IFS=,; echo "${users[*]}")
	cat >"$cdir/policy.yaml" <<EOF
version: 1
min_uid: 1000
default: {maildir: ~/Maildir}
allow:
  - {maildir: ~/Maildir}
  - {mbox: $mailroot/mail/%u}
mbox: {locking: [dotlock, fcntl], lock_timeout: 30s, stale_lock: 5m, quoting: mboxrd, create: true}
maildir: {create: true}
EOF
	acks=()
}

# start_daemon DELIVERY_TIMEOUT [PREFIX...]: the daemon logs to stderr,
# through a pipe (so that an RLIMIT_FSIZE does not apply to the log).
start_daemon() {
	local timeout=$1
	shift
	cat >"$cdir/lda.yaml" <<EOF
version: 1
policy: $cdir/policy.yaml
socket: $cdir/run/lmtp.sock
socket_mode: "0660"
listener_user: $luser
peers: [root]
spool_dir: $cdir/spool-lda
hostname: lda.faults.test
log: stderr
parallel: 4
delivery_timeout: $timeout
limits: {connections: 64, recipients: 100, message_size: 10485760, line_length: 4096, idle_timeout: 5m, data_timeout: 5m}
$workers_line
EOF
	chmod 640 "$cdir/lda.yaml"
	# The pipe's reader is started first and gets its own pid, so that
	# $dpid is lda serve itself.
	mkfifo "$cdir/log.fifo"
	cat <"$cdir/log.fifo" >"$cdir/lda.log" &
	bgpids+=($!)
	"$@" "$lda" serve -config "$cdir/lda.yaml" >"$cdir/log.fifo" 2>&1 &
	dpid=$!
	for _ in $(seq 1 100); do [ -S "$cdir/run/lmtp.sock" ] && break; sleep 0.1; done
	if [ ! -S "$cdir/run/lmtp.sock" ]; then
		cat "$cdir/lda.log"
		return 1
	fi
	lpid=$(procpid listener)
}

stop_daemon() {
	[ -n "$dpid" ] || return 0
	local rc=0
	kill -TERM "$dpid" 2>/dev/null
	for _ in $(seq 1 300); do kill -0 "$dpid" 2>/dev/null || break; sleep 0.1; done
	if kill -0 "$dpid" 2>/dev/null; then
		kill -KILL "$dpid" 2>/dev/null
		rc=124
	fi
	wait "$dpid" 2>/dev/null
	local wrc=$?
	[ "$rc" = 0 ] && rc=$wrc
	dpid=""
	return $rc
}

# run_load ID SIZE N: lmtpload with 4 connections in the background.
run_load() {
	local id=$1 size=$2 n=$3
	local chunk=()
	[ "${FAULT_CHUNKING:-0}" = 1 ] && chunk=(-chunking)
	"$load" -socket "$cdir/run/lmtp.sock" -users "$userlist" "${dests[@]}" -c 4 -n "$n" -size "$size" "${chunk[@]}" \
		-id "$c$id" -ack "$cdir/ack-$id" -timeout 60s >"$cdir/load-$id.out" 2>"$cdir/load-$id.err" &
	acks+=(-ack "$cdir/ack-$id")
}

# alive EXPECTED: the daemon still runs and one more message gets a reply
# matching the regexp EXPECTED.
alive() {
	local want=$1
	if ! kill -0 "$dpid" 2>/dev/null; then
		echo "daemon exited"
		return 1
	fi
	local l
	l=$(procpid listener)
	[ -n "$l" ] || { echo "no listener"; return 1; }
	[ "$l" = "$lpid" ] || { echo "the listener was replaced ($lpid -> $l)"; return 1; }
	"$load" -socket "$cdir/run/lmtp.sock" -users "${users[0]}" -c 1 -n 1 -size 1024 -id "${c}after" \
		-ack "$cdir/ack-after" -timeout 30s >/dev/null 2>&1
	local got
	got=$(awk '{print $3, $4}' "$cdir/ack-after")
	echo "$got"
	[[ "$got" =~ $want ]]
}

# finish CODES EXTRA_NOTE: checks and one summary row.
finish() {
	local codes=$1 note=${2:-}
	local ok=1 why=()
	local alive_reply
	if alive_reply=$(alive "$alive_re"); then :; else ok=0; why+=("not answering: $alive_reply"); fi
	[ -e "$cdir/ack-after" ] && acks+=(-ack "$cdir/ack-after")
	echo "-- after the run: daemon answers ${alive_reply:-nothing}"
	[ -n "$extra_fail" ] && { ok=0; why+=("$extra_fail"); }
	if ! stop_daemon; then ok=0; why+=("lda serve did not exit cleanly on SIGTERM"); fi
	local left
	left=$(workerpids | wc -l)
	[ "$left" = 0 ] || { ok=0; why+=("$left worker processes left after the daemon exited"); }
	wait
	echo "-- mailcheck ($c): allowed replies: $codes"
	local tmpflag=-allow-tmp
	[ "${FAULT_STRICT_TMP:-0}" = 1 ] && tmpflag=
	"$work/bin/mailcheck" -codes "$codes" $tmpflag "${acks[@]}" "${boxes[@]}" | tee "$cdir/mailcheck.out"
	local mrc=${PIPESTATUS[0]}
	[ "$mrc" = 0 ] || { ok=0; why+=("mailcheck: $(grep '^FAIL' "$cdir/mailcheck.out" | sed 's/^FAIL: //')"); }
	local nacks n250 n4 n5 ndrop intact missing corrupt tmp replies
	nacks=$(sed -n 's/^acks \([0-9]*\) .*/\1/p' "$cdir/mailcheck.out")
	replies=$(sed -n 's/^replies //p' "$cdir/mailcheck.out")
	n250=$(tr ' ' '\n' <<<"$replies" | awk -F= '$1 ~ /^2/ {s+=$2} END {print s+0}')
	n4=$(tr ' ' '\n' <<<"$replies" | awk -F= '$1 ~ /^4/ {s+=$2} END {print s+0}')
	n5=$(tr ' ' '\n' <<<"$replies" | awk -F= '$1 ~ /^5/ {s+=$2} END {print s+0}')
	ndrop=$(tr ' ' '\n' <<<"$replies" | awk -F= '$1 ~ /^DROPPED/ {s+=$2} END {print s+0}')
	intact=$(sed -n 's/.* intact \([0-9]*\) .*/\1/p' "$cdir/mailcheck.out")
	missing=$(sed -n 's/^missing \([0-9]*\) .*/\1/p' "$cdir/mailcheck.out")
	corrupt=$(sed -n 's/.* corrupt \([0-9]*\) .*/\1/p' "$cdir/mailcheck.out")
	tmp=$(sed -n 's/.* tmp-files \([0-9]*\).*/\1/p' "$cdir/mailcheck.out")
	local wall p99
	wall=$(awk '/^wall:/ {if ($2 > m) m = $2} END {printf "%.0f", m}' "$cdir"/load-*.out)
	p99=$(awk '/^latency ms:/ {if ($8 > m) m = $8} END {printf "%.0f", m}' "$cdir"/load-*.out)
	note="wall ${wall}s, p99 ${p99} ms${note:+; $note}"
	local res=PASS
	[ "$ok" = 1 ] || { res=FAIL; anyfail=1; }
	summary+=("$(printf '%-4s %-34s %6s %6s %6s %6s %5s %6s %5s %7s %4s %-5s %s' \
		"$c" "$casename" "$nacks" "$n250" "$n4" "$n5" "$ndrop" "$intact" \
		"$missing" "$corrupt" "$tmp" "$res" "$replies${note:+; $note}")")
	if [ "$ok" = 0 ]; then
		printf 'CASE %s FAILED: %s\n' "$c" "$(IFS=';'; echo "${why[*]}")"
		summary+=("     -> $(IFS=';'; echo "${why[*]}")")
		echo "-- daemon log ($c), warnings and errors (first 10):"
		grep -E 'level=(WARN|ERROR)' "$cdir/lda.log" | grep -v 'msg=delivery' | head -10
	else
		echo "CASE $c PASSED"
	fi
	echo "-- daemon log ($c): $(grep -o 'level=[A-Z]*' "$cdir/lda.log" | sort | uniq -c | tr -s ' ' | tr '\n' ' ')"
	grep -o 'status="[^"]*"' "$cdir/lda.log" | sort | uniq -c | sed 's/^/   /'
}

wait_load() { # waits for every background lmtpload (not the log readers)
	local p
	for p in "$@"; do wait "$p"; done
}

# ---- case a: kill -9 a random worker every second ---------------------------
case_a() {
	casename="kill -9 random worker every ${kill_every}s"
	setup_case a "$work/case-a/mail" || return 1
	start_daemon 60s || return 1
	run_load m 2048 "$nmsg"
	local lp=$!
	local kills=0
	while kill -0 "$lp" 2>/dev/null; do
		sleep "$kill_every"
		local pids
		mapfile -t pids < <(workerpids)
		if [ "${#pids[@]}" -gt 0 ]; then
			kill -KILL "${pids[$((RANDOM % ${#pids[@]}))]}" 2>/dev/null && kills=$((kills + 1))
		fi
	done
	wait_load "$lp"
	cat "$cdir/load-m.out"
	extra_fail=""
	alive_re='^250 '
	log "case a: $kills workers killed"
	finish "250 2.0.0,4xx" "$kills kills"
}

# ---- case b: SIGSTOP past delivery_timeout ------------------------------------
# busy_workers PID...: those that have the listener's spool (a message)
# open, in one pass: a file in spool_dir, or the memfd a message up to
# limits.spool_memory is spooled in.
busy_workers() {
	local dirs=() p
	for p in "$@"; do dirs+=("/proc/$p/fd"); done
	find "${dirs[@]}" -maxdepth 1 \( -lname "$cdir/spool-lda/*" -o -lname "/memfd:lda-spool*" \) 2>/dev/null |
		cut -d/ -f3 | sort -u
}

# holds_job PID: the worker has the listener's spool (a message) open.
holds_job() {
	local f l
	for f in "/proc/$1/fd/"*; do
		l=$(readlink "$f" 2>/dev/null)
		[[ "$l" == "$cdir/spool-lda/"* || "$l" == "/memfd:lda-spool"* ]] && return 0
	done
	return 1
}

case_b() {
	casename="SIGSTOP mid-job worker 7s, timeout 5s"
	setup_case b "$work/case-b/mail" || return 1
	start_daemon 5s || return 1
	run_load m 2048 $((nmsg * 8 / 5)) # room for three rounds
	local lp=$!
	local rounds=0 held_total=0 conts=0 left=() p i
	# A worker in the middle of a delivery holds the listener's spool
	# file (the message); an idle warm worker does not. Stop such a
	# worker, check it still holds the job once stopped, keep it stopped
	# past delivery_timeout, then send SIGCONT (rounds 1 and 3) or leave it
	# stopped (round 2). Three rounds.
	sleep 2
	while kill -0 "$lp" 2>/dev/null && [ "$rounds" -lt 3 ]; do
		local busy=() held=() pids=()
		mapfile -t pids < <(workerpids)
		[ "${#pids[@]}" -gt 0 ] && mapfile -t busy < <(busy_workers "${pids[@]}")
		if [ "${#busy[@]}" = 0 ]; then
			sleep 0.01
			continue
		fi
		kill -STOP "${busy[@]}" 2>/dev/null
		for p in "${busy[@]}"; do
			if holds_job "$p"; then
				held+=("$p")
			else
				kill -CONT "$p" 2>/dev/null # finished before the stop
			fi
		done
		[ "${#held[@]}" -gt 0 ] || continue
		rounds=$((rounds + 1))
		held_total=$((held_total + ${#held[@]}))
		log "case b: round $rounds: stopped ${#held[@]} worker(s) in the middle of a job: ${held[*]}"
		sleep 7
		for i in "${!held[@]}"; do
			if [ $(((rounds + i) % 2)) = 1 ]; then # alternate over rounds
				kill -CONT "${held[$i]}" 2>/dev/null && conts=$((conts + 1))
			else
				left+=("${held[$i]}")
			fi
		done
		sleep 1
	done
	wait_load "$lp"
	cat "$cdir/load-m.out"
	# Workers left stopped must have been killed by the daemon (its
	# timeout kills the process group) or be reaped as idle.
	sleep 3
	local stuck=()
	for p in "${left[@]}"; do
		if [ -e "/proc/$p" ] && [[ "$(tr '\0' ' ' 2>/dev/null <"/proc/$p/cmdline")" == "$lda worker "* ]]; then
			stuck+=("$p($(awk '/^State:/ {print $2}' "/proc/$p/status"))")
		fi
	done
	extra_fail=""
	[ "${#stuck[@]}" = 0 ] || extra_fail="workers left stopped and never killed: ${stuck[*]}"
	local timeouts
	timeouts=$(awk '$3 == "451" && $4 == "4.4.7"' "$cdir/ack-m" | wc -l)
	[ "$held_total" -gt 0 ] || extra_fail="${extra_fail:+$extra_fail; }no worker could be stopped in the middle of a job"
	[ "$timeouts" -ge "$held_total" ] || extra_fail="${extra_fail:+$extra_fail; }$held_total workers stopped mid-job but only $timeouts replies 451 4.4.7"
	local after
	after=$(awk '$3 == "250"' "$cdir/ack-m" | wc -l)
	[ "$after" -gt 0 ] || extra_fail="${extra_fail:+$extra_fail; }nothing delivered"
	# kill -CONT the rest, in case the daemon did not, so that cleanup works.
	for p in "${left[@]}"; do kill -CONT "$p" 2>/dev/null; done
	alive_re='^250 '
	log "case b: $rounds rounds, $held_total workers stopped mid-job, SIGCONT to $((held_total - ${#left[@]})) after 7s ($conts still existed), ${#left[@]} left stopped, ${#stuck[@]} of them still there; $timeouts replies 451 4.4.7"
	finish "250 2.0.0,4xx" "$held_total stopped mid-job, ${#left[@]} left stopped, $timeouts x 451 4.4.7"
}

# ---- case c: ENOSPC on a 4 MiB tmpfs --------------------------------------------
case_c() {
	casename="ENOSPC: mail on a 4 MiB tmpfs"
	mkdir -p "$work/case-c/fs"
	mount -t tmpfs -o size=4m,mode=755 "lda-faults-$tag" "$work/case-c/fs" || return 1
	mounts+=("$work/case-c/fs")
	setup_case c "$work/case-c/fs" || return 1
	start_daemon 60s || return 1
	run_load m 16384 "$nmsg"
	local lp=$!
	wait_load "$lp"
	cat "$cdir/load-m.out"
	df -k "$work/case-c/fs" | tail -1
	extra_fail=""
	local full
	full=$(awk '$3 == "452" && $4 == "4.3.1"' "$cdir/ack-m" | wc -l)
	[ "$full" -gt 0 ] || extra_fail="the file system never filled (no 452 4.3.1)"
	alive_re='^(250 2\.0\.0|452 4\.3\.1)$'
	finish "250 2.0.0,452 4.3.1" "$full x 452 4.3.1"
	umount -l "$work/case-c/fs" && mounts=()
}

# ---- case d: RLIMIT_FSIZE ------------------------------------------------------
case_d() {
	casename="RLIMIT_FSIZE 1 MiB, mixed sizes"
	setup_case d "$work/case-d/mail" || return 1
	start_daemon 60s prlimit --fsize=1048576 || return 1
	grep -q 'Max file size *1048576' "/proc/$dpid/limits" || { echo "prlimit did not apply" >&2; return 1; }
	run_load s 4096 "$nmsg"
	local p1=$!
	run_load m 786432 60
	local p2=$!
	run_load l 1572864 20
	local p3=$!
	wait_load "$p1" "$p2" "$p3"
	for x in s m l; do cat "$cdir/load-$x.out"; done
	extra_fail=""
	# A mailbox that reaches the limit is EFBIG in the worker: 552 5.2.2
	# (internal/status). A message larger than the limit already fails in
	# the listener's spool: 552 5.3.4 (lda-lmtp(7), DATA).
	local big spoolbig other
	big=$(awk '$3 == "552" && $4 == "5.2.2"' "$cdir/ack-s" "$cdir/ack-m" | wc -l)
	[ "$big" -gt 0 ] || extra_fail="no 552 5.2.2 although mailboxes reached the limit"
	other=$(awk '!($3 == "250" && $4 == "2.0.0") && !($3 == "552" && $4 == "5.2.2")' "$cdir/ack-s" "$cdir/ack-m" | wc -l)
	[ "$other" = 0 ] || extra_fail="${extra_fail:+$extra_fail; }$other replies to messages under the limit other than 250 2.0.0 / 552 5.2.2"
	spoolbig=$(awk '$3 == "552" && $4 == "5.3.4"' "$cdir/ack-l" | wc -l)
	echo "replies of the 1.5 MiB messages (larger than the limit, spooled by the listener under it):"
	awk '{print "   ", $3, $4}' "$cdir/ack-l" | sort | uniq -c
	[ "$spoolbig" = "$(wc -l <"$cdir/ack-l")" ] || extra_fail="${extra_fail:+$extra_fail; }messages over the file size limit not all answered 552 5.3.4"
	local logged
	logged=$(grep -c -i 'file too large' "$cdir/lda.log")
	echo "log lines naming EFBIG (file too large): $logged"
	alive_re='^250 '
	finish "250 2.0.0,552 5.2.2,552 5.3.4" "$big x 552 5.2.2, $spoolbig x 552 5.3.4 (spool)"
}

for c in $cases; do
	echo
	echo "================ case $c ================"
	extra_fail=""
	alive_re='^250 '
	if ! "case_$c"; then
		echo "CASE $c could not run"
		summary+=("$c    could not run")
		anyfail=1
		stop_daemon >/dev/null 2>&1
	fi
done

echo
echo "== fault matrix, lda $LDA_DESC"
printf '%-4s %-34s %6s %6s %6s %6s %5s %6s %5s %7s %4s %-5s %s\n' case fault acks 2xx 4xx 5xx drop intact miss corrupt tmp res "replies"
for row in "${summary[@]}"; do echo "$row"; done
if [ "$anyfail" = 0 ]; then
	echo "FAULT MATRIX PASSED"
else
	echo "FAULT MATRIX FAILED"
	exit 1
fi
