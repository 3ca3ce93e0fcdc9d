// Package affinity gathers a process's threads on one CPU and spreads
// them again: the listener and its direct workers, while a single
// delivery is in flight at a time (DESIGN.md, "The listener gathers its
// work on one CPU while deliveries come one at a time").
//
// Why: one delivery over one connection passes from the client to the
// listener, to the worker and back, strictly in turn. Spread over several
// CPUs, each of those hand-overs may wake an idle CPU, which on a virtual
// machine is an interprocessor interrupt and an exit to the hypervisor;
// on one CPU it is a plain switch. As soon as deliveries overlap, the
// threads are spread again, so parallel work keeps every CPU.
//
// # Security
//
// Affinity is a scheduling hint and nothing else: it grants no access,
// and a process may set it on its own threads only (sched_setaffinity(2)
// on a thread of another user needs CAP_SYS_NICE). What this package
// trusts: the kernel's list of the process's threads (/proc/self/task).
// What it checks: a CPU it is asked to gather on must be in the mask the
// process started with (Start), the one an administrator may have set
// (systemd's CPUAffinity=, taskset(1)); it never widens that mask.
// Failures are only a cost: a thread that ends while the list is read is
// skipped; a mask the kernel refuses (a cpuset that changed) leaves the
// process spread, or marks it unknown so that the next Set applies its
// mask afresh; and no delivery depends on where a thread runs.
//
// Two things follow a move. The Go runtime's GOMAXPROCS: 1 while
// gathered, the runtime's default once spread. And children: a process
// started through Spawn (a delivery program, getent, the redirect
// command) gets the starting mask even from a gathered process, since
// clone(2) copies the calling thread's mask and nothing would ever move
// the child back.
package affinity
