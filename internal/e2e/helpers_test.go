package e2e

import (
	"io"
	"log/slog"
	"os"
	"testing"
)

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func ioMulti(hdr io.Reader, f *os.File, size int64) io.Reader {
	return io.MultiReader(hdr, io.NewSectionReader(f, 0, size))
}

func testutilWrite(tb testing.TB, path string, data []byte, uid, gid int) {
	tb.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		tb.Fatal(err)
	}
	if err := os.Chown(path, uid, gid); err != nil {
		tb.Fatal(err)
	}
}
