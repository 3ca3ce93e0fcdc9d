#!/bin/sh
# The test command of README.md; .ci/run runs exactly this.
# gofmt check, go vet, a CGO_ENABLED=0 build, then every test with -race,
# then every benchmark once.
# Tests that need root (real users, real attacks on the real binary) skip
# cleanly without it; CI runs as root, so there they run.
set -eu
cd "$(dirname "$0")/.."
unformatted=$(gofmt -l $(find . -name '*.go' -not -path './.git/*'))
if [ -n "$unformatted" ]; then
	echo "gofmt would change: $unformatted" >&2
	exit 1
fi
CGO_ENABLED=0 go vet ./...
CGO_ENABLED=0 go build -o /dev/null ./cmd/lda ./cmd/allowgen
go test -race -count=1 -timeout 20m ./...
# Every benchmark once: a benchmark that no longer runs fails here, not
# the next time someone measures with it.
if ! out=$(go test -run '^$' -bench . -benchtime 1x -count=1 ./... 2>&1); then
	printf '%s\n' "$out" >&2
	exit 1
fi
