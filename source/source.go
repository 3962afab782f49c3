// Package source reads events: Kafka topics through franz-go and finite files (JSON lines or CSV,
// gzip detected), decodes them with a cube's field paths, and dead-letters what cannot be decoded.
package source

import "github.com/twmb/franz-go/pkg/kgo"

// Record is one raw event as read from a source.
type Record struct {
	// Value is the raw bytes of the event (one JSON object or one CSV line). A file's record's
	// Value is only valid until the next call that returns records; a Kafka record's until its
	// Release.
	Value []byte
	// Partition is the Kafka partition (0 for a file).
	Partition int32
	// Offset is the Kafka offset, or the 1-based line number in a file.
	Offset int64
	// kafka is the franz-go record a Kafka source's record came from, whose pooled memory
	// Release gives back; nil for a file's record.
	kafka *kgo.Record
}

// Release gives the record's memory back to its source, to be reused by a later fetch (a
// Kafka source's decompressed batches and record slices are pooled: kgo.WithPools); Value must
// not be read afterwards, by any copy of the record. Call it once per record returned by a
// source, when the record has been decoded and, if it was dead-lettered, written; a record never
// released is garbage collected, as without pools. It does nothing for a file's record.
func (r *Record) Release() {
	if r.kafka != nil {
		r.kafka.Recycle()
		r.kafka = nil
	}
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
