package job

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The recovery record of a direct worker lives in a memfd that root
// creates (RecoverySize bytes, sealed against growing and shrinking) and
// reads only after the worker has ended. It holds an 8-byte header in the
// machine's byte order, then two slots of MaxRecord bytes. The header is
// 0 for no record, or a record's length (low 32 bits) and its slot (bit
// 32, 0 or 1). A record is a recover job (a Job in ModeRecover, as Encode
// writes it).
//
// The worker maps the file shared and writes each record into the slot
// the header does not name, then stores the new header in one aligned
// 8-byte store. A worker killed at any instruction therefore leaves either
// the last complete record or the new one, never a mixture, and setting a
// record costs no system call.

// RecoverySize is the size of a recovery file: the header and two slots.
const RecoverySize = 8 + 2*MaxRecord

// Recovery writes the recovery records of one worker through a shared
// mapping of its recovery file, encoding each through one buffer reused
// from record to record: a warm worker sets one or two per job, for as
// long as it lives.
type Recovery struct {
	mem  []byte // the file, mapped shared
	buf  []byte // the last record's encoding
	slot uint64 // the slot of the last record written
}

// MapRecovery maps f, a recovery file of RecoverySize bytes open for
// reading and writing. f may be closed afterwards; the mapping lasts
// until Unmap.
func MapRecovery(f *os.File) (*Recovery, error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return nil, fmt.Errorf("job: recovery file: %w", err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG || st.Size != RecoverySize {
		// A shorter file would end the worker with SIGBUS at its first
		// record.
		return nil, fmt.Errorf("job: recovery file of %d bytes, not %d", st.Size, RecoverySize)
	}
	mem, err := unix.Mmap(int(f.Fd()), 0, RecoverySize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("job: mapping the recovery file: %w", err)
	}
	return &Recovery{mem: mem}, nil
}

// Unmap ends the mapping; the record stays in the file.
func (w *Recovery) Unmap() error {
	mem := w.mem
	w.mem = nil
	return unix.Munmap(mem)
}

// header is the mapped header word. The mapping is page-aligned, so the
// word is aligned as atomic stores require.
func (w *Recovery) header() *uint64 { return (*uint64)(unsafe.Pointer(&w.mem[0])) }

// Set makes r the record (r nil: Clear). A record that cannot be encoded,
// or is not a recover job, is refused and the last one stays in place.
func (w *Recovery) Set(r *Job) error {
	if r == nil {
		w.Clear()
		return nil
	}
	if r.Mode != ModeRecover {
		return errors.New("job: a recovery record must be a recover job")
	}
	if w.buf == nil {
		w.buf = make([]byte, 0, 512)
	}
	b, err := r.AppendEncode(w.buf[:0]) // at most MaxRecord bytes
	if err != nil {
		return err
	}
	w.buf = b
	slot := 1 - w.slot
	copy(w.mem[8+slot*MaxRecord:8+(slot+1)*MaxRecord], b)
	// The record is complete before the header names it: an atomic store
	// is not moved ahead of the copy.
	atomic.StoreUint64(w.header(), uint64(len(b))|slot<<32)
	w.slot = slot
	return nil
}

// Clear leaves no record.
func (w *Recovery) Clear() { atomic.StoreUint64(w.header(), 0) }

// ReadRecovery returns the recover job in f, or nil. The record is a
// worker's word and is decoded as strictly as any job.
func ReadRecovery(f io.ReaderAt) (*Job, error) {
	var n [8]byte
	if _, err := f.ReadAt(n[:], 0); err != nil {
		return nil, err
	}
	h := binary.NativeEndian.Uint64(n[:])
	if h == 0 {
		return nil, nil
	}
	slot, size := h>>32, h&0xffffffff
	if slot > 1 {
		return nil, errors.New("job: recovery header names no slot")
	}
	if size == 0 || size > MaxRecord {
		return nil, fmt.Errorf("job: recovery record of %d bytes", size)
	}
	b := make([]byte, size)
	if _, err := f.ReadAt(b, int64(8+slot*MaxRecord)); err != nil {
		return nil, err
	}
	j, err := Decode(b)
	if err != nil {
		return nil, err
	}
	if j.Mode != ModeRecover {
		return nil, errors.New("job: recovery record is not a recover job")
	}
	return j, nil
}
