package source

import (
	"bytes"
	"encoding/json"
	"regexp"
	"slices"
	"testing"
	"time"
)

var (
	reUser    = regexp.MustCompile(`^uid_[0-9]{12}$`)
	reVersion = regexp.MustCompile(`^5\.[0-2]\.[0-9]$`)
	reChannel = regexp.MustCompile(`^ch_(0[0-9]|1[0-9])$`)
	rePage    = regexp.MustCompile(`^page_[0-1][0-9][0-9]$`)
	reAmount  = regexp.MustCompile(`"amount":[0-9]{1,2}\.[0-9]{2},`)
	reSession = regexp.MustCompile(`^s[0-9a-f]{16}$`)
)

type genEvent struct {
	UserID     string      `json:"user_id"`
	EventTime  string      `json:"event_time"`
	Country    string      `json:"country"`
	Platform   string      `json:"platform"`
	AppVersion string      `json:"app_version"`
	Channel    string      `json:"channel"`
	Page       string      `json:"page"`
	DurationMS json.Number `json:"duration_ms"`
	Amount     json.Number `json:"amount"`
	Session    string      `json:"session"`
}

func TestGeneratorEvents(t *testing.T) {
	const n = 20000
	g := NewGenerator(GeneratorConfig{Users: 10000, Seed: 7, Rate: 100})
	users := map[string]int{}
	countries := map[string]int{}
	pages := map[string]int{}
	var line []byte
	for i := int64(0); i < n; i++ {
		at := g.Time(i)
		if want := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC).Add(time.Duration(i) * 10 * time.Millisecond); !at.Equal(want) {
			t.Fatalf("Time(%d) = %v, want %v", i, at, want)
		}
		line = g.Next(line[:0], at)
		var ev genEvent
		dec := json.NewDecoder(bytes.NewReader(line))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&ev); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		ts, err := time.Parse(GeneratorLayout, ev.EventTime)
		if err != nil || !ts.Equal(at.Truncate(time.Second)) {
			t.Fatalf("event_time %q (%v), want %v", ev.EventTime, err, at.Truncate(time.Second))
		}
		dur, err := ev.DurationMS.Int64()
		if !reUser.MatchString(ev.UserID) || !slices.Contains(genCountries[:], ev.Country) ||
			!slices.Contains(genPlatforms[:], ev.Platform) || !reVersion.MatchString(ev.AppVersion) ||
			!reChannel.MatchString(ev.Channel) || !rePage.MatchString(ev.Page) || err != nil || dur < 0 || dur >= 60000 ||
			!reAmount.Match(line) || !reSession.MatchString(ev.Session) {
			t.Fatalf("malformed event %s", line)
		}
		users[ev.UserID]++
		countries[ev.Country]++
		pages[ev.Page]++
	}
	// Skew: with Zipf(s=1.1) the most active user has far more than the mean.
	top := 0
	for _, c := range users {
		top = max(top, c)
	}
	if mean := float64(n) / float64(len(users)); float64(top) < 20*mean {
		t.Errorf("most active user has %d events, mean %.1f: not skewed", top, mean)
	}
	if len(users) < 1000 || len(users) > 10000 {
		t.Errorf("%d distinct users out of 10000", len(users))
	}
	if countries["CN"] <= countries["VN"] || countries["CN"] < n/5 {
		t.Errorf("country mix %v is not Zipf-ish with CN first", countries)
	}
	if pages["page_000"] <= pages["page_199"] {
		t.Errorf("page_000 (%d) is not more popular than page_199 (%d)", pages["page_000"], pages["page_199"])
	}
}

func TestGeneratorDeterministic(t *testing.T) {
	lines := func(seed int64) []byte {
		var b bytes.Buffer
		g := NewGenerator(GeneratorConfig{Seed: seed})
		n, err := g.WriteLines(&b, 100)
		if err != nil || n != int64(b.Len()) {
			t.Fatalf("WriteLines: %d bytes, %v (buffer has %d)", n, err, b.Len())
		}
		return b.Bytes()
	}
	a, b, c := lines(1), lines(1), lines(2)
	if !bytes.Equal(a, b) {
		t.Error("the same seed gave different lines")
	}
	if bytes.Equal(a, c) {
		t.Error("different seeds gave the same lines")
	}
	if got := bytes.Count(a, []byte("\n")); got != 100 || a[len(a)-1] != '\n' {
		t.Errorf("WriteLines(100) wrote %d lines", got)
	}
}

func TestGeneratorAllocs(t *testing.T) {
	g := NewGenerator(GeneratorConfig{Seed: 3})
	dst := make([]byte, 0, 512)
	at := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	if a := testing.AllocsPerRun(1000, func() { dst = g.Next(dst[:0], at) }); a != 0 {
		t.Errorf("Next allocates %.1f times per event, want 0", a)
	}
}

func TestAppendPadded(t *testing.T) {
	for _, c := range []struct {
		v     uint64
		width int
		want  string
	}{{0, 3, "000"}, {7, 2, "07"}, {123, 2, "123"}, {999999999, 12, "000999999999"}, {18446744073709551615, 3, "18446744073709551615"}} {
		if got := string(appendPadded([]byte("x"), c.v, c.width)); got != "x"+c.want {
			t.Errorf("appendPadded(%d, %d) = %q, want %q", c.v, c.width, got, "x"+c.want)
		}
	}
}

func BenchmarkGeneratorNext(b *testing.B) {
	g := NewGenerator(GeneratorConfig{Seed: 3})
	dst := make([]byte, 0, 512)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		dst = g.Next(dst[:0], g.Time(int64(i)))
	}
	b.SetBytes(int64(len(dst)))
}
