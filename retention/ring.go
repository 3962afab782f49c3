package retention

// Ring keeps per-day values for the last Cap days put into it: day d lives in slot d mod Cap,
// so putting day d evicts the day d − Cap (or any older day) from its slot. This is the ring of
// daily sets that day-N retention needs: with today's sets held by the open day window, a Ring of
// Cap = N holds the N closed days before it, and for N = 1 the pair is Kuaishou's double buffer
// (today live, yesterday here, swapped at day rollover). The zero Ring is unusable; use NewRing.
type Ring[T any] struct {
	slots []ringSlot[T]
}

type ringSlot[T any] struct {
	day Day
	ok  bool
	v   T
}

// NewRing returns an empty ring of n ≥ 1 slots.
func NewRing[T any](n int) *Ring[T] {
	if n < 1 {
		panic("BUG: retention.NewRing needs at least one slot")
	}
	return &Ring[T]{slots: make([]ringSlot[T], n)}
}

// Cap returns the number of slots.
func (r *Ring[T]) Cap() int { return len(r.slots) }

func (r *Ring[T]) slot(d Day) *ringSlot[T] {
	i := int(d) % len(r.slots)
	if i < 0 {
		i += len(r.slots)
	}
	return &r.slots[i]
}

// Put stores v as day d's value. It returns what no longer fits: the value and day that were in
// d's slot (an older day, or d itself when put twice), or v itself when the slot holds a newer
// day; evicted is false when nothing was dropped.
func (r *Ring[T]) Put(d Day, v T) (gone T, goneDay Day, evicted bool) {
	s := r.slot(d)
	switch {
	case !s.ok:
		*s = ringSlot[T]{day: d, ok: true, v: v}
		return gone, 0, false
	case s.day > d:
		return v, d, true
	}
	gone, goneDay = s.v, s.day
	*s = ringSlot[T]{day: d, ok: true, v: v}
	return gone, goneDay, true
}

// Get returns day d's value; ok is false when d is not in the ring.
func (r *Ring[T]) Get(d Day) (v T, ok bool) {
	s := r.slot(d)
	if s.ok && s.day == d {
		return s.v, true
	}
	return v, false
}

// Each calls fn for every day in the ring, in slot order.
func (r *Ring[T]) Each(fn func(d Day, v T)) {
	for i := range r.slots {
		if s := &r.slots[i]; s.ok {
			fn(s.day, s.v)
		}
	}
}

// Clear empties the ring and returns the values that were in it, in slot order.
func (r *Ring[T]) Clear() []T {
	var out []T
	for i := range r.slots {
		if r.slots[i].ok {
			out = append(out, r.slots[i].v)
		}
		r.slots[i] = ringSlot[T]{}
	}
	return out
}
