package job

import (
	"encoding/binary"
	"errors"
	"io"
)

// The recovery record of a direct worker lives in a memfd that root
// creates and only root reads, after the worker has ended: an 8-byte
// little-endian length, then that many bytes of a recover job (a Job in
// ModeRecover, as Encode writes it). Length 0 is no record. The worker
// writes the job before the length, so a length is never read ahead of
// its record.

// Recovery writes the records of one file through one buffer, reused from
// record to record: a warm worker sets one or two per job, for as long as
// it lives, and a new buffer each time was most of what it allocated.
type Recovery struct {
	F   io.WriterAt
	buf []byte
}

// Set sets the record in w.F to r, or clears it (r nil).
func (w *Recovery) Set(r *Job) error {
	var n [8]byte
	if r != nil {
		if r.Mode != ModeRecover {
			return errors.New("job: a recovery record must be a recover job")
		}
		if w.buf == nil {
			w.buf = make([]byte, 0, 512)
		}
		b, err := r.AppendEncode(w.buf[:0])
		if err != nil {
			return err
		}
		w.buf = b
		if _, err := w.F.WriteAt(b, 8); err != nil {
			return err
		}
		binary.LittleEndian.PutUint64(n[:], uint64(len(b)))
	}
	_, err := w.F.WriteAt(n[:], 0)
	return err
}

// ReadRecovery returns the recover job in f, or nil. The record is a
// worker's word and is decoded as strictly as any job.
func ReadRecovery(f io.ReaderAt) (*Job, error) {
	var n [8]byte
	if _, err := f.ReadAt(n[:], 0); err != nil {
		return nil, err
	}
	size := binary.LittleEndian.Uint64(n[:])
	if size == 0 {
		return nil, nil
	}
	if size > MaxRecord {
		return nil, errors.New("job: recovery record too large")
	}
	b := make([]byte, size)
	if _, err := f.ReadAt(b, 8); err != nil {
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
