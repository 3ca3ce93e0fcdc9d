# bench/stretches.awk: one delivery's path, stretch by stretch, from
# `perf script -F pid,tid,time,event,trace` of raw_syscalls:sys_enter and
# raw_syscalls:sys_exit recorded on lda's listener (-v L=PID) and one
# direct worker (-v W=PID) while a client sends single-recipient messages
# over one connection with DATA (ab.sh STRETCHES=1 runs it).
#
# Give it the trace twice (`awk -f stretches.awk TRACE TRACE`): the first
# pass finds the client's socket, the descriptor from which the listener
# read data most often (its other reads are files such as /etc/passwd,
# its other writes log lines). The second follows each delivery through
# the system calls that bound each stretch: the listener's reads and
# writes on the client's socket, its sendmsg of the job and recvmsg of the
# result,
# and the worker's recvmsg, its first fsync's entry, its last fsync's
# return and its sendmsg. Prints "STRETCH MICROSECONDS" per delivery, for
# the caller to take medians of. The stretches, 1-10: the client from the
# 354 to the body; the listener from the body to the job; the hop to the
# worker; the worker from the job to its first fsync; its fsyncs (and the
# link between them); its last fsync to its result; the hop back; the
# listener from the result to the reply; the client from the reply to the
# next MAIL; the listener from that MAIL to the 354. Tracing adds a
# microsecond or two per system call to every stretch.

# mark records event k of the chain, D B J WR F1 F2 WS LR R M, numbered
# 1-10; an event out of order starts the chain again, and the 354 that
# follows a complete chain closes it: the stretches go out.
function mark(k, t,   i) {
	if (k == 1) {
		if (have == 10)
			for (i = 1; i <= 10; i++)
				printf "%d %.1f\n", i, ((i < 10 ? at[i + 1] : t) - at[i]) * 1e6
		have = 1
		at[1] = t
		return
	}
	if (have == k - 1) {
		at[k] = t
		have = k
	} else {
		have = 0
	}
}

BEGIN { cfd = ""; have = 0 }
FNR == 1 && NR > 1 && cfd == "" {
	# The second pass: the client's socket is known.
	for (f in reads)
		if (cfd == "" || reads[f] > reads[cfd])
			cfd = f
	split("", enr)
}
{
	split($1, pt, "/")
	pid = pt[1]; tid = pt[2]
	t = $2; sub(/:$/, "", t)
	if (pid != L && pid != W)
		next
	if (NR == FNR) {
		# The first pass: count the listener's reads that returned data.
		if ($3 == "raw_syscalls:sys_enter:" && pid == L) {
			a = $6; gsub(/[(,]/, "", a)
			enr[tid] = $5; efd[tid] = a
		} else if ($3 == "raw_syscalls:sys_exit:" && (tid in enr)) {
			if (enr[tid] == 0 && $7 > 0)
				reads[efd[tid]]++
			delete enr[tid]
		}
		next
	}
	if ($3 == "raw_syscalls:sys_enter:") {
		nr = $5
		a = $6; gsub(/[(,]/, "", a)
		enr[tid] = nr; efd[tid] = a
		if (pid == L && nr == 46) mark(3, t)             # sendmsg: the job
		if (pid == L && nr == 1 && a == cfd) {            # write to the client
			if (have == 8) mark(9, t); else if (have == 10 || have == 0) mark(1, t)
		}
		if (pid == W && nr == 74 && have == 4) mark(5, t) # first fsync
		if (pid == W && nr == 46) mark(7, t)              # sendmsg: the result
		next
	}
	if ($3 != "raw_syscalls:sys_exit:" || !(tid in enr))
		next
	nr = enr[tid]; fd = efd[tid]; ret = $7
	delete enr[tid]
	if (pid == L && nr == 0 && ret > 0) {                 # read from the client
		if (fd == cfd) { if (have == 1) mark(2, t); else if (have == 9) mark(10, t) }
	}
	if (pid == W && nr == 47 && ret > 0) mark(4, t)       # recvmsg: the job
	if (pid == W && nr == 74 && have >= 5) { at[6] = t; have = 6 }   # the last fsync so far
	if (pid == L && nr == 47 && ret > 0) mark(8, t)       # recvmsg: the result
}
