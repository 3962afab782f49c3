package openaddr

import "testing"

// TestSlots checks Slots and Full against the rule they state, by brute force over small tables.
func TestSlots(t *testing.T) {
	for slots := 0; slots <= 1024; slots = max(MinSlots, slots*2) {
		for want := 0; want <= 3000; want++ {
			got := Slots(slots, want)
			if got < slots || want*4 > got*3 {
				t.Fatalf("Slots(%d, %d) = %d: too small", slots, want, got)
			}
			if got != slots && (got < MinSlots || got&(got-1) != 0 || got/2 >= max(MinSlots, slots) && want*4 <= got/2*3) {
				t.Fatalf("Slots(%d, %d) = %d: not the smallest power of two that holds it", slots, want, got)
			}
			if Full(want, slots) != (want+1 > slots*3/4) {
				t.Fatalf("Full(%d, %d) = %v", want, slots, Full(want, slots))
			}
		}
	}
}
