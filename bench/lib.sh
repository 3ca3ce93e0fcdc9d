# bench/lib.sh: helpers for bench/compare.sh (sourced, bash only).
# shellcheck shell=bash
# shellcheck disable=SC2034 # MAIL_LOCAL, MAIL_LOCAL_DEB and others are set for compare.sh
#
# Everything here works below $BASE (a fresh temporary directory), on the
# test users $BENCH_USERS and the listener user $BENCH_LISTENER, and on
# /var/mail/<test user>. Processes are started in the background, their
# pids recorded in $BASE/pids, and stopped by pid only.

say() { printf '==> [%s] %s\n' "$(date -u +%H:%M:%S)" "$*"; }
warn() { printf '!!! %s\n' "$*" >&2; }
die() { warn "$*"; exit 1; }

# run CMD...: print a command, then run it.
run() { printf '    $ %s\n' "$*"; "$@"; }

# jget KEY JSON: a number or string field of lmtpload's one-line JSON.
jget() {
	local v
	v=$(printf '%s\n' "$2" | sed -n "s/.*\"$1\":\\(\"[^\"]*\"\\|[-0-9.eE+]*\\).*/\\1/p")
	v=${v#\"}
	printf '%s\n' "${v%\"}"
}

# remember_pid PID WHAT: record a process we started, so cleanup stops it.
remember_pid() { printf '%s %s\n' "$1" "$2" >>"$BASE/pids"; }

# stop_pid PID [SECONDS]: SIGTERM, wait, then SIGKILL, by pid only.
stop_pid() {
	local pid=$1 wait=${2:-20} i
	kill -0 "$pid" 2>/dev/null || return 0
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < wait * 10; i++)); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.1
	done
	warn "pid $pid did not exit after SIGTERM; killing it"
	kill -KILL "$pid" 2>/dev/null || true
}

# wait_socket PATH PID SECONDS: wait until PATH is a socket, or fail if
# PID died or the time ran out.
wait_socket() {
	local sock=$1 pid=$2 i
	for ((i = 0; i < $3 * 10; i++)); do
		[ -S "$sock" ] && return 0
		if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
			return 1
		fi
		sleep 0.1
	done
	return 1
}

# install_missing: Debian packages needed by the peers, without starting
# any system service (policy-rc.d refuses every start while we install).
install_missing() {
	local need=()
	command -v dovecot >/dev/null || need+=(dovecot-core)
	[ -x /usr/lib/dovecot/lmtp ] || need+=(dovecot-lmtpd)
	command -v socat >/dev/null || need+=(socat)
	ldconfig -p | grep -q 'liblockfile\.so\.1 ' || need+=(liblockfile1) # mail.local needs it
	if [ -n "${SIEVE:-}" ] && [ ! -f /usr/lib/dovecot/modules/lib90_sieve_plugin.so ]; then
		need+=(dovecot-sieve) # compare.sh SIEVE=: Pigeonhole
	fi
	[ ${#need[@]} -eq 0 ] && { say "Debian packages present: dovecot-core dovecot-lmtpd socat liblockfile1${SIEVE:+ dovecot-sieve}"; return 0; }
	say "installing ${need[*]} (no service is started)"
	local made_policy=
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
		chmod 755 /usr/sbin/policy-rc.d
		made_policy=1
	fi
	local rc=0
	if ! apt-cache show "${need[@]}" >/dev/null 2>&1; then
		run apt-get update -qq || rc=$?
	fi
	if ! DEBIAN_FRONTEND=noninteractive run apt-get install -y -qq --no-install-recommends "${need[@]}" >"$BASE/apt.log" 2>&1; then
		# A package index older than the mirror names versions it no
		# longer holds (404): refresh it once and try again.
		rc=0
		run apt-get update -qq || rc=$?
		DEBIAN_FRONTEND=noninteractive run apt-get install -y -qq --no-install-recommends "${need[@]}" >"$BASE/apt.log" 2>&1 || rc=$?
	fi
	[ -n "$made_policy" ] && rm -f /usr/sbin/policy-rc.d
	[ $rc -eq 0 ] || { cat "$BASE/apt.log" >&2; die "apt-get install failed"; }
}

# fetch_mail_local: sendmail's mail.local, extracted from sendmail-bin,
# which is never installed (it conflicts with Postfix). Sets MAIL_LOCAL
# and MAIL_LOCAL_DEB.
fetch_mail_local() {
	local d=$BASE/sendmail
	mkdir -p "$d"
	chown _apt "$d" 2>/dev/null || true # lets apt download without its sandbox warning
	say "fetching sendmail-bin for mail.local (apt-get download + dpkg-deb -x, not installed)"
	(cd "$d" && run apt-get download -qq sendmail-bin) >"$d/download.log" 2>&1 || {
		cat "$d/download.log" >&2
		die "apt-get download sendmail-bin failed"
	}
	local deb
	deb=$(find "$d" -maxdepth 1 -name 'sendmail-bin_*.deb' | head -n1)
	[ -n "$deb" ] || die "apt-get download left no sendmail-bin .deb"
	MAIL_LOCAL_DEB=$(basename "$deb")
	run dpkg-deb -x "$deb" "$d/root"
	MAIL_LOCAL=$(find "$d/root" -type f -name mail.local | head -n1)
	[ -x "$MAIL_LOCAL" ] || die "no mail.local in sendmail-bin"
	if ldd "$MAIL_LOCAL" | grep -q 'not found'; then
		ldd "$MAIL_LOCAL" >&2
		die "mail.local misses a library"
	fi
}

# remove_bench_users: the test users and their mbox files, if present
# (also what an aborted earlier run left behind).
remove_bench_users() {
	local u
	for u in $BENCH_USERS $BENCH_LISTENER; do
		if getent passwd "$u" >/dev/null; then
			userdel -f "$u" 2>/dev/null || true
		fi
		if getent group "$u" >/dev/null; then groupdel "$u" 2>/dev/null || true; fi
		rm -f "/var/mail/$u" "/var/mail/$u.lock"
	done
}

# create_bench_users: real users (uid >= 1000) with homes under $BASE/home.
create_bench_users() {
	local u
	mkdir -p "$BASE/home"
	chmod 755 "$BASE/home"
	for u in $BENCH_USERS $BENCH_LISTENER; do
		useradd -M -U -d "$BASE/home/$u" -s /usr/sbin/nologin "$u"
		install -d -m 700 -o "$u" -g "$u" "$BASE/home/$u"
	done
	local first last
	first=$(id -u "${BENCH_USERS%% *}")
	last=$(id -u "${BENCH_USERS##* }")
	say "created users $BENCH_USERS (uids $first..$last) and listener $BENCH_LISTENER, homes under $BASE/home"
	[ "$first" -ge 1000 ] || die "test uids below 1000"
}

# users_csv: the test users, comma-separated.
users_csv() { printf '%s' "$BENCH_USERS" | tr ' ' ','; }

# retire PATH...: move the mailboxes of the last run out of the way, into
# $BASE/retired (removed with $BASE at the end), or remove them at once
# with RESET=remove. On ext4 without a journal, each inode allocation
# skips every inode freed in the last 5 to 35 seconds (find_inode_bit,
# recently_deleted); removing thousands of files just before a run made
# every peer, and the raw ceiling, pay that scan on every delivery, which
# a mail server whose users expunge over the day does not.
retire() {
	local p
	mkdir -p "$BASE/retired"
	for p in "$@"; do
		[ -e "$p" ] || continue
		if [ "${RESET:-retire}" = remove ]; then
			rm -rf "$p"
		else
			mv "$p" "$(mktemp -u "$BASE/retired/XXXXXXXX")"
		fi
	done
}

# reset_maildirs: every test user's ~/Maildir retired (the peers create
# it on the first delivery).
reset_maildirs() {
	local u
	for u in $BENCH_USERS; do retire "$BASE/home/$u/Maildir"; done
}

# reset_mboxes: an empty /var/mail/<user> for every test user, owned by
# the user (group mail, 0660), as the peers need it: lda's worker cannot
# create files in the root:mail 2775 spool.
reset_mboxes() {
	local u
	for u in $BENCH_USERS; do
		rm -f "/var/mail/$u" "/var/mail/$u.lock"
		install -m 660 -o "$u" -g mail /dev/null "/var/mail/$u"
	done
}

# count_maildir DIR...: messages in new/ and cur/ of the Maildirs named
# (the Maildirs themselves, those missing count 0).
count_maildir() {
	local n=0 d c
	for d in "$@"; do
		[ -d "$d" ] || continue
		c=$(find "$d/new" "$d/cur" -maxdepth 1 -type f 2>/dev/null | wc -l)
		n=$((n + c))
	done
	echo "$n"
}

# count_mbox FILE...: messages in mbox files: From_ lines at the start of
# a file or after an empty line, skipping the bodies of messages with a
# Content-Length header (Debian's mail.local writes one and then does not
# quote From lines in the body; lda writes none and quotes every one).
count_mbox() {
	local files=() f
	for f in "$@"; do [ -f "$f" ] && files+=("$f"); done
	[ ${#files[@]} -eq 0 ] && { echo 0; return; }
	LC_ALL=C awk '
		FNR == 1 { st = 0; prev = "" }
		st == 2 && cl >= 0 { rem -= length($0) + 1; if (rem <= 0) st = 0; prev = $0; next }
		/^From / && prev == "" && (st == 0 || st == 2) { n++; st = 1; cl = -1; prev = $0; next }
		st == 1 && /^Content-Length: [0-9]+$/ { cl = $2 + 0 }
		st == 1 && $0 == "" { st = 2; rem = cl; if (cl == 0) st = 0 }
		{ prev = $0 }
		END { print n + 0 }' "${files[@]}"
}

# count_bench_ids FILE...: X-Bench-Id header lines (a second count).
count_bench_ids() {
	cat "$@" 2>/dev/null | grep -c '^X-Bench-Id: ' || true
}

# --- CPU accounting: each agent in a cgroup of its own --------------------
#
# cg_init: a cgroup in which a process can be placed and the CPU time of
# everything it starts read back, children that have exited and been
# reaped included. cgroup v2 first: a child of the cgroup this script runs
# in, where cpu.stat exists whether or not the cpu controller is enabled.
# Else v1's cpuacct. Makes $CG_ROOT (a directory of our own) and sets
# CG_KIND to v2 or v1. Both stay empty, and the agents' CPU figures are
# "-", if there is neither, or if the cpu controller would apply to our
# cgroups: each would then get a CPU weight of its own against the rest of
# the machine (the client included), which would change the rates being
# measured.
CG_ROOT= CG_KIND=
cg_init() {
	CG_ROOT= CG_KIND=
	local mnt self d=
	for mnt in /sys/fs/cgroup /sys/fs/cgroup/unified; do
		[ -f "$mnt/cgroup.controllers" ] || continue
		self=$(awk -F: '$1 == "0" { print $3 }' /proc/self/cgroup)
		d=$mnt${self%/}
		break
	done
	if [ -n "$d" ] && [ -w "$d/cgroup.procs" ]; then
		if grep -qw cpu "$d/cgroup.subtree_control" 2>/dev/null; then
			warn "the cpu controller is on below $d: no cgroups, no agent CPU figures (a CPU weight per agent would change the rates)"
			return 0
		fi
		CG_ROOT=$d/lda-bench-$$ CG_KIND=v2
	elif [ -w /sys/fs/cgroup/cpuacct/cgroup.procs ]; then
		if [ -e /sys/fs/cgroup/cpuacct/cpu.shares ]; then
			warn "cpuacct is mounted with the cpu controller: no cgroups, no agent CPU figures (cpu.shares per agent would change the rates)"
			return 0
		fi
		CG_ROOT=/sys/fs/cgroup/cpuacct/lda-bench-$$ CG_KIND=v1
	fi
	if [ -n "$CG_ROOT" ] && ! mkdir "$CG_ROOT" 2>/dev/null; then
		warn "cannot make a cgroup at $CG_ROOT: no agent CPU figures"
		CG_ROOT= CG_KIND=
	fi
	return 0
}

# cg_exec NAME CMD...: move this (sub)shell into cgroup NAME, then exec
# CMD, so that CMD and everything it starts are counted there. Run it in a
# subshell of its own, ( cg_exec ... ) or cg_exec ... &, never in the
# script's own shell. The caller checks with cg_check that it got there.
cg_exec() {
	local name=$1
	shift
	if [ -n "$CG_ROOT" ]; then
		mkdir -p "$CG_ROOT/$name" && echo "$BASHPID" >"$CG_ROOT/$name/cgroup.procs"
	fi
	exec "$@"
}

# cg_check NAME PID: PID is in cgroup NAME; if not, say so and mark NAME
# so that cg_usec gives no figure for it (an empty cgroup would read 0).
cg_check() {
	[ -n "$CG_ROOT" ] || return 0
	if ! grep -qx "$2" "$CG_ROOT/$1/cgroup.procs" 2>/dev/null; then
		warn "pid $2 is not in cgroup $1: no CPU figures for it"
		: >"$CG_ROOT/$1.unaccounted" 2>/dev/null || true
	fi
	return 0
}

# cg_usec NAME: the CPU time (µs, user and system) used so far in cgroup
# NAME, exited children included; empty without accounting.
cg_usec() {
	local d=$CG_ROOT/$1
	[ -n "$CG_ROOT" ] && [ -d "$d" ] && [ ! -e "$d.unaccounted" ] || return 0
	case $CG_KIND in
	v2) awk '$1 == "usage_usec" { print $2 }' "$d/cpu.stat" ;;
	v1) awk '{ printf "%.0f\n", $1 / 1000 }' "$d/cpuacct.usage" ;;
	esac
}

# cg_cleanup: kill whatever is still in our cgroups (only processes the
# agents started can be: every server was stopped before), wait until
# they are empty, and remove them.
cg_cleanup() {
	[ -n "$CG_ROOT" ] && [ -d "$CG_ROOT" ] || return 0
	local d pids i
	for d in "$CG_ROOT"/*/; do
		[ -d "$d" ] || continue
		for ((i = 0; i < 50; i++)); do
			pids=$(cat "$d/cgroup.procs" 2>/dev/null)
			[ -z "$pids" ] && break
			# shellcheck disable=SC2086 # one pid per word
			kill -KILL $pids 2>/dev/null || true
			sleep 0.1
		done
		rmdir "$d" 2>/dev/null || warn "could not remove cgroup $d"
	done
	rm -f "$CG_ROOT"/*.unaccounted
	rmdir "$CG_ROOT" 2>/dev/null || warn "could not remove cgroup $CG_ROOT"
}

# median: the median of the numbers on standard input (the mean of the
# middle two for an even count); empty for none.
median() {
	sort -g | awk '{ v[NR] = $1 } END {
		if (NR == 0) exit
		if (NR % 2) printf "%.6g\n", v[(NR + 1) / 2]
		else printf "%.6g\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# build_tools BIN PKG...: builds ./cmd/lda into BIN/lda, from commit
# $LDA_REV (exported with git archive; the work tree is not touched) if it
# is set, else from the work tree, and each PKG from the work tree; sets
# LDA_DESC to what was built. $REPO is the repository.
build_tools() {
	local bin=$1 src=$REPO p commit
	shift
	mkdir -p "$bin"
	if [ -n "${LDA_REV:-}" ]; then
		commit=$(git -C "$REPO" rev-parse --verify "$LDA_REV^{commit}") || die "no commit $LDA_REV"
		src=$(mktemp -d "$bin/../src.XXXXXX")
		git -C "$REPO" archive "$commit" | tar -x -C "$src" || die "git archive $LDA_REV failed"
		LDA_DESC="$(git -C "$REPO" log -1 --format='%h %s' "$commit") (built from git archive; the work tree is not touched)"
	else
		LDA_DESC="$(git -C "$REPO" log -1 --format='%h %s' 2>/dev/null || echo unknown)"
		if [ -n "$(git -C "$REPO" status --porcelain -- cmd internal policy maildir mbox sieve go.mod go.sum 2>/dev/null)" ]; then
			LDA_DESC="$LDA_DESC (+ uncommitted changes in the work tree)"
		fi
	fi
	(cd "$src" && CGO_ENABLED=0 run go build -trimpath -o "$bin/lda" ./cmd/lda) || die "go build ./cmd/lda failed"
	for p in "$@"; do
		(cd "$REPO" && CGO_ENABLED=0 run go build -trimpath -o "$bin/$(basename "$p")" "./$p") || die "go build ./$p failed"
	done
	chmod 755 "$bin" "$bin"/*
}
