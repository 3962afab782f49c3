package sink

import "context"

// WaitWrite waits for the write b has in flight, if any, and returns its error: the buffer's
// tests observe each write's effect.
func WaitWrite(b *ClickHouseBuffer) error { return b.collect(context.Background(), true) }
