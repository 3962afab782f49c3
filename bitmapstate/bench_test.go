package bitmapstate

import (
	"math/rand"
	"runtime"
	"testing"
	"unsafe"
)

// BenchmarkBytesPerPair measures the memory of distinct sets: 20,000 groups of 64–1,024 users
// drawn from a 180k-user dictionary (dense ids), as a roaring-backed Set holds them. It reports
// heap bytes per distinct (user, group) pair beyond the fixed bytes per group (the Set struct,
// reported on its own).
// The peer (ClickHouse uniqExactState) takes about 16 bytes per pair.
func BenchmarkBytesPerPair(b *testing.B) {
	for i := 0; i < b.N; i++ {
		r := rand.New(rand.NewSource(1))
		const groups = 20000
		runtime.GC()
		var m0, m1 runtime.MemStats
		runtime.ReadMemStats(&m0)
		sets := make([]Set, groups)
		pairs := 0
		for g := range sets {
			n := 64 + r.Intn(961)
			for j := 0; j < n; j++ {
				if sets[g].Add(uint32(r.Intn(180_000))) {
					pairs++
				}
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&m1)
		heap := float64(m1.HeapAlloc) - float64(m0.HeapAlloc) - float64(groups*unsafe.Sizeof(Set{}))
		b.ReportMetric(heap/float64(pairs), "B/pair")
		b.ReportMetric(float64(unsafe.Sizeof(Set{})), "fixed-B/group")
		runtime.KeepAlive(sets)
	}
}
