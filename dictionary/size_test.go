package dictionary

import (
	"fmt"
	"math"
	"runtime"
	"testing"
)

// SizeBytes agrees with the heap the namespace actually takes, measured by the runtime
// (runtime.MemStats after a GC), within 10 %, before and after a Snapshot.
func TestSizeBytesMatchesHeap(t *testing.T) {
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	const n = 200_000
	h0 := heap()
	ns := NewMemory().Namespace("id:user")
	buf := make([]byte, 0, 32)
	for j := 0; j < n; j++ {
		buf = fmt.Appendf(buf[:0], "user-%d-%d", j*7919, j%13)
		ns.ID(buf)
	}
	check := func(what string, base uint64) {
		t.Helper()
		got := ns.SizeBytes()
		want := float64(heap() - base)
		t.Logf("%s: SizeBytes %d, heap growth %.0f", what, got, want)
		if math.Abs(float64(got)-want) > 0.1*want {
			t.Errorf("%s: SizeBytes = %d, the heap grew by %.0f bytes", what, got, want)
		}
	}
	check("after inserting", h0)
	ns.Snapshot()
	check("after a Snapshot", h0)
	runtime.KeepAlive(ns)
}
