package source

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"math/rand"
	"strconv"
	"time"
)

// GeneratorConfig configures a Generator of synthetic app events.
type GeneratorConfig struct {
	// Users is the number of distinct users (user ids are Zipf-distributed over them, s=1.1).
	// Zero means 10,000; at least 2 are used.
	Users int
	// Seed makes the sequence reproducible: the same config yields the same lines.
	Seed int64
	// Start is the event time of the first event of Time and WriteLines. Zero means
	// 2024-05-01T12:00:00Z (the start used by ../shared/bench/gen.go).
	Start time.Time
	// Rate is events per second of event time (or of wall time in live mode). Zero means 1000.
	Rate float64
}

// GeneratorLayout is the layout of the generated event_time field ("2006-01-02 15:04:05", UTC).
const GeneratorLayout = "2006-01-02 15:04:05"

// Generator produces realistic synthetic app events as JSON lines, shaped like
// ../shared/bench/gen.go: skewed users (Zipf, s=1.1), a Zipf-ish country mix over 10 countries,
// 3 platforms, 30 app versions, 20 channels, 200 pages (Zipf), a duration and an amount.
//
// One line looks like
//
//	{"user_id":"uid_000000007919","event_time":"2024-05-01 12:00:00","country":"CN","platform":"ios",
//	"app_version":"5.1.3","channel":"ch_07","page":"page_012","duration_ms":1234,"amount":12.05,
//	"session":"s0123456789abcdef"}
//
// A Generator is not safe for concurrent use.
type Generator struct {
	cfg     GeneratorConfig
	r       *rand.Rand
	users   *rand.Zipf
	country *rand.Zipf
	page    *rand.Zipf
}

var (
	genCountries = [...]string{"CN", "US", "IN", "BR", "ID", "RU", "JP", "DE", "MX", "VN"}
	genPlatforms = [...]string{"android", "ios", "web"}
)

// NewGenerator returns a Generator for cfg, with zero fields replaced by their defaults.
func NewGenerator(cfg GeneratorConfig) *Generator {
	if cfg.Users == 0 {
		cfg.Users = 10000
	}
	if cfg.Users < 2 {
		cfg.Users = 2
	}
	if cfg.Start.IsZero() {
		cfg.Start = time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	}
	if cfg.Rate <= 0 || math.IsNaN(cfg.Rate) || math.IsInf(cfg.Rate, 0) {
		cfg.Rate = 1000
	}
	r := rand.New(rand.NewSource(cfg.Seed))
	return &Generator{
		cfg:     cfg,
		r:       r,
		users:   rand.NewZipf(r, 1.1, 1, uint64(cfg.Users-1)),
		country: rand.NewZipf(r, 1.3, 1, uint64(len(genCountries)-1)),
		page:    rand.NewZipf(r, 1.1, 1, 199),
	}
}

// Config returns the configuration in use, defaults filled in.
func (g *Generator) Config() GeneratorConfig { return g.cfg }

// Time returns the event time of the i-th event (0-based): Start + i/Rate seconds, rounded to
// the nanosecond.
func (g *Generator) Time(i int64) time.Time {
	return g.cfg.Start.Add(time.Duration(math.Round(float64(i) * float64(time.Second) / g.cfg.Rate)))
}

// Next appends one event with event time t (formatted in UTC with GeneratorLayout) to dst as a
// JSON object without a trailing newline, and returns the extended slice. It allocates nothing
// when dst has room.
func (g *Generator) Next(dst []byte, t time.Time) []byte {
	r := g.r
	u := g.users.Uint64()
	dst = append(dst, `{"user_id":"uid_`...)
	dst = appendPadded(dst, u*7919%1000000007, 12)
	dst = append(dst, `","event_time":"`...)
	dst = t.UTC().AppendFormat(dst, GeneratorLayout)
	dst = append(dst, `","country":"`...)
	dst = append(dst, genCountries[g.country.Uint64()]...)
	dst = append(dst, `","platform":"`...)
	dst = append(dst, genPlatforms[r.Intn(len(genPlatforms))]...)
	v := r.Intn(30)
	dst = append(dst, `","app_version":"5.`...)
	dst = strconv.AppendInt(dst, int64(v/10), 10)
	dst = append(dst, '.')
	dst = strconv.AppendInt(dst, int64(v%10), 10)
	dst = append(dst, `","channel":"ch_`...)
	dst = appendPadded(dst, uint64(r.Intn(20)), 2)
	dst = append(dst, `","page":"page_`...)
	dst = appendPadded(dst, g.page.Uint64(), 3)
	dst = append(dst, `","duration_ms":`...)
	dst = strconv.AppendInt(dst, int64(r.Intn(60000)), 10)
	dst = append(dst, `,"amount":`...)
	dst = strconv.AppendInt(dst, int64(r.Intn(100)), 10)
	dst = append(dst, '.')
	dst = appendPadded(dst, uint64(r.Intn(100)), 2)
	dst = append(dst, `,"session":"s`...)
	s := r.Uint64()
	for shift := 60; shift >= 0; shift -= 4 {
		dst = append(dst, "0123456789abcdef"[(s>>uint(shift))&0xf])
	}
	dst = append(dst, `"}`...)
	return dst
}

// appendPadded appends v in decimal, left-padded with zeros to width digits.
func appendPadded(dst []byte, v uint64, width int) []byte {
	var buf [20]byte
	i := len(buf)
	for v >= 10 {
		i--
		buf[i] = byte('0' + v%10)
		v /= 10
	}
	i--
	buf[i] = byte('0' + v)
	for n := len(buf) - i; n < width; n++ {
		dst = append(dst, '0')
	}
	return append(dst, buf[i:]...)
}

// WriteLines writes n events as newline-terminated JSON lines to w, the i-th at Time(i), and
// returns the bytes written.
func (g *Generator) WriteLines(w io.Writer, n int64) (int64, error) {
	bw := bufio.NewWriterSize(w, 1<<16)
	var line []byte
	var written int64
	for i := int64(0); i < n; i++ {
		line = append(g.Next(line[:0], g.Time(i)), '\n')
		m, err := bw.Write(line)
		written += int64(m)
		if err != nil {
			return written, fmt.Errorf("writing generated event %d: %w", i, err)
		}
	}
	if err := bw.Flush(); err != nil {
		return written, fmt.Errorf("writing generated events: %w", err)
	}
	return written, nil
}
