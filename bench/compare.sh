#!/usr/bin/env bash
# bench/compare.sh: lda's LMTP delivery against Dovecot's LMTP (Maildir)
# and sendmail's mail.local -l (mbox), side by side in one run, with the
# raw file-system ceiling (bench/rawceiling) at the same durability.
#
# Run as root from anywhere:  bash bench/compare.sh
# Quick run:                   REPS=1 MESSAGES=200 bash bench/compare.sh
#
# Environment:
#   REPS=3          repetitions of every cell
#   MESSAGES=2000   messages per run
#   PIPELINING=1    lmtpload -pipelining for every peer (0: lock-step)
#   WARMUP=400      messages each server gets over 8 connections (1 KiB,
#                   the ten users) before its first measured run, not
#                   recorded: lda's warm workers and Dovecot's processes
#                   are started there, as the floor starts its own
#                   processes before each of its runs; 0 to skip (then
#                   lda's first run starts a worker per user in it). It
#                   comes after SETTLE, which neither lda's idle_time
#                   (30s here) nor Dovecot's idle_kill (60s) outlasts
#   SENDER=         lmtpload -sender for every peer (default its own,
#                   bench@bench.test, 16 bytes; the mbox From_ line's
#                   length follows it; rawceiling writes its own)
#   BODIES=32       lmtpload -bodies: distinct bodies made before each run,
#                   taken in turn (0: every message made whole during the
#                   run, as before the nineteenth round; see bench/README.md)
#   CHUNKING=0      1: lmtpload -chunking (BDAT LAST instead of DATA) for
#                   lda and Dovecot, which both offer CHUNKING; mail.local
#                   does not, and gets DATA
#   LDA_REV=        build lda from this commit (git archive, the work
#                   tree untouched) instead of from the work tree
#   WORKERS=auto    auto: the warm-worker section in lda.yaml if lda
#                   serve accepts it; on: required; off: never
#   MAX_DELIVERIES= that section's max_deliveries (default: none given,
#                   so lda's own, 1000, applies); see RESULTS.md, the
#                   twenty-third round, for 10000
#   GATHER=         that section's gather (default: none given, so lda's
#                   own, true, applies; GATHER=false for the build that
#                   never gathers: RESULTS.md, the twenty-fifth round)
#   MATRICES="maildir mbox"
#   CELLS=          only these cells, by name (e.g. CELLS=1c-1k with
#                   MATRICES=mbox): many repetitions of one cell, for a
#                   confidence interval of its same-repetition ratio
#                   (the tables give one from six repetitions up)
#   TSV=            where the per-run figures go (default
#                   /tmp/lda-bench-<time>.tsv)
#   KEEP=0          1: keep the temporary directory (logs, mailboxes)
#   RESET=retire    how the last run's Maildirs go: moved aside (retire)
#                   or removed at once (remove); see retire in lib.sh
#   SIEVE=          a Sieve script every user gets, as ~/.dovecot.sieve,
#                   which lda reads when there is no ~/.lda.sieve and
#                   Dovecot's LMTP runs through Pigeonhole (installs
#                   dovecot-sieve); the Maildir matrix only
#   HOMES=disk      tmpfs: run in a private mount namespace with a tmpfs
#                   on the temporary directory (homes, Maildirs, raw
#                   ceiling) and another on /var/mail, where fsync costs
#                   nothing: what is left is each agent's own path. Not a
#                   durability setting; the system's /var/mail is not
#                   touched (the mounts exist only in the namespace)
#   FLOOR=0         1: a fourth agent in both matrices, rawceiling -serve
#                   (the floor of lda's shape: LMTP, a memfd spool and a
#                   warm process per user, around the raw ceiling's file
#                   operations and nothing else; see bench/rawceiling),
#                   started afresh for each of its runs, and a table of
#                   it against lda and the raw ceiling; it offers no
#                   CHUNKING and always gets DATA
#   SETTLE=90       seconds to wait, once set up, before the first run:
#                   on ext4 without a journal each inode allocation skips
#                   every inode freed in about the last minute (see retire
#                   in lib.sh), so a mass deletion just before (the last
#                   run's clean-up, a test suite) makes the first runs
#                   pay a scan on every Maildir delivery; 0 to skip
#   PIN=            a CPU list (e.g. 1): every server (lda serve with its
#                   listener and workers, Dovecot with its children,
#                   socat with each mail.local) runs under taskset -c PIN,
#                   which they inherit; lmtpload and rawceiling stay free.
#                   To see what keeping each agent on one vCPU does to it
#                   and to the ratios; no agent is pinned by default
#
# It installs dovecot-core, dovecot-lmtpd, socat and liblockfile1 if they
# are missing (without starting any service), creates the users
# benchu1..benchu10 and benchlis (removed at the end), starts every server
# in a cgroup of its own so that its CPU time per delivery can be reported
# (cgroup v2, else v1 cpuacct; removed at the end), and removes everything
# it made on exit. See bench/README.md.
set -euo pipefail

HOMES=${HOMES:-disk}
case $HOMES in
disk) ;;
tmpfs)
	if [ -z "${LDA_BENCH_NS:-}" ]; then
		# Everything below, and every process it starts, in a mount
		# namespace of its own: the tmpfs mounts end with it.
		LDA_BENCH_NS=1 exec unshare --mount --propagation private bash "${BASH_SOURCE[0]}" "$@"
	fi
	;;
*) echo "HOMES is disk or tmpfs" >&2; exit 2 ;;
esac

SIEVE=${SIEVE:-}
if [ -n "$SIEVE" ]; then
	[ -r "$SIEVE" ] || { echo "SIEVE=$SIEVE: no such file" >&2; exit 2; }
	SIEVE=$(realpath "$SIEVE")
fi

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$HERE")
# shellcheck source=bench/lib.sh
. "$HERE/lib.sh"

REPS=${REPS:-3}
MESSAGES=${MESSAGES:-2000}
PIPELINING=${PIPELINING:-1}
BODIES=${BODIES:-32}
SENDER=${SENDER:-}
[[ $SENDER =~ ^[^[:space:]\<\>@]+@[^[:space:]\<\>@]+$ || -z $SENDER ]] || { echo "SENDER=$SENDER: not an address (local@domain)" >&2; exit 2; }
WARMUP=${WARMUP:-400}
CHUNKING=${CHUNKING:-0}
CHUNK_FLAG=()
case $CHUNKING in
0) ;;
1) CHUNK_FLAG=(-chunking) ;;
*) echo "CHUNKING is 0 or 1" >&2; exit 2 ;;
esac
FLOOR=${FLOOR:-0}
case $FLOOR in 0 | 1) ;; *) echo "FLOOR is 0 or 1" >&2; exit 2 ;; esac
SETTLE=${SETTLE:-90}
[[ $SETTLE =~ ^[0-9]+$ ]] || { echo "SETTLE is a number of seconds" >&2; exit 2; }
FLOOR_PID=
PIN=${PIN:-}
PINCMD=()
if [ -n "$PIN" ]; then
	[[ $PIN =~ ^[0-9][0-9,-]*$ ]] && taskset -c "$PIN" true >/dev/null 2>&1 ||
		{ echo "PIN=$PIN: not a CPU list of this machine (such as 1 or 0-1)" >&2; exit 2; }
	PINCMD=(taskset -c "$PIN")
fi
LDA_REV=${LDA_REV:-}
WORKERS=${WORKERS:-auto}
MAX_DELIVERIES=${MAX_DELIVERIES:-}
[[ -z $MAX_DELIVERIES || $MAX_DELIVERIES =~ ^[1-9][0-9]*$ ]] || { echo "MAX_DELIVERIES=$MAX_DELIVERIES: not a positive number" >&2; exit 2; }
MATRICES=${MATRICES:-maildir mbox}
# The cells of each matrix: "name conns size rcpts".
MAILDIR_CELLS=("1c-1k-1r 1 1024 1" "8c-1k-1r 8 1024 1" "1c-100k-1r 1 102400 1" "1c-1k-10r 1 1024 10" "8c-1k-10r 8 1024 10")
MBOX_CELLS=("1c-1k 1 1024 1" "8c-1k 8 1024 1" "1c-100k 1 102400 1")
# cell_names CELL...: the names alone.
cell_names() { local c; for c in "$@"; do printf '%s ' "${c%% *}"; done; }
CELLS=${CELLS:-}
for c in $CELLS; do
	if [[ " $(cell_names "${MAILDIR_CELLS[@]}")" == *" $c "* ]]; then
		[[ " $MATRICES " == *" maildir "* ]] || { echo "CELLS: $c is a Maildir cell, and MATRICES has no maildir" >&2; exit 2; }
	elif [[ " $(cell_names "${MBOX_CELLS[@]}")" == *" $c "* ]]; then
		[[ " $MATRICES " == *" mbox "* ]] || { echo "CELLS: $c is an mbox cell, and MATRICES has no mbox" >&2; exit 2; }
	else
		echo "CELLS: no cell $c (Maildir: $(cell_names "${MAILDIR_CELLS[@]}"); mbox: $(cell_names "${MBOX_CELLS[@]}"))" >&2
		exit 2
	fi
done
KEEP=${KEEP:-0}
if [ -n "$SIEVE" ] && [ "$MATRICES" != maildir ]; then
	die "SIEVE applies to the Maildir matrix only (mail.local has no filter): set MATRICES=maildir"
fi
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
TSV=${TSV:-/tmp/lda-bench-$STAMP.tsv}
NUSERS=10
BENCH_USERS=$(seq -f 'benchu%g' 1 "$NUSERS" | tr '\n' ' ')
BENCH_USERS=${BENCH_USERS% }
BENCH_LISTENER=benchlis

[ "$(id -u)" -eq 0 ] || die "run compare.sh as root"
command -v go >/dev/null || die "go is not in PATH"

BASE=$(mktemp -d /tmp/lda-bench.XXXXXX)
if [ "$HOMES" = tmpfs ]; then
	[ "${KEEP:-0}" = 1 ] && die "KEEP=1 keeps nothing with HOMES=tmpfs"
	mount -t tmpfs -o size=6g lda-bench "$BASE"
	# The same owner and mode as the real one, for the policy's checks.
	mount -t tmpfs -o "size=1g,mode=$(stat -c %a /var/mail),uid=$(stat -c %u /var/mail),gid=$(stat -c %g /var/mail)" lda-bench-mail /var/mail
	RESET=remove # retired Maildirs would fill the tmpfs
fi
chmod 755 "$BASE"
: >"$BASE/pids"
DOVECOT_CONF=
FAILED=0

cleanup() {
	local rc=$?
	set +e
	trap - EXIT INT TERM
	say "cleaning up"
	if [ -n "$DOVECOT_CONF" ] && [ -f "$BASE/dovecot/run/master.pid" ]; then
		dovecot -c "$DOVECOT_CONF" stop >/dev/null 2>&1
	fi
	[ -n "$FLOOR_PID" ] && stop_pid "$FLOOR_PID" 10
	local pid _
	while read -r pid _; do
		[ -n "$pid" ] && stop_pid "$pid" 20
	done <"$BASE/pids"
	remove_bench_users
	cg_cleanup
	if [ "$KEEP" = 1 ]; then
		say "kept $BASE"
	else
		if [ "$HOMES" = tmpfs ]; then
			umount "$BASE" /var/mail # and their contents with them
			rmdir "$BASE"
		else
			rm -rf "$BASE"
		fi
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "base directory $BASE; FLOOR=$FLOOR REPS=$REPS MESSAGES=$MESSAGES PIPELINING=$PIPELINING CHUNKING=$CHUNKING HOMES=$HOMES WARMUP=$WARMUP BODIES=$BODIES"

# --- packages, users, binaries -------------------------------------------

install_missing
fetch_mail_local
cg_init
if [ -n "$CG_ROOT" ]; then
	say "CPU accounting: each agent in a cgroup ($CG_KIND) under $CG_ROOT"
else
	warn "no cgroup to count the agents' CPU time in: their CPU figures will be \"-\" (the client's and the raw ceiling's are still given)"
fi
say "mail.local: $MAIL_LOCAL"
say "dovecot $(dovecot --version)"

remove_bench_users # an aborted earlier run's
create_bench_users
if [ -n "$SIEVE" ]; then
	for u in $BENCH_USERS; do install -m 600 -o "$u" -g "$u" "$SIEVE" "$BASE/home/$u/.dovecot.sieve"; done
	say "every user's ~/.dovecot.sieve is $SIEVE (lda and Dovecot read it)"
fi

build_tools "$BASE/bin" bench/lmtpload bench/rawceiling
say "lda: $LDA_DESC"
LDA=$BASE/bin/lda
LOAD=$BASE/bin/lmtpload
RAW=$BASE/bin/rawceiling
USERS=$(users_csv)

# --- Dovecot ---------------------------------------------------------------

start_dovecot() {
	local d=$BASE/dovecot
	mkdir -p "$d/run" "$d/state"
	chmod 755 "$d"
	DOVECOT_SOCK=$d/lmtp.sock
	DOVECOT_CONF=$d/dovecot.conf
	local u
	for u in $BENCH_USERS; do
		printf '%s:{PLAIN}bench:%s:%s::%s::\n' "$u" "$(id -u "$u")" "$(id -g "$u")" "$BASE/home/$u"
	done >"$d/users"
	chmod 640 "$d/users"
	chgrp dovecot "$d/users"
	cat >"$DOVECOT_CONF" <<EOF
# A private Dovecot instance for bench/compare.sh: LMTP only.
base_dir = $d/run
state_dir = $d/state
instance_name = lda-bench-dovecot
protocols = lmtp
ssl = no
log_path = $d/dovecot.log
info_log_path = $d/dovecot.log
first_valid_uid = 1000
mail_location = maildir:~/Maildir
# The default durability: fsync where data would otherwise be lost.
mail_fsync = optimized
auth_username_format = %Ln
lmtp_save_to_detail_mailbox = no
passdb {
  driver = passwd-file
  args = $d/users
}
userdb {
  driver = passwd-file
  args = $d/users
}
service lmtp {
  unix_listener $DOVECOT_SOCK {
    mode = 0600
    user = root
  }
}
EOF
	if [ -n "$SIEVE" ]; then
		cat >>"$DOVECOT_CONF" <<EOF
# SIEVE: every user's ~/.dovecot.sieve, compiled by Pigeonhole into
# ~/.dovecot.svbin on first use and kept while the script is unchanged.
protocol lmtp {
  mail_plugins = \$mail_plugins sieve
}
plugin {
  sieve = file:~/.dovecot.sieve
}
EOF
	fi
	say "starting Dovecot: dovecot -c $DOVECOT_CONF"
	printf '    $ %s\n' "${PINCMD[*]}${PINCMD[*]:+ }dovecot -c $DOVECOT_CONF"
	(cg_exec dovecot "${PINCMD[@]}" dovecot -c "$DOVECOT_CONF")
	local pid
	wait_socket "$DOVECOT_SOCK" "" 10 || { cat "$d/dovecot.log" >&2; die "Dovecot's LMTP socket did not appear"; }
	pid=$(cat "$d/run/master.pid")
	remember_pid "$pid" dovecot
	cg_check dovecot "$pid"
	say "Dovecot master pid $pid, LMTP at $DOVECOT_SOCK"
}

stop_dovecot() {
	[ -n "$DOVECOT_CONF" ] || return 0
	say "stopping Dovecot"
	dovecot -c "$DOVECOT_CONF" stop >/dev/null 2>&1 || true
	local pid
	pid=$(awk '$2 == "dovecot" { print $1 }' "$BASE/pids" | tail -n1)
	[ -n "$pid" ] && stop_pid "$pid" 20
	DOVECOT_CONF=
}

# --- mail.local ------------------------------------------------------------

start_mail_local() {
	local d=$BASE/maillocal
	mkdir -p "$d"
	MAILLOCAL_SOCK=$d/lmtp.sock
	# mail.local runs as root and setreuid()s to the recipient; Debian's
	# build dot-locks through liblockfile, which then tries to create the
	# lock in /var/mail (root:mail 2775) with the user's euid and fails
	# (451 4.3.0 lockmailbox ... error code 75). Running it with gid mail,
	# as a setgid-mail delivery agent would, makes the dot-lock work.
	say "starting mail.local -l behind socat (one mail.local per connection, exec'ed on the socket itself, gid mail)"
	local cmd="setpriv --regid mail --clear-groups $MAIL_LOCAL -l"
	printf '    $ socat UNIX-LISTEN:%s,fork,backlog=128,mode=600,unlink-early EXEC:"%s",nofork &\n' "$MAILLOCAL_SOCK" "$cmd"
	cg_exec mail.local "${PINCMD[@]}" socat "UNIX-LISTEN:$MAILLOCAL_SOCK,fork,backlog=128,mode=600,unlink-early" "EXEC:$cmd,nofork" 2>"$d/socat.log" &
	local pid=$!
	remember_pid "$pid" socat
	wait_socket "$MAILLOCAL_SOCK" "$pid" 10 || { cat "$d/socat.log" >&2; die "socat did not listen"; }
	cg_check mail.local "$pid"
	MAILLOCAL_PID=$pid
}

stop_mail_local() {
	say "stopping socat/mail.local"
	stop_pid "$MAILLOCAL_PID" 10
}

# --- lda ---------------------------------------------------------------------

# start_lda NAME DEFAULT: an lda serve instance whose policy's default
# destination is DEFAULT ({maildir: ~/Maildir} or {mbox: /var/mail/%u}).
# Sets LDA_SOCK and LDA_PID.
start_lda() {
	local name=$1 default=$2 d=$BASE/lda-$1
	mkdir -p "$d"
	chmod 755 "$d"
	cat >"$d/policy.yaml" <<EOF
version: 1
min_uid: 1000
default: $default
allow:
  - {maildir: ~/Maildir}
  - {mbox: /var/mail/%u}
# /var/mail is root:mail 2775 and the worker runs as the user without
# supplementary groups: no dot-lock there, and the mbox must exist.
mbox: {locking: [fcntl], create: false}
maildir: {create: true, create_folders: true}
EOF
	LDA_SOCK=$d/lmtp.sock
	write_lda_conf() {
		cat >"$d/lda.yaml" <<EOF
version: 1
policy: $d/policy.yaml
socket: $LDA_SOCK
socket_mode: "0660"
listener_user: $BENCH_LISTENER
peers: [root]
spool_dir: $d/spool
hostname: bench.test
log: $d/lda.log
EOF
		if [ "$1" = with ]; then
			printf 'workers: {max_idle: 64, idle_time: 30s%s%s}\n' "${MAX_DELIVERIES:+, max_deliveries: $MAX_DELIVERIES}" "${GATHER:+, gather: $GATHER}" >>"$d/lda.yaml"
		fi
		chmod 644 "$d/lda.yaml" "$d/policy.yaml"
	}
	launch() {
		say "starting lda ($name): ${PINCMD[*]}${PINCMD[*]:+ }$LDA serve -config $d/lda.yaml ($1 workers section)"
		rm -f "$LDA_SOCK"
		cg_exec "lda-$name" "${PINCMD[@]}" "$LDA" serve -config "$d/lda.yaml" >>"$d/serve.out" 2>&1 &
		LDA_PID=$!
		if wait_socket "$LDA_SOCK" "$LDA_PID" 15; then
			remember_pid "$LDA_PID" "lda-$name"
			cg_check "lda-$name" "$LDA_PID"
			return 0
		fi
		stop_pid "$LDA_PID" 5
		wait "$LDA_PID" 2>/dev/null || true
		return 1
	}
	local mode=$WORKERS
	if [ "$mode" != off ]; then
		write_lda_conf with
		if launch with; then
			LDA_WORKERS=yes
			return 0
		fi
		warn "lda serve refused the workers section:"
		sed 's/^/    /' "$d/serve.out" >&2
		[ "$mode" = on ] && die "WORKERS=on but lda serve does not accept it"
	fi
	write_lda_conf without
	launch without || { cat "$d/serve.out" >&2; die "lda serve did not start"; }
	LDA_WORKERS=no
}

stop_lda() {
	say "stopping lda (pid $LDA_PID)"
	stop_pid "$LDA_PID" 30
	wait "$LDA_PID" 2>/dev/null || true
}

# --- running and checking ------------------------------------------------

printf 'matrix\tcell\tpeer\trep\tconns\tsize\trcpts\tmessages\tok\ttempfail\tpermfail\tdropped\twall_s\tdeliveries_per_s\tmessages_per_s\tp50_ms\tp90_ms\tp99_ms\tstored\tverified\tagent_cpu_ms\tclient_cpu_ms\tload1\n' >"$TSV"
say "per-run figures go to $TSV"

# load PEER SOCKET CONNS SIZE RCPTS N [extra flags]: one lmtpload run.
load() {
	local peer=$1 sock=$2 c=$3 size=$4 r=$5 n=$6
	shift 6
	local flags=(-socket "$sock" -c "$c" -n "$n" -size "$size" -rcpts "$r" -users "$USERS" -json -id "$peer-$STAMP-$RANDOM" -ack "$BASE/ack.txt")
	[ "$PIPELINING" = 1 ] && flags+=(-pipelining)
	flags+=(-bodies "$BODIES")
	[ -n "$SENDER" ] && flags+=(-sender "$SENDER")
	"$LOAD" "${flags[@]}" "$@" 2>"$BASE/load.err" || { cat "$BASE/load.err" >&2; return 1; }
	[ -s "$BASE/load.err" ] && sed 's/^/    /' "$BASE/load.err" | head -n 5 >&2
	return 0
}

# stored KIND: the messages now stored for the test users.
stored() {
	local u dirs=() files=()
	case $1 in
	maildir)
		for u in $BENCH_USERS; do dirs+=("$BASE/home/$u/Maildir"); done
		count_maildir "${dirs[@]}"
		;;
	mbox)
		for u in $BENCH_USERS; do files+=("/var/mail/$u"); done
		count_mbox "${files[@]}"
		;;
	rawmaildir | floormaildir)
		for u in $BENCH_USERS; do dirs+=("$BASE/${1%maildir}/$u/Maildir"); done
		count_maildir "${dirs[@]}"
		;;
	rawmbox | floormbox)
		for u in $BENCH_USERS; do files+=("$BASE/${1%mbox}/$u.mbox"); done
		count_mbox "${files[@]}"
		;;
	esac
}

# --- the floor (FLOOR=1) ---------------------------------------------------

# restart_floor KIND: a fresh rawceiling -serve (maildir: rename, as the
# raw ceiling's runs; mbox: -mbox) on empty mailboxes under $BASE/floor,
# its processes in cgroup "floor". Its delivery processes keep their new/
# open, so they cannot outlive a retired Maildir. Sets FLOOR_PID.
FLOOR_SOCK=
restart_floor() {
	local flags=()
	[ "$1" = floormbox ] && flags=(-mbox)
	stop_floor
	retire "$BASE/floor"
	FLOOR_SOCK=$BASE/floor.sock
	rm -f "$FLOOR_SOCK"
	cg_exec floor "${PINCMD[@]}" "$RAW" -serve "$FLOOR_SOCK" -dir "$BASE/floor" -users "$USERS" "${flags[@]}" 2>>"$BASE/floor.err" &
	FLOOR_PID=$!
	wait_socket "$FLOOR_SOCK" "$FLOOR_PID" 15 || { cat "$BASE/floor.err" >&2; die "rawceiling -serve did not start"; }
	cg_check floor "$FLOOR_PID"
}

stop_floor() {
	[ -n "$FLOOR_PID" ] || return 0
	stop_pid "$FLOOR_PID" 10
	wait "$FLOOR_PID" 2>/dev/null || true
	FLOOR_PID=
}

# per_delivery MS N [UNITS]: MS spread over N deliveries, "-" for no
# figure; MS is in milliseconds, or in UNITS per millisecond (1000 for µs).
per_delivery() {
	awk -v ms="$1" -v n="$2" -v u="${3:-1}" 'BEGIN { if (n > 0 && ms != "") printf "%.4f", ms / u / n; else print "-" }'
}

# one_run MATRIX CELL PEER REP CONNS SIZE RCPTS: reset the mailboxes, run
# once, record, and in the first repetition check what was stored.
one_run() {
	local matrix=$1 cell=$2 peer=$3 rep=$4 c=$5 size=$6 r=$7 json kind cg=
	case $peer in
	dovecot | lda) kind=maildir ;;
	mail.local | lda-mbox) kind=mbox ;;
	raw) kind=rawmaildir ;;
	raw-mbox) kind=rawmbox ;;
	floor) kind=floormaildir ;;
	floor-mbox) kind=floormbox ;;
	esac
	case $peer in
	dovecot | mail.local) cg=$peer ;;
	lda) cg=lda-maildir ;;
	lda-mbox) cg=lda-mbox ;;
	floor*) cg=floor ;;
	esac
	case $kind in
	maildir) reset_maildirs ;;
	mbox) reset_mboxes ;;
	raw*) retire "$BASE/raw" ;;
	floor*) restart_floor "$kind" ;;
	esac
	sync
	local load1 cpu0=
	load1=$(cut -d' ' -f1 /proc/loadavg)
	[ -n "$cg" ] && { cpu0=$(cg_usec "$cg") || cpu0=; }
	case $peer in
	dovecot) json=$(load "$peer" "$DOVECOT_SOCK" "$c" "$size" "$r" "$MESSAGES" "${CHUNK_FLAG[@]}") ;;
	mail.local) json=$(load "$peer" "$MAILLOCAL_SOCK" "$c" "$size" "$r" "$MESSAGES") ;;
	lda | lda-mbox) json=$(load "$peer" "$LDA_SOCK" "$c" "$size" "$r" "$MESSAGES" "${CHUNK_FLAG[@]}") ;;
	raw) json=$("$RAW" -dir "$BASE/raw" -users "$USERS" -c "$c" -n "$MESSAGES" -size "$size" -rcpts "$r" -json) ;;
	raw-mbox) json=$("$RAW" -mbox -dir "$BASE/raw" -users "$USERS" -c "$c" -n "$MESSAGES" -size "$size" -rcpts "$r" -json) ;;
	floor*) json=$(load "$peer" "$FLOOR_SOCK" "$c" "$size" "$r" "$MESSAGES") ;;
	esac || {
		warn "$peer run failed"
		FAILED=1
		return 0
	}
	local ok temp perm drop n verified=- stored_n=- cpu1= agent_cpu=- client_cpu=-
	[ -n "$cg" ] && { cpu1=$(cg_usec "$cg") || cpu1=; }
	case $peer in floor*) stop_floor ;; esac
	ok=$(jget ok "$json")
	# CPU per acknowledged delivery, in ms: the agent's processes (its
	# cgroup; for the raw ceiling, the program itself) and the client's.
	local own
	own=$(per_delivery "$(jget cpu_ms "$json")" "$ok")
	if [ -n "$cg" ]; then
		[ -n "$cpu0" ] && [ -n "$cpu1" ] && agent_cpu=$(per_delivery "$((cpu1 - cpu0))" "$ok" 1000)
		client_cpu=$own
	else
		agent_cpu=$own
	fi
	temp=$(jget tempfail "$json")
	perm=$(jget permfail "$json")
	drop=$(jget dropped "$json")
	if [ "$rep" = 1 ] && [[ $peer != raw* ]]; then
		stored_n=$(stored "$kind")
		if [ "$stored_n" = "$ok" ]; then
			verified=yes
		else
			verified=NO
			FAILED=1
			warn "$matrix $cell $peer: $ok deliveries acknowledged but $stored_n messages stored"
		fi
		if [ "$kind" = mbox ]; then
			n=$(count_bench_ids /var/mail/benchu*)
			[ "$n" = "$stored_n" ] || warn "$matrix $cell $peer: $stored_n From_ lines but $n X-Bench-Id headers"
		fi
	fi
	if [ "$ok" != "$((MESSAGES * r))" ]; then
		warn "$matrix $cell $peer: ok $ok, 4xx $temp, 5xx $perm, dropped $drop (of $((MESSAGES * r)))"
		FAILED=1
	fi
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%.3f\t%.1f\t%.1f\t%.2f\t%.2f\t%.2f\t%s\t%s\t%s\t%s\t%s\n' \
		"$matrix" "$cell" "$peer" "$rep" "$c" "$size" "$r" "$MESSAGES" "$ok" "$temp" "$perm" "$drop" \
		"$(jget wall_s "$json")" "$(jget deliveries_per_s "$json")" "$(jget messages_per_s "$json")" \
		"$(jget p50_ms "$json")" "$(jget p90_ms "$json")" "$(jget p99_ms "$json")" "$stored_n" "$verified" \
		"$agent_cpu" "$client_cpu" "$load1" >>"$TSV"
	printf '    %-7s %-10s %-10s rep %s: %8.1f deliveries/s  p50 %7.2f ms  p99 %7.2f ms  cpu/delivery %s ms (client %s)  load %s  ok %s%s\n' \
		"$matrix" "$cell" "$peer" "$rep" "$(jget deliveries_per_s "$json")" "$(jget p50_ms "$json")" "$(jget p99_ms "$json")" "$agent_cpu" "$client_cpu" "$load1" "$ok" \
		"$([ "$verified" = - ] || echo "  stored $stored_n verified $verified")"
}

# smoke PEER SOCKET KIND: one message, which must be stored.
smoke() {
	local peer=$1 sock=$2 kind=$3 json
	case $kind in maildir) reset_maildirs ;; mbox) reset_mboxes ;; esac
	json=$(load "$peer" "$sock" 1 1024 1 1) || die "$peer: the smoke test delivery failed"
	local ok stored_n
	ok=$(jget ok "$json")
	stored_n=$(stored "$kind")
	if [ "$ok" != 1 ] || [ "$stored_n" != 1 ]; then
		sed 's/^/    ack: /' "$BASE/ack.txt" >&2
		die "$peer: smoke test: ok $ok, stored $stored_n (want 1 and 1)"
	fi
	say "$peer works: one message delivered ($(cut -d' ' -f3- "$BASE/ack.txt")) and stored"
}

# warmup PEER SOCKET KIND: WARMUP messages over 8 connections, not
# recorded; the mailboxes are emptied before every measured run anyway.
warmup() {
	local peer=$1 sock=$2 kind=$3 json ok
	((WARMUP > 0)) || return 0
	case $kind in maildir) reset_maildirs ;; mbox) reset_mboxes ;; esac
	json=$(load "$peer" "$sock" 8 1024 1 "$WARMUP") || die "$peer: the warm-up failed"
	ok=$(jget ok "$json")
	[ "$ok" = "$WARMUP" ] || die "$peer: warm-up: $ok of $WARMUP delivered"
	say "$peer warmed up: $WARMUP messages over 8 connections (not recorded)"
}

# floor_peer RAWPEER: the floor's name in the matrix of RAWPEER.
floor_peer() { if [ "$1" = raw ]; then echo floor; else echo floor-mbox; fi; }

# run_matrix NAME PEER LDAPEER RAWPEER CELLS...: each cell "name conns size
# rcpts"; in odd repetitions lda runs first, in even ones the peer.
run_matrix() {
	local name=$1 peer=$2 ldapeer=$3 rawpeer=$4 rep cell
	shift 4
	settle
	for ((rep = 1; rep <= REPS; rep++)); do
		for cell in "$@"; do
			local cname c size r p order
			read -r cname c size r <<<"$cell"
			order=("$ldapeer" "$peer" "$rawpeer")
			if ((rep % 2 == 0)); then order=("$peer" "$ldapeer" "$rawpeer"); fi
			if [ "$FLOOR" = 1 ]; then order+=("$(floor_peer "$rawpeer")"); fi
			for p in "${order[@]}"; do
				one_run "$name" "$cname" "$p" "$rep" "$c" "$size" "$r"
			done
		done
	done
}

# settle: once, before the first run (SETTLE above).
settled=
settle() {
	[ -n "$settled" ] && return
	settled=1
	if ((SETTLE > 0)); then
		say "waiting ${SETTLE}s for inodes freed before the runs to stop costing allocations (SETTLE)"
		sleep "$SETTLE"
	fi
}

# CELLS: keep only the cells named (checked at the top).
only_cells() {
	local c
	for c in "$@"; do
		if [ -z "$CELLS" ] || [[ " $CELLS " == *" ${c%% *} "* ]]; then printf '%s\n' "$c"; fi
	done
}
mapfile -t MAILDIR_CELLS < <(only_cells "${MAILDIR_CELLS[@]}")
mapfile -t MBOX_CELLS < <(only_cells "${MBOX_CELLS[@]}")

for m in $MATRICES; do
	case $m in
	maildir)
		say "Maildir matrix: Dovecot LMTP vs lda (default ~/Maildir) vs rawceiling"
		start_dovecot
		smoke dovecot "$DOVECOT_SOCK" maildir
		if [ -n "$SIEVE" ]; then
			compgen -G "$BASE/home/*/.dovecot.svbin" >/dev/null || die "SIEVE: Dovecot did not compile the script (no ~/.dovecot.svbin)"
			say "Dovecot ran the script (it compiled $(compgen -G "$BASE/home/*/.dovecot.svbin" | head -1))"
		fi
		start_lda maildir '{maildir: ~/Maildir}'
		say "lda warm-workers section: $LDA_WORKERS"
		smoke lda "$LDA_SOCK" maildir
		if [ -n "$SIEVE" ]; then
			grep -q 'msg=recipient .*actions=keep' "$BASE/lda-maildir/lda.log" || die "SIEVE: lda did not run the script (no actions=keep in its log)"
			say "lda ran the script (actions=keep in its log)"
		fi
		settle # before the warm-up, whose workers and processes would not outlast it
		warmup dovecot "$DOVECOT_SOCK" maildir
		warmup lda "$LDA_SOCK" maildir
		run_matrix maildir dovecot lda raw "${MAILDIR_CELLS[@]}"
		stop_lda
		stop_dovecot
		;;
	mbox)
		say "mbox matrix: mail.local -l vs lda (default /var/mail/%u) vs rawceiling -mbox"
		start_mail_local
		smoke mail.local "$MAILLOCAL_SOCK" mbox
		start_lda mbox '{mbox: /var/mail/%u}'
		say "lda warm-workers section: $LDA_WORKERS"
		smoke lda-mbox "$LDA_SOCK" mbox
		settle
		warmup mail.local "$MAILLOCAL_SOCK" mbox
		warmup lda-mbox "$LDA_SOCK" mbox
		run_matrix mbox mail.local lda-mbox raw-mbox "${MBOX_CELLS[@]}"
		stop_lda
		stop_mail_local
		;;
	*) die "unknown matrix $m" ;;
	esac
done

# --- the table of medians ------------------------------------------------

# med MATRIX CELL PEER COLUMN: the median of a TSV column over the reps
# (its numbers; a "-" is no figure).
med() {
	awk -F'\t' -v m="$1" -v c="$2" -v p="$3" -v col="$4" '
		NR == 1 { for (i = 1; i <= NF; i++) if ($i == col) k = i; next }
		$1 == m && $2 == c && $3 == p && $k ~ /^[0-9.]+$/ { print $k }' "$TSV" | median
}
# paired MATRIX CELL A B COLUMN: A's value over B's in each repetition (the
# two ran next to each other), as "median (min-max)". The disk's speed
# drifts over minutes; a ratio taken within one repetition does not. With
# six repetitions or more it adds a 95 % confidence interval of that
# median, from order statistics (the k-th smallest and largest ratio, k
# the largest with P(Binomial(n, 1/2) < k) <= 2.5 %): no assumption about
# the ratios' distribution, only that the repetitions are independent.
paired() {
	awk -F'\t' -v m="$1" -v c="$2" -v a="$3" -v b="$4" -v col="$5" '
		NR == 1 { for (i = 1; i <= NF; i++) if ($i == col) k = i; next }
		$1 == m && $2 == c && $3 == a { va[$4] = $k }
		$1 == m && $2 == c && $3 == b { vb[$4] = $k }
		END {
			n = 0
			for (r in va) if ((r in vb) && vb[r] + 0 > 0) x[++n] = va[r] / vb[r]
			if (n == 0) { print "-"; exit }
			for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (x[j] < x[i]) { t = x[i]; x[i] = x[j]; x[j] = t }
			mid = (n % 2) ? x[(n + 1) / 2] : (x[n / 2] + x[n / 2 + 1]) / 2
			if (n < 6) { printf "%.2f (%.2f-%.2f)\n", mid, x[1], x[n]; exit }
			# cdf: P(Binomial(n, 1/2) <= k - 1), k raised while it stays at 2.5 % or under
			k = 1; p = 0.5 ^ n; cdf = p
			while (1) {
				p = p * (n - k + 1) / k
				if (cdf + p > 0.025) break
				cdf += p; k++
			}
			printf "%.2f (%.2f-%.2f; 95%% CI %.2f-%.2f)\n", mid, x[1], x[n], x[k], x[n - k + 1]
		}' "$TSV"
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b + 0 == 0) print "-"; else printf "%.2f\n", a / b }'; }
pct() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b + 0 == 0) print "-"; else printf "%.0f%%\n", 100 * a / b }'; }
fmt1() { [ -n "$1" ] && printf '%.1f' "$1" || printf -- '-'; }
fmt2() { [ -n "$1" ] && printf '%.2f' "$1" || printf -- '-'; }
fmt3() { [ -n "$1" ] && printf '%.3f' "$1" || printf -- '-'; }

table() {
	local matrix=$1 peer=$2 ldapeer=$3 rawpeer=$4 cell
	shift 4
	printf '| %s cell | lda d/s | %s d/s | lda/%s | same-repetition lda/%s | raw d/s | lda %% of raw | lda p50 ms | %s p50 ms | p50 lda/%s | same-repetition p50 lda/%s |\n' \
		"$matrix" "$peer" "$peer" "$peer" "$peer" "$peer" "$peer"
	printf '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n'
	for cell in "$@"; do
		local cname c size r l p raw lp pp
		read -r cname c size r <<<"$cell"
		l=$(med "$matrix" "$cname" "$ldapeer" deliveries_per_s)
		p=$(med "$matrix" "$cname" "$peer" deliveries_per_s)
		raw=$(med "$matrix" "$cname" "$rawpeer" deliveries_per_s)
		lp=$(med "$matrix" "$cname" "$ldapeer" p50_ms)
		pp=$(med "$matrix" "$cname" "$peer" p50_ms)
		printf '| %s (%s conn, %s B, %s rcpt) | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$cname" "$c" "$size" "$r" \
			"$(fmt1 "$l")" "$(fmt1 "$p")" "$(ratio "$l" "$p")" "$(paired "$matrix" "$cname" "$ldapeer" "$peer" deliveries_per_s)" \
			"$(fmt1 "$raw")" "$(pct "$l" "$raw")" \
			"$(fmt2 "$lp")" "$(fmt2 "$pp")" "$(ratio "$lp" "$pp")" "$(paired "$matrix" "$cname" "$ldapeer" "$peer" p50_ms)"
	done
}

# cpu_table MATRIX PEER LDAPEER RAWPEER CELLS...: CPU time per delivery.
# With one connection client and agent take turns (the kernel of the
# guest in bench/RESULTS.md mostly keeps them on one vCPU), so their CPU
# times add up to much of each delivery's time; with eight connections
# every vCPU is busy and the sum bounds the rate.
cpu_table() {
	local matrix=$1 peer=$2 ldapeer=$3 rawpeer=$4 cell
	shift 4
	printf '| %s cell, CPU ms per delivery | lda (all its processes) | %s (all its processes) | lda/%s | raw ceiling (the program) | client, with lda | client, with %s |\n' \
		"$matrix" "$peer" "$peer" "$peer"
	printf '|---|---:|---:|---:|---:|---:|---:|\n'
	for cell in "$@"; do
		local cname c size r l p raw lc pc
		read -r cname c size r <<<"$cell"
		l=$(med "$matrix" "$cname" "$ldapeer" agent_cpu_ms)
		p=$(med "$matrix" "$cname" "$peer" agent_cpu_ms)
		raw=$(med "$matrix" "$cname" "$rawpeer" agent_cpu_ms)
		lc=$(med "$matrix" "$cname" "$ldapeer" client_cpu_ms)
		pc=$(med "$matrix" "$cname" "$peer" client_cpu_ms)
		printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$cname" \
			"$(fmt3 "$l")" "$(fmt3 "$p")" "$(ratio "$l" "$p")" "$(fmt3 "$raw")" "$(fmt3 "$lc")" "$(fmt3 "$pc")"
	done
}

# floor_table MATRIX PEER LDAPEER RAWPEER CELLS...: the floor (FLOOR=1)
# against the raw ceiling, lda and the peer; CPU per delivery of the
# floor's processes and of lda's.
floor_table() {
	local matrix=$1 peer=$2 ldapeer=$3 rawpeer=$4 fl cell
	shift 4
	fl=$(floor_peer "$rawpeer")
	printf '| %s cell | floor d/s | raw d/s | floor %% of raw | floor/%s | lda d/s | lda/floor | same-repetition lda/floor | floor p50 ms | lda p50 ms | CPU ms per delivery: floor | lda |\n' "$matrix" "$peer"
	printf '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n'
	for cell in "$@"; do
		local cname c size r f raw p l
		read -r cname c size r <<<"$cell"
		f=$(med "$matrix" "$cname" "$fl" deliveries_per_s)
		raw=$(med "$matrix" "$cname" "$rawpeer" deliveries_per_s)
		p=$(med "$matrix" "$cname" "$peer" deliveries_per_s)
		l=$(med "$matrix" "$cname" "$ldapeer" deliveries_per_s)
		printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$cname" \
			"$(fmt1 "$f")" "$(fmt1 "$raw")" "$(pct "$f" "$raw")" "$(ratio "$f" "$p")" \
			"$(fmt1 "$l")" "$(ratio "$l" "$f")" "$(paired "$matrix" "$cname" "$ldapeer" "$fl" deliveries_per_s)" \
			"$(fmt2 "$(med "$matrix" "$cname" "$fl" p50_ms)")" "$(fmt2 "$(med "$matrix" "$cname" "$ldapeer" p50_ms)")" \
			"$(fmt3 "$(med "$matrix" "$cname" "$fl" agent_cpu_ms)")" "$(fmt3 "$(med "$matrix" "$cname" "$ldapeer" agent_cpu_ms)")"
	done
}

echo
say "results (medians of $REPS repetitions x $MESSAGES messages; d/s = successful recipient deliveries per second)"
echo "lda: $LDA_DESC; warm-workers section: ${LDA_WORKERS:-?} (max_deliveries: ${MAX_DELIVERIES:-default}, gather: ${GATHER:-default}); dovecot $(dovecot --version | cut -d' ' -f1); mail.local from $MAIL_LOCAL_DEB; pipelining: $PIPELINING; bodies: $BODIES; sender: ${SENDER:-bench@bench.test}; warm-up: $WARMUP; chunking: $CHUNKING${CHUNK_FLAG:+ (lda and Dovecot send BDAT; mail.local, without CHUNKING, DATA)}; sieve: ${SIEVE:-none}; servers pinned: ${PIN:-no}"
echo "machine: $(nproc) CPUs, Linux $(uname -r), homes on $(findmnt -no FSTYPE -T "$BASE") ($(findmnt -no OPTIONS -T "$BASE" | cut -d, -f1-3)), /var/mail on $(findmnt -no FSTYPE -T /var/mail); 1-min load average before the runs: $(awk -F'\t' 'NR > 1 { print $NF }' "$TSV" | sort -g | sed -n '1p;$p' | paste -sd- -)"
echo
for m in $MATRICES; do
	case $m in
	maildir) table maildir dovecot lda raw "${MAILDIR_CELLS[@]}" ;;
	mbox) table mbox mail.local lda-mbox raw-mbox "${MBOX_CELLS[@]}" ;;
	esac
	echo
	case $m in
	maildir) cpu_table maildir dovecot lda raw "${MAILDIR_CELLS[@]}" ;;
	mbox) cpu_table mbox mail.local lda-mbox raw-mbox "${MBOX_CELLS[@]}" ;;
	esac
	echo
	if [ "$FLOOR" = 1 ]; then
		case $m in
		maildir) floor_table maildir dovecot lda raw "${MAILDIR_CELLS[@]}" ;;
		mbox) floor_table mbox mail.local lda-mbox raw-mbox "${MBOX_CELLS[@]}" ;;
		esac
		echo
	fi
done
say "per-run figures: $TSV"
if [ "$FAILED" != 0 ]; then
	warn "some runs failed, had non-2xx replies, or stored a different number of messages than acknowledged (see above and $TSV)"
	exit 1
fi
