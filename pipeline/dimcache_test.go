package pipeline

import (
	"fmt"
	"math/rand"
	"strings"
	"testing"

	"github.com/cubed-olap/cubed/dictionary"
)

// countingNS is a dictionary.Namespace whose ID numbers values in order of first sight (an
// independent map) and counts its calls.
type countingNS struct {
	dictionary.Namespace
	ids   map[string]uint32
	calls int
}

func (n *countingNS) ID(v []byte) uint32 {
	n.calls++
	id, ok := n.ids[string(v)]
	if !ok {
		id = uint32(len(n.ids))
		n.ids[string(v)] = id
	}
	return id
}

// TestValueCache: for 3000 distinct values (more than the table's slots, so slots collide;
// "" and values longer than a slot among them) looked up 200k times in random order, every
// answer is the namespace's id, the bytes passed in may be reused by the caller, and values
// that repeat are answered without asking the namespace again.
func TestValueCache(t *testing.T) {
	vals := []string{"", strings.Repeat("x", 27), strings.Repeat("y", 28), strings.Repeat("z", 100)}
	for i := len(vals); i < 3000; i++ {
		vals = append(vals, fmt.Sprintf("v%d", i))
	}
	ns := &countingNS{ids: map[string]uint32{}}
	want := map[string]uint32{}
	c := newValueCache()
	r := rand.New(rand.NewSource(3))
	buf := make([]byte, 0, 128)
	for i := 0; i < 200000; i++ {
		v := vals[r.Intn(len(vals))]
		buf = append(buf[:0], v...)
		got := c.id(buf, ns)
		for j := range buf {
			buf[j] = '#' // the cache must have copied what it keeps
		}
		if w, ok := want[v]; ok && got != w {
			t.Fatalf("lookup %d: id(%q) = %d, earlier %d", i, v, got, w)
		}
		if got != ns.ids[v] {
			t.Fatalf("lookup %d: id(%q) = %d, namespace says %d", i, v, got, ns.ids[v])
		}
		want[v] = got
	}
	// Every value is in the map after its first sight: the namespace was asked once per value.
	if ns.calls != len(want) {
		t.Fatalf("namespace asked %d times for %d distinct values", ns.calls, len(want))
	}
	// A value of at most 27 bytes looked up again at once is answered by its slot of the table
	// (with the map emptied, a miss would ask the namespace).
	for _, v := range vals[:100] {
		want := c.id([]byte(v), ns)
		clear(c.m)
		calls := ns.calls
		if got := c.id([]byte(v), ns); got != want || (len(v) <= 27 && ns.calls != calls) {
			t.Fatalf("id(%q) again = %d (want %d), namespace calls %d → %d", v, got, want, calls, ns.calls)
		}
	}
}
