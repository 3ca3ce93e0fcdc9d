package e2e

import (
	"io"
	"log/slog"
	"os"
)

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func ioMulti(hdr io.Reader, f *os.File, size int64) io.Reader {
	return io.MultiReader(hdr, io.NewSectionReader(f, 0, size))
}
