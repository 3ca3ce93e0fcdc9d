#!/bin/bash
# Soak test of `lda serve`: 10 real users (5 Maildir, 5 mbox through
# XLDA-DEST), 8 connections x SOAK_MESSAGES messages each (default
# 20000), a 5 s time series of the parent's and the listener's RSS and
# descriptors and of the number of `lda worker` processes; then checks
# that memory and descriptors stayed flat, that no more workers remain
# after the idle time than the configuration allows, and runs mailcheck
# over every mailbox. Needs root. Exit 0 only if every check passed.
#
# Environment: SOAK_MESSAGES (per connection, 20000), SOAK_CONNS (8),
# SOAK_SIZE (bytes per message, 2048), SOAK_RCPTS (recipients per
# message, 1), SOAK_PIPELINING (1 to pipeline), SOAK_CHUNKING (1 to send
# BDAT instead of DATA, lmtpload -chunking), SOAK_INTERVAL (5),
# SOAK_WORKERS (the lda.yaml workers: value to try, default
# "{max_idle: 12, idle_time: 10s, max_deliveries: 1000}", room for a
# warm worker for each of the 10 users; "none" to
# leave it out), SOAK_KEEP=1 keeps the work directory, LDA_REV=COMMIT
# builds lda from that commit (git archive) instead of the working tree,
# SOAK_SIEVE=FILE gives every user FILE as ~/.lda.sieve (it runs for the
# five Maildir users, whose destination is the default; the mbox ones are
# sent XLDA-DEST). It must keep every message, as bench/typical.sieve
# does, so that the counts hold.
set -uo pipefail
if [ -n "${SOAK_SIEVE:-}" ]; then
	[ -r "$SOAK_SIEVE" ] || { echo "soak.sh: SOAK_SIEVE=$SOAK_SIEVE: no such file" >&2; exit 2; }
	SOAK_SIEVE=$(realpath "$SOAK_SIEVE")
fi
cd "$(dirname "$0")/.." || exit 2
repo=$(pwd)
REPO=$repo
# shellcheck source=bench/lib.sh
. bench/lib.sh

[ "$(id -u)" = 0 ] || { echo "soak.sh: needs root" >&2; exit 2; }

per=${SOAK_MESSAGES:-20000}
conns=${SOAK_CONNS:-8}
size=${SOAK_SIZE:-2048}
rcpts=${SOAK_RCPTS:-1}
interval=${SOAK_INTERVAL:-5}
workers_cfg=${SOAK_WORKERS:-"{max_idle: 12, idle_time: 10s, max_deliveries: 1000}"}
total=$((per * conns))

work=$(mktemp -d /tmp/lda-soak.XXXXXX)
chmod 755 "$work"
tag=$(printf '%04d' $(($$ % 10000)))
users=()
for i in $(seq 0 9); do users+=("lsk${tag}u$i"); done
luser="lsk${tag}l"
dpid=""
fail=0

log() { printf '[soak %s] %s\n' "$(date -u +%H:%M:%S)" "$*"; }
bad() { printf '[soak %s] FAIL: %s\n' "$(date -u +%H:%M:%S)" "$*"; fail=1; }

cleanup() {
	if [ -n "$dpid" ] && kill -0 "$dpid" 2>/dev/null; then
		kill -TERM "$dpid" 2>/dev/null
		for _ in $(seq 1 100); do kill -0 "$dpid" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$dpid" 2>/dev/null
	fi
	for u in "${users[@]}" "$luser"; do userdel -f "$u" >/dev/null 2>&1; done
	if [ "${SOAK_KEEP:-0}" = 1 ]; then
		echo "soak.sh: work directory kept: $work"
	else
		rm -rf "$work"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- build ---------------------------------------------------------------
build_tools "$work/bin" bench/lmtpload bench/mailcheck
lda=$work/bin/lda
log "lda commit: $LDA_DESC"

# ---- users and mailboxes ---------------------------------------------------
mkdir -p "$work/home" "$work/mail" "$work/run"
chmod 755 "$work/home" "$work/run"
chmod 1777 "$work/mail"
for u in "${users[@]}" "$luser"; do
	userdel -f "$u" >/dev/null 2>&1
	useradd -M -U -d "$work/home/$u" -s /usr/sbin/nologin "$u" || { echo "useradd $u failed" >&2; exit 2; }
	mkdir -p "$work/home/$u"
	chown "$u:$u" "$work/home/$u"
	chmod 700 "$work/home/$u"
	if [ -n "${SOAK_SIEVE:-}" ] && [ "$u" != "$luser" ]; then
		install -m 600 -o "$u" -g "$u" "$SOAK_SIEVE" "$work/home/$u/.lda.sieve" || { echo "soak.sh: cannot install $SOAK_SIEVE for $u" >&2; exit 2; }
	fi
	uid=$(id -u "$u")
	[ "$uid" -ge 1000 ] || { echo "soak.sh: $u got uid $uid < 1000" >&2; exit 2; }
done

cat >"$work/policy.yaml" <<EOF
version: 1
min_uid: 1000
default: {maildir: ~/Maildir}
allow:
  - {maildir: ~/Maildir}
  - {mbox: $work/mail/%u}
mbox: {locking: [dotlock, fcntl], lock_timeout: 30s, stale_lock: 5m, quoting: mboxrd, create: true}
maildir: {create: true}
EOF

dests=()
maildirs=()
mboxes=()
for i in $(seq 0 9); do
	u=${users[$i]}
	if [ $((i % 2)) = 1 ]; then
		dests+=(-dest "$u=mbox:$work/mail/$u")
		mboxes+=("$work/mail/$u")
	else
		maildirs+=("$work/home/$u/Maildir")
	fi
done
userlist=$(IFS=,; echo "${users[*]}")

write_config() { # $1: the workers: line, or ""
	cat >"$work/lda.yaml" <<EOF
version: 1
policy: $work/policy.yaml
socket: $work/run/lmtp.sock
socket_mode: "0660"
listener_user: $luser
peers: [root]
spool_dir: $work/spool-lda
hostname: lda.soak.test
log: $work/lda.log
parallel: 4
limits: {connections: 64, recipients: 100, message_size: 10485760, line_length: 4096, idle_timeout: 5m, data_timeout: 5m}
$1
EOF
	chmod 640 "$work/lda.yaml"
}

use_workers=0
max_idle=0
idle_secs=3
if [ "$workers_cfg" != none ]; then
	write_config "workers: $workers_cfg"
	if out=$("$lda" check -config "$work/lda.yaml" 2>&1); then
		use_workers=1
		max_idle=$(sed -n 's/.*max_idle: *\([0-9]*\).*/\1/p' <<<"$workers_cfg")
		idle=$(sed -n 's/.*idle_time: *\([0-9]*\)\(ms\|s\|m\).*/\1 \2/p' <<<"$workers_cfg")
		case "$idle" in
		*" ms") idle_secs=1 ;;
		*" s") idle_secs=${idle% s} ;;
		*" m") idle_secs=$((${idle% m} * 60)) ;;
		esac
		log "lda serve accepts 'workers: $workers_cfg' (warm per-user workers)"
	else
		log "lda serve does not accept a workers: key ($(head -1 <<<"$out")); one worker per delivery"
	fi
fi
[ "$use_workers" = 1 ] || write_config ""
if ! "$lda" check -config "$work/lda.yaml" >/dev/null 2>&1; then
	"$lda" check -config "$work/lda.yaml"
	echo "soak.sh: the configuration does not load" >&2
	exit 2
fi

# ---- daemon --------------------------------------------------------------
"$lda" serve -config "$work/lda.yaml" >"$work/serve.out" 2>&1 &
dpid=$!
for _ in $(seq 1 100); do [ -S "$work/run/lmtp.sock" ] && break; sleep 0.1; done
[ -S "$work/run/lmtp.sock" ] || { cat "$work/serve.out"; echo "soak.sh: no socket" >&2; exit 2; }

# procpid SUB: the pid of "$lda SUB ..." (the listener), by its argv.
procpid() {
	local p
	for p in /proc/[0-9]*; do
		if [[ "$(tr '\0' ' ' 2>/dev/null <"$p/cmdline")" == "$lda $1 "* ]]; then
			echo "${p#/proc/}"
			return
		fi
	done
}
rss_kb() { awk '/^VmRSS:/ {print $2; f=1} END {if (!f) print -1}' "/proc/$1/status" 2>/dev/null || echo -1; }
fds() { local n; n=$(ls "/proc/$1/fd" 2>/dev/null | wc -l) && echo "$n"; }
nworkers() { ps -eo args= | awk -v b="$lda" '$1 == b && $2 == "worker"' | wc -l; }

lpid=$(procpid listener)
[ -n "$lpid" ] || { echo "soak.sh: no listener process" >&2; exit 2; }

# Warm up: one small run, then the baseline.
"$work/bin/lmtpload" -socket "$work/run/lmtp.sock" -users "$userlist" "${dests[@]}" -c 2 -n 20 -size "$size" \
	-id warm -ack "$work/ack-warm" >/dev/null || bad "warm-up run failed"
# Let the warm-up's workers exit (idle time), so that the baseline and the
# end are both taken with no worker alive.
wdl=$(($(date +%s) + idle_secs + 10))
while [ "$(nworkers)" -gt 0 ] && [ "$(date +%s)" -lt "$wdl" ]; do sleep 0.2; done
sleep 1
p_rss0=$(rss_kb "$dpid"); l_rss0=$(rss_kb "$lpid")
p_fd0=$(fds "$dpid"); l_fd0=$(fds "$lpid")
log "baseline: parent pid $dpid RSS ${p_rss0} kB fds $p_fd0; listener pid $lpid RSS ${l_rss0} kB fds $l_fd0"

# ---- load with sampling ----------------------------------------------------
pipe=()
[ "${SOAK_PIPELINING:-0}" = 1 ] && pipe=(-pipelining)
[ "${SOAK_CHUNKING:-0}" = 1 ] && pipe+=(-chunking)
log "load: $conns connections x $per messages = $total messages of $size bytes, $rcpts recipient(s) each, users ${users[0]}..${users[9]} (5 Maildir, 5 mbox)"
"$work/bin/lmtpload" -socket "$work/run/lmtp.sock" -users "$userlist" "${dests[@]}" -c "$conns" -n "$total" \
	-size "$size" -rcpts "$rcpts" "${pipe[@]}" -id soak -ack "$work/ack-soak" >"$work/load.out" 2>"$work/load.err" &
loadpid=$!

series=$work/series
: >"$series"
printf '%7s %10s %6s %10s %6s %7s %9s\n' "t(s)" "parentRSS" "pFDs" "listenRSS" "lFDs" "workers" "logLines" | tee -a "$series.txt"
t0=$(date +%s)
sample() { # appends "t prss pfd lrss lfd workers lines"
	local t; t=$(($(date +%s) - t0))
	local row
	row="$t $(rss_kb "$dpid") $(fds "$dpid") $(rss_kb "$lpid") $(fds "$lpid") $(nworkers) $(wc -l <"$work/lda.log" 2>/dev/null || echo 0)"
	echo "$row" >>"$series"
	# shellcheck disable=SC2086
	printf '%7s %10s %6s %10s %6s %7s %9s\n' $row | tee -a "$series.txt"
}
next=$(($(date +%s) + interval))
while kill -0 "$loadpid" 2>/dev/null; do
	if [ "$(date +%s)" -ge "$next" ] || [ ! -s "$series" ]; then
		next=$(($(date +%s) + interval))
		sample
	fi
	sleep 0.5
done
wait "$loadpid"
loadrc=$?
sample
cat "$work/load.out"
[ -s "$work/load.err" ] && { echo "lmtpload stderr (first lines):"; head -5 "$work/load.err"; }
[ "$loadrc" = 0 ] || bad "lmtpload exited $loadrc"
elapsed=$(($(date +%s) - t0))

# ---- after the load: descriptors back, workers gone --------------------
wait_idle=$((idle_secs + 5))
log "waiting ${wait_idle}s (idle time ${idle_secs}s + 5s) for idle workers to exit"
sleep "$wait_idle"
sample
w_end=$(nworkers)
p_rss1=$(rss_kb "$dpid"); l_rss1=$(rss_kb "$lpid")
# Descriptors: poll (10 s more at most) until both are back at the baseline.
fd_deadline=$(($(date +%s) + 10))
while :; do
	p_fd2=$(fds "$dpid"); l_fd2=$(fds "$lpid")
	{ [ "$p_fd2" = "$p_fd0" ] && [ "$l_fd2" = "$l_fd0" ]; } && break
	[ "$(date +%s)" -ge "$fd_deadline" ] && break
	sleep 0.2
done

# The daemon still answers.
if ! "$work/bin/lmtpload" -socket "$work/run/lmtp.sock" -users "${users[0]}" -c 1 -n 1 -id after -ack "$work/ack-after" >/dev/null 2>&1 ||
	! grep -q ' 250 ' "$work/ack-after"; then
	bad "the daemon does not deliver after the soak"
fi

# ---- flatness --------------------------------------------------------------
# start = baseline before the load; peak over the series; end = after the
# idle wait. RSS is flat if the end is within max(16 MB, 50%) of the start,
# the peak within max(32 MB, 100%), and the last quarter of the run did not
# grow by more than 8 MB over the second quarter (a leak grows steadily).
check_rss() { # name col start end
	local name=$1 col=$2 start=$3 end=$4
	local peak q2 q4
	peak=$(awk -v c="$col" 'BEGIN{m=0} $c>m{m=$c} END{print m}' "$series")
	read -r q2 q4 < <(awk -v c="$col" '{v[NR]=$c} END{
		n=NR; if (n < 8) {print 0, 0; exit}
		a=0; for (i=int(n/4)+1; i<=int(n/2); i++) if (v[i]>a) a=v[i]
		b=0; for (i=int(3*n/4)+1; i<=n; i++) if (v[i]>b) b=v[i]
		print a, b}' "$series")
	printf '%-9s RSS kB: start %7d  peak %7d  end %7d  (max 2nd quarter %d, max 4th quarter %d)\n' "$name" "$start" "$peak" "$end" "$q2" "$q4"
	local tol=$((start / 2)); [ $tol -lt 16384 ] && tol=16384
	local ptol=$start; [ $ptol -lt 32768 ] && ptol=32768
	[ "$end" -le $((start + tol)) ] || bad "$name RSS not flat: start $start kB, end $end kB"
	[ "$peak" -le $((start + ptol)) ] || bad "$name RSS peak $peak kB, start $start kB"
	[ "$q4" -le $((q2 + 8192)) ] || bad "$name RSS grows through the run: $q2 -> $q4 kB"
}
check_fds() { # name col start end
	local peak
	peak=$(awk -v c="$2" 'BEGIN{m=0} $c>m{m=$c} END{print m}' "$series")
	printf '%-9s fds:    start %7d  peak %7d  end %7d\n' "$1" "$3" "$peak" "$4"
	[ "$4" = "$3" ] || bad "$1 descriptors not back to baseline: $3 -> $4"
}
echo
echo "== soak summary: $total messages x $rcpts rcpt(s), $conns connections, ${elapsed}s, lda $LDA_DESC"
check_rss parent 2 "$p_rss0" "$p_rss1"
check_rss listener 4 "$l_rss0" "$l_rss1"
check_fds parent 3 "$p_fd0" "$p_fd2"
check_fds listener 5 "$l_fd0" "$l_fd2"
w_peak=$(awk 'BEGIN{m=0} $6>m{m=$6} END{print m}' "$series")
allowed=0
[ "$use_workers" = 1 ] && allowed=$max_idle
printf 'workers:  peak %d, after %ds idle %d (allowed %d; warm workers %s)\n' "$w_peak" "$wait_idle" "$w_end" "$allowed" \
	"$([ "$use_workers" = 1 ] && echo "on: $workers_cfg" || echo off)"
[ "$w_end" -le "$allowed" ] || bad "$w_end worker processes remain after the idle time, allowed $allowed"
levels=$(grep -o 'level=[A-Z]*' "$work/lda.log" | sort | uniq -c | tr -s ' ' | tr '\n' ' ')
echo "daemon log: $(wc -l <"$work/lda.log") lines; $levels"
grep -m3 'level=ERROR' "$work/lda.log"
if [ -n "${SOAK_SIEVE:-}" ]; then
	filtered=$(grep -c 'msg=recipient .*actions=keep' "$work/lda.log")
	echo "deliveries that ran the Sieve script: $filtered"
	[ "$filtered" -gt 0 ] || bad "SOAK_SIEVE: no delivery ran the script (no actions=keep in the log)"
fi

# ---- stop, then mailcheck ----------------------------------------------------
kill -TERM "$dpid"
stopped=0
for _ in $(seq 1 300); do kill -0 "$dpid" 2>/dev/null || { stopped=1; break; }; sleep 0.1; done
if [ "$stopped" = 1 ]; then
	wait "$dpid"; drc=$?
	[ "$drc" = 0 ] || bad "lda serve exited $drc after SIGTERM"
else
	bad "lda serve did not exit within 30s of SIGTERM"
fi
dpid=""
left=$(nworkers)
[ "$left" = 0 ] || bad "$left worker processes left after the daemon exited"

echo
echo "== mailcheck over ${#maildirs[@]} Maildirs and ${#mboxes[@]} mboxes"
if ! "$work/bin/mailcheck" -codes 250 -ack "$work/ack-warm" -ack "$work/ack-soak" -ack "$work/ack-after" \
	"${maildirs[@]}" "${mboxes[@]}"; then
	bad "mailcheck"
fi

echo
if [ "$fail" = 0 ]; then
	echo "SOAK PASSED"
else
	echo "SOAK FAILED"
	exit 1
fi
