// Command pool pools the same-repetition ratios of lda against its peer
// over several compare.sh runs (their per-run TSV files): for one cell, the
// ratio of lda's deliveries per second to the peer's in each repetition,
// then the median of all of them and a bootstrap 95 % interval of that
// median. One run of 21 repetitions gives an interval about ±4 % wide on
// this machine; pooling runs from the same hours narrows it.
//
//	go run ./bench/pool -matrix mbox -cell 1c-1k /tmp/lda-bench-*.tsv
package main

import (
	"encoding/csv"
	"flag"
	"fmt"
	"io"
	"math/rand"
	"os"
	"sort"
	"strconv"
)

func main() {
	matrix := flag.String("matrix", "mbox", "the matrix (maildir or mbox)")
	cell := flag.String("cell", "1c-1k", "the cell, as compare.sh names it")
	resamples := flag.Int("resamples", 4000, "bootstrap resamples")
	flag.Parse()
	if flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: pool [-matrix M] [-cell C] TSV...")
		os.Exit(64)
	}
	var ratios []float64
	for _, name := range flag.Args() {
		f, err := os.Open(name)
		if err != nil {
			fmt.Fprintln(os.Stderr, "pool:", err)
			os.Exit(66)
		}
		r, err := readRatios(f, *matrix, *cell)
		f.Close()
		if err != nil {
			fmt.Fprintf(os.Stderr, "pool: %s: %v\n", name, err)
			os.Exit(65)
		}
		ratios = append(ratios, r...)
	}
	if len(ratios) == 0 {
		fmt.Fprintf(os.Stderr, "pool: no pair of repetitions for %s %s\n", *matrix, *cell)
		os.Exit(65)
	}
	lo, hi := bootstrap(ratios, *resamples, rand.New(rand.NewSource(1)))
	ahead := 0
	for _, x := range ratios {
		if x > 1 {
			ahead++
		}
	}
	fmt.Printf("%s %s: %d pairs, median lda/peer %.3f, 95%% CI [%.3f, %.3f], lda ahead in %d\n",
		*matrix, *cell, len(ratios), median(ratios), lo, hi, ahead)
}

// readRatios returns lda's rate over the peer's for each repetition of
// the cell in one TSV (compare.sh's columns, by header name).
func readRatios(r io.Reader, matrix, cell string) ([]float64, error) {
	cr := csv.NewReader(r)
	cr.Comma = '\t'
	rows, err := cr.ReadAll()
	if err != nil {
		return nil, err
	}
	if len(rows) == 0 {
		return nil, fmt.Errorf("empty")
	}
	col := map[string]int{}
	for i, h := range rows[0] {
		col[h] = i
	}
	for _, h := range []string{"matrix", "cell", "peer", "rep", "deliveries_per_s"} {
		if _, ok := col[h]; !ok {
			return nil, fmt.Errorf("no column %q", h)
		}
	}
	lda, peer := map[string]float64{}, map[string]float64{}
	var reps []string
	for _, row := range rows[1:] {
		if row[col["matrix"]] != matrix || row[col["cell"]] != cell {
			continue
		}
		v, err := strconv.ParseFloat(row[col["deliveries_per_s"]], 64)
		if err != nil {
			return nil, err
		}
		rep, p := row[col["rep"]], row[col["peer"]]
		switch {
		case p == "lda-"+matrix || p == "lda":
			if _, seen := lda[rep]; !seen {
				reps = append(reps, rep)
			}
			lda[rep] = v
		case p == "dovecot" || p == "mail.local":
			peer[rep] = v
		}
	}
	var out []float64
	for _, rep := range reps {
		if p, ok := peer[rep]; ok && p > 0 {
			out = append(out, lda[rep]/p)
		}
	}
	return out, nil
}

func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// bootstrap returns the 2.5th and 97.5th percentiles of the medians of n
// resamples (with replacement) of xs.
func bootstrap(xs []float64, n int, rng *rand.Rand) (lo, hi float64) {
	meds := make([]float64, n)
	buf := make([]float64, len(xs))
	for i := range meds {
		for j := range buf {
			buf[j] = xs[rng.Intn(len(xs))]
		}
		meds[i] = median(buf)
	}
	sort.Float64s(meds)
	return meds[n*25/1000], meds[n*975/1000-1]
}
