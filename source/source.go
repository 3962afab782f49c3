// Package source reads events: Kafka topics through franz-go and finite files (JSON lines or CSV,
// gzip detected), decodes them with a cube's field paths, and dead-letters what cannot be decoded.
package source

// Record is one raw event as read from a source.
type Record struct {
	// Value is the raw bytes of the event (one JSON object or one CSV line). It is only valid
	// until the next call that returns records.
	Value []byte
	// Partition is the Kafka partition (0 for a file).
	Partition int32
	// Offset is the Kafka offset, or the 1-based line number in a file.
	Offset int64
}

// Event is one decoded event, in the shape of a cube.Plan. Slices point into the decoder's
// scratch space and stay valid until the next Decode on the same Decoder.
type Event struct {
	// Time is the event time in Unix milliseconds.
	Time int64
	// Dims holds the text of each layer-1 dimension (cube.Plan.Dimensions order); "" for a
	// missing or null field, "true"/"false" for booleans, the number's JSON text for numbers.
	Dims [][]byte
	// Values holds each numeric field of cube.Plan.ValueFields; NaN when missing, null or empty.
	Values []float64
	// IDs holds each distinct-count field of cube.Plan.DistinctFields; empty when missing, null
	// or "" (such ids are not counted). Numbers and booleans become their text.
	IDs [][]byte
}
