package retention

import (
	"fmt"
	"math"
	"math/rand"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cubed-olap/cubed/bitmapstate"
)

func TestDay(t *testing.T) {
	london, err := time.LoadLocation("Europe/London")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		t    time.Time
		want string
	}{
		{time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC), "1970-01-01"},
		{time.Date(1969, 12, 31, 23, 59, 59, 0, time.UTC), "1969-12-31"},
		{time.Date(2011, 3, 27, 23, 30, 0, 0, london), "2011-03-27"}, // a 23-hour day
		{time.Date(2011, 10, 30, 0, 30, 0, 0, london), "2011-10-30"}, // a 25-hour day
		{time.Date(2011, 10, 30, 23, 59, 0, 0, london), "2011-10-30"},
	}
	for _, c := range cases {
		d := DayOf(c.t)
		if d.String() != c.want {
			t.Errorf("DayOf(%v) = %s, want %s", c.t, d, c.want)
		}
		if got := DayOfMillis(c.t.UnixMilli(), c.t.Location()); got != d {
			t.Errorf("DayOfMillis(%v) = %s, want %s", c.t, got, d)
		}
		start := d.Start(c.t.Location())
		if y, m, dd := start.Date(); fmt.Sprintf("%04d-%02d-%02d", y, m, dd) != c.want || start.Hour() != 0 || start.After(c.t) {
			t.Errorf("Start of %s = %v", d, start)
		}
		if p, err := ParseDay(c.want); err != nil || p != d {
			t.Errorf("ParseDay(%s) = %v, %v; want %d", c.want, p, err, d)
		}
	}
	if d := DayOf(time.Date(2011, 10, 31, 0, 0, 0, 0, london)) - DayOf(time.Date(2011, 10, 30, 0, 0, 0, 0, london)); d != 1 {
		t.Errorf("consecutive days differ by %d", d)
	}
	if _, err := ParseDay("2011-13-01"); err == nil {
		t.Error("ParseDay accepted month 13")
	}
}

// TestFirstSeenOracle feeds random (id, day) events, days out of order within a window, and
// checks every id's first day and every day's new set against a brute-force minimum, with prunes
// and a checkpoint round trip (Changes into a map, Load into a fresh state) along the way.
func TestFirstSeenOracle(t *testing.T) {
	r := rand.New(rand.NewSource(1))
	f := NewFirstSeen()
	store := map[string][]byte{}
	persist := func() {
		err := f.Changes(func(k, v []byte) error {
			store[string(k)] = append([]byte(nil), v...)
			return nil
		}, func(k []byte) error {
			delete(store, string(k))
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	first := map[uint32]Day{}
	pruned := Day(math.MinInt32)
	maxDay := Day(0)
	for step := 0; step < 60; step++ {
		day := Day(15000 + step/3)
		for i := 0; i < 400; i++ {
			// Mostly today, some up to 2 days back; ids from a growing range.
			d := day - Day(r.Intn(3)*r.Intn(2))
			if d < pruned {
				d = pruned
			}
			id := uint32(r.Intn(1000 + step*300))
			if step%7 == 0 {
				id += 70_000 // a second block
			}
			prev, changed := f.Observe(id, d)
			old, seen := first[id]
			switch {
			case !seen:
				if !changed || prev != Never {
					t.Fatalf("new id %d on %s: Observe = %s, %v", id, d, prev, changed)
				}
				first[id] = d
			case d < old && old >= pruned:
				if !changed || prev != old {
					t.Fatalf("id %d first %s seen on %s: Observe = %s, %v; want a move from %s", id, old, d, prev, changed, old)
				}
				first[id] = d
			default:
				if changed {
					t.Fatalf("id %d first %s seen on %s: Observe reported a change from %s", id, old, d, prev)
				}
			}
			maxDay = max(maxDay, d)
		}
		if step%5 == 4 {
			pruned = maxDay - 2
			f.Prune(pruned)
		}
		if step%4 == 3 {
			persist()
		}
	}
	persist()
	g := NewFirstSeen()
	for k, v := range store {
		if err := g.Load([]byte(k), v); err != nil {
			t.Fatal(err)
		}
	}
	for _, st := range []*FirstSeen{f, g} {
		if st.Len() != uint64(len(first)) {
			t.Fatalf("Len %d, want %d", st.Len(), len(first))
		}
		want := map[Day][]uint32{}
		for id, d := range first {
			wantDay := d
			if d < pruned {
				wantDay = Before
			} else {
				want[d] = append(want[d], id)
			}
			if got := st.FirstDay(id); got != wantDay {
				t.Fatalf("FirstDay(%d) = %s, want %s", id, got, wantDay)
			}
		}
		var days []Day
		for d, ids := range want {
			days = append(days, d)
			slices.Sort(ids)
			var got []uint32
			st.New(d).Each(func(x uint32) { got = append(got, x) })
			if !slices.Equal(got, ids) {
				t.Fatalf("new(%s): %d ids, want %d", d, len(got), len(ids))
			}
		}
		slices.Sort(days)
		if !slices.Equal(st.Days(), days) {
			t.Fatalf("Days %v, want %v", st.Days(), days)
		}
		if st.FirstDay(9_999_999) != Never || st.New(pruned-1) != nil {
			t.Fatal("unseen id or pruned day")
		}
	}
	if f.SizeBytes() == 0 {
		t.Error("SizeBytes is 0")
	}
}

func TestFirstSeenBefore(t *testing.T) {
	f := NewFirstSeen()
	f.Observe(7, 100)
	if prev, changed := f.Observe(7, Before); !changed || prev != 100 || f.FirstDay(7) != Before || f.New(100).Len() != 0 {
		t.Errorf("undated import of an id first seen on day 100: %s, %v; first day %s", prev, changed, f.FirstDay(7))
	}
	if prev, changed := f.Observe(8, Before); !changed || prev != Never || f.FirstDay(8) != Before {
		t.Errorf("undated import of a new id: %s, %v", prev, changed)
	}
	if _, changed := f.Observe(8, 50); changed || f.FirstDay(8) != Before {
		t.Error("an id known from before every day became new")
	}
}

func TestFirstSeenLoadRejects(t *testing.T) {
	f := NewFirstSeen()
	for _, k := range [][]byte{{'b'}, {'x', 0, 0, 0, 1}} {
		if err := f.Load(k, nil); err == nil {
			t.Errorf("Load(%q) accepted a bad key", k)
		}
	}
	if err := f.Load(blockKey(1), []byte{1, 2, 3}); err == nil {
		t.Error("Load accepted a bad block")
	}
	g := NewFirstSeen()
	g.Observe(5, 0) // block 0
	var val []byte
	g.Changes(func(k, v []byte) error {
		if k[0] == keyBlock {
			val = append([]byte(nil), v...)
		}
		return nil
	}, func([]byte) error { return nil })
	if err := f.Load(blockKey(3), val); err == nil || !strings.Contains(err.Error(), "other blocks") {
		t.Errorf("Load of block 0's ids as block 3: %v", err)
	}
}

func TestRing(t *testing.T) {
	r := NewRing[string](2)
	if _, _, ev := r.Put(10, "a"); ev {
		t.Error("first put evicted")
	}
	r.Put(11, "b")
	if v, ok := r.Get(10); !ok || v != "a" {
		t.Errorf("Get(10) = %q, %v", v, ok)
	}
	gone, day, ev := r.Put(12, "c")
	if !ev || gone != "a" || day != 10 {
		t.Errorf("Put(12) evicted %q of %d (%v), want a of 10", gone, day, ev)
	}
	if _, ok := r.Get(10); ok {
		t.Error("day 10 still in the ring")
	}
	if gone, day, ev := r.Put(10, "old"); !ev || gone != "old" || day != 10 {
		t.Errorf("putting an older day: %q %d %v, want it dropped", gone, day, ev)
	}
	n := 0
	r.Each(func(d Day, v string) { n++ })
	if n != 2 || len(r.Clear()) != 2 {
		t.Error("Each or Clear")
	}
	neg := NewRing[int](3)
	neg.Put(-4, 1)
	if v, ok := neg.Get(-4); !ok || v != 1 {
		t.Error("negative days")
	}
}

func TestCounts(t *testing.T) {
	set := func(ids ...uint32) *bitmapstate.Set {
		s := &bitmapstate.Set{}
		for _, x := range ids {
			s.Add(x)
		}
		return s
	}
	today, prev, newPrev := set(1, 2, 3, 4, 9), set(2, 3, 5, 6, 9), set(3, 5, 9, 11)
	if r, c := Counts(today, prev, newPrev, false); r != 3 || c != 5 {
		t.Errorf("active cohort: %d/%d, want 3/5", r, c)
	}
	if r, c := Counts(today, prev, newPrev, true); r != 2 || c != 3 {
		t.Errorf("new cohort: %d/%d, want 2/3", r, c)
	}
	if r, c := Counts(today, nil, newPrev, false); r != 0 || c != 0 {
		t.Errorf("no previous day: %d/%d", r, c)
	}
	if r, c := Counts(today, prev, nil, true); r != 0 || c != 0 {
		t.Errorf("no new users: %d/%d", r, c)
	}
	if !math.IsNaN(Rate(0, 0)) || Rate(1, 4) != 0.25 {
		t.Error("Rate")
	}
}

func TestReadHistory(t *testing.T) {
	london, _ := time.LoadLocation("Europe/London")
	in := "17850\n\n12583,2010-12-01\n\"a,b\",2011-06-30T23:30:00Z\n  13047 , 2011-01-02 \n"
	type got struct {
		id  string
		day string
	}
	var out []got
	err := ReadHistory(strings.NewReader(in), london, func(id string, d Day) error {
		out = append(out, got{id, d.String()})
		return nil
	})
	want := []got{{"17850", "before"}, {"12583", "2010-12-01"}, {"a,b", "2011-07-01"}, {"13047", "2011-01-02"}}
	if err != nil || !slices.Equal(out, want) {
		t.Errorf("ReadHistory = %v, %v; want %v", out, err, want)
	}
	for in, msg := range map[string]string{
		"id,date\n1,2011-01-01\n": "history line 1: date \"date\" is neither",
		"1\n2,3,4\n":              "history line 2 has 3 fields",
		"1\n ,2011-01-01\n":       "history line 2 has an empty id",
	} {
		err := ReadHistory(strings.NewReader(in), time.UTC, func(string, Day) error { return nil })
		if err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("ReadHistory(%q) = %v, want an error containing %q", in, err, msg)
		}
	}
}
