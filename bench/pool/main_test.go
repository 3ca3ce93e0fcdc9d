package main

import (
	"math/rand"
	"strings"
	"testing"
)

func TestReadRatios(t *testing.T) {
	tsv := "matrix\tcell\tpeer\trep\tdeliveries_per_s\n" +
		"mbox\t1c-1k\tlda-mbox\t1\t100\n" +
		"mbox\t1c-1k\tmail.local\t1\t200\n" +
		"mbox\t1c-1k\traw-mbox\t1\t900\n" +
		"mbox\t1c-1k\tlda-mbox\t2\t300\n" +
		"mbox\t1c-1k\tmail.local\t2\t100\n" +
		"mbox\t8c-1k\tlda-mbox\t1\t7\n" +
		"mbox\t8c-1k\tmail.local\t1\t7\n" +
		"mbox\t1c-1k\tlda-mbox\t3\t50\n" // no peer in rep 3: no pair
	got, err := readRatios(strings.NewReader(tsv), "mbox", "1c-1k")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0] != 0.5 || got[1] != 3 {
		t.Fatalf("ratios %v, want [0.5 3]", got)
	}
	if _, err := readRatios(strings.NewReader("matrix\tcell\n"), "mbox", "1c-1k"); err == nil {
		t.Fatal("accepted a file without the columns")
	}
}

func TestMedianAndBootstrap(t *testing.T) {
	for _, tc := range []struct {
		name string
		xs   []float64
		want float64
	}{{"odd", []float64{3, 1, 2}, 2}, {"even", []float64{4, 1, 3, 2}, 2.5}, {"one", []float64{7}, 7}} {
		t.Run(tc.name, func(t *testing.T) {
			if m := median(tc.xs); m != tc.want {
				t.Fatalf("median %v = %v, want %v", tc.xs, m, tc.want)
			}
		})
	}
	xs := []float64{0.9, 0.95, 1, 1.05, 1.1, 0.97, 1.02}
	lo, hi := bootstrap(xs, 2000, rand.New(rand.NewSource(1)))
	if !(lo <= median(xs) && median(xs) <= hi && lo >= 0.9 && hi <= 1.1 && lo < hi) {
		t.Fatalf("interval [%v, %v] around %v", lo, hi, median(xs))
	}
}
