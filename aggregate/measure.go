package aggregate

import (
	"math"
	"math/big"
	"strconv"

	"github.com/cubed-olap/cubed/cube"
	"github.com/cubed-olap/cubed/retention"
)

// Cells are the per-slice aggregate of a group, as a fixed number of uint64 words:
//
//	[0]                 count of events
//	sum measures        two words each: integer part (int64) and nanos (int64, |nanos| < 1e9)
//	min, max measures   one word each: float64 bits, NaN = no value yet
//	count_distinct      one word each: ids first seen in this slice (full state only)
//	new_users           one word per id field: ids of the slice new that day (derived)
//	retention           two words each: retained ids of the slice, and the cohort size (on
//	                    the group's first slice only) (derived)
//
// Derived words are not merged: they are computed from the group's id sets when the group is
// emitted (and frozen when a cumulative slice closes; see retention.go), and summed over slices
// like the distinct words.
// Every operation on cells is an associative, commutative merge, so partial aggregates can be
// combined in any order (the contract that salted pre-aggregation relies on).
type cellLayout struct {
	n        int     // words per slice record
	measures []mcell // per plan measure
	sums     []vcell // sum inputs
	mins     []vcell
	maxs     []vcell
	distinct []int // word of distinct field f's first-seen count
	derived  []int // new_users and retention words
}

type mcell struct {
	typ  cube.MeasureType
	word int
	part cube.RetentionPart // retention: which column (word is the retained count, word+1 the cohort)
}

type vcell struct {
	word  int
	field int // index into Batch values of an event
}

var nanBits = math.Float64bits(math.NaN())

func newCellLayout(p *cube.Plan) cellLayout {
	l := cellLayout{n: 1}
	distinctWord := map[int]int{}
	newWord := map[int]int{}       // distinct field → new_users word
	retentionWord := map[int]int{} // cube measure → retained word
	for _, m := range p.Measures {
		switch m.Type {
		case cube.Count:
			l.measures = append(l.measures, mcell{typ: m.Type, word: 0})
		case cube.Sum:
			l.measures = append(l.measures, mcell{typ: m.Type, word: l.n})
			l.sums = append(l.sums, vcell{l.n, m.ValueField})
			l.n += 2
		case cube.Min:
			l.measures = append(l.measures, mcell{typ: m.Type, word: l.n})
			l.mins = append(l.mins, vcell{l.n, m.ValueField})
			l.n++
		case cube.Max:
			l.measures = append(l.measures, mcell{typ: m.Type, word: l.n})
			l.maxs = append(l.maxs, vcell{l.n, m.ValueField})
			l.n++
		case cube.CountDistinct:
			w, ok := distinctWord[m.DistinctField]
			if !ok {
				w = l.n
				l.n++
				distinctWord[m.DistinctField] = w
			}
			l.measures = append(l.measures, mcell{typ: m.Type, word: w})
		case cube.NewUsers:
			w, ok := newWord[m.DistinctField]
			if !ok {
				w = l.n
				l.n++
				newWord[m.DistinctField] = w
				l.derived = append(l.derived, w)
			}
			l.measures = append(l.measures, mcell{typ: m.Type, word: w})
		case cube.Retention:
			w, ok := retentionWord[m.Source]
			if !ok {
				w = l.n
				l.n += 2
				retentionWord[m.Source] = w
				l.derived = append(l.derived, w, w+1)
			}
			l.measures = append(l.measures, mcell{typ: m.Type, word: w, part: m.Part})
		default:
			panic("BUG: measure type " + string(m.Type) + " reached the aggregator")
		}
	}
	l.distinct = make([]int, len(p.DistinctFields))
	for f := range l.distinct {
		l.distinct[f] = distinctWord[f]
	}
	return l
}

// init sets fresh cells to the identity of every merge.
func (l *cellLayout) init(c []uint64) {
	clear(c)
	for _, v := range l.mins {
		c[v.word] = nanBits
	}
	for _, v := range l.maxs {
		c[v.word] = nanBits
	}
}

// addEvent folds one event's values (Batch.Values row) into c.
func (l *cellLayout) addEvent(c []uint64, values []float64) {
	c[0]++
	for _, v := range l.sums {
		addSum(c[v.word:v.word+2], values[v.field])
	}
	for _, v := range l.mins {
		x := values[v.field]
		if x == x { // not NaN
			if cur := math.Float64frombits(c[v.word]); cur != cur || x < cur {
				c[v.word] = math.Float64bits(x)
			}
		}
	}
	for _, v := range l.maxs {
		x := values[v.field]
		if x == x {
			if cur := math.Float64frombits(c[v.word]); cur != cur || x > cur {
				c[v.word] = math.Float64bits(x)
			}
		}
	}
}

// merge folds src into dst (count, sums, min, max; the distinct words are handled by the sets).
// The caller keeps ownership of src.
func (l *cellLayout) merge(dst, src []uint64) {
	dst[0] += src[0]
	for _, v := range l.sums {
		mergeSum(dst[v.word:v.word+2], src[v.word:v.word+2])
	}
	for _, v := range l.mins {
		x := math.Float64frombits(src[v.word])
		if cur := math.Float64frombits(dst[v.word]); x == x && (cur != cur || x < cur) {
			dst[v.word] = src[v.word]
		}
	}
	for _, v := range l.maxs {
		x := math.Float64frombits(src[v.word])
		if cur := math.Float64frombits(dst[v.word]); x == x && (cur != cur || x > cur) {
			dst[v.word] = src[v.word]
		}
	}
}

// mergeAll also adds the distinct and derived words (used to build cumulative prefixes).
func (l *cellLayout) mergeAll(dst, src []uint64) {
	l.merge(dst, src)
	for _, w := range l.distinct {
		dst[w] += src[w]
	}
	for _, w := range l.derived {
		dst[w] += src[w]
	}
}

// values writes the measures of cells c into out (plan measure order); NaN is null.
func (l *cellLayout) values(c []uint64, out []float64) {
	for i, m := range l.measures {
		switch m.typ {
		case cube.Count, cube.CountDistinct, cube.NewUsers:
			out[i] = float64(c[m.word])
		case cube.Retention:
			switch m.part {
			case cube.RetentionRetained:
				out[i] = float64(c[m.word])
			case cube.RetentionCohort:
				out[i] = float64(c[m.word+1])
			default:
				out[i] = retention.Rate(c[m.word], c[m.word+1])
			}
		case cube.Sum:
			out[i] = sumFloat(int64(c[m.word]), int64(c[m.word+1]))
		default:
			out[i] = math.Float64frombits(c[m.word])
		}
	}
}

// Sums are exact fixed-point decimals: an int64 integer part plus int64 nanos (1e-9 units), so
// that the result does not depend on the order of additions (float64 addition does). A value's
// fraction is rounded to 9 decimals, which is exact for decimal inputs with at most 9 fractional
// digits below about 1e6 and for every integer below 2^63; the total is reported as the float64
// nearest to the exact decimal.
const nano = 1_000_000_000

// maxExactIP bounds the integer parts whose total in nanos sumFloat computes in an int64 without
// overflow and compares with 2^53.
const maxExactIP = 1<<53/nano + 1

func addSum(c []uint64, x float64) {
	if x != x {
		return
	}
	ip := math.Trunc(x)
	fr := math.Round((x - ip) * nano)
	c[0] = uint64(int64(c[0]) + int64(ip))
	normSum(c, int64(c[1])+int64(fr))
}

func mergeSum(dst, src []uint64) {
	dst[0] = uint64(int64(dst[0]) + int64(src[0]))
	normSum(dst, int64(dst[1])+int64(src[1]))
}

func normSum(c []uint64, n int64) {
	if n >= nano || n <= -nano {
		c[0] = uint64(int64(c[0]) + n/nano)
		n %= nano
	}
	c[1] = uint64(n)
}

// sumFloat returns the float64 nearest to ip + n/1e9 (ties to even).
func sumFloat(ip, n int64) float64 {
	if n == 0 {
		return float64(ip)
	}
	// Fast path: when the total in nanos, t = ip·1e9 + n, is at most 2^53 in magnitude, both t and
	// 1e9 are exact float64s, and IEEE 754 division rounds the exact quotient t/1e9 to the nearest
	// float64 (ties to even), as ParseFloat of its decimal text would. That covers sums below
	// about 9e6; larger ones go through the decimal text.
	if ip > -maxExactIP && ip < maxExactIP {
		if t := ip*nano + n; t >= -1<<53 && t <= 1<<53 {
			return float64(t) / nano
		}
	}
	// Bring both parts to the same sign so the decimal text is ip.nnnnnnnnn.
	if ip > 0 && n < 0 {
		ip--
		n += nano
	} else if ip < 0 && n > 0 {
		ip++
		n -= nano
	}
	if ip > math.MaxInt64/nano || ip < math.MinInt64/nano {
		r := new(big.Rat).SetFrac(new(big.Int).Add(new(big.Int).Mul(big.NewInt(ip), big.NewInt(nano)), big.NewInt(n)), big.NewInt(nano))
		f, _ := r.Float64()
		return f
	}
	var buf [48]byte
	b := buf[:0]
	if ip < 0 || n < 0 {
		b = append(b, '-')
	}
	b = strconv.AppendUint(b, uint64(abs(ip)), 10)
	b = append(b, '.')
	var fb [20]byte
	frac := strconv.AppendUint(fb[:0], uint64(abs(n)), 10)
	for i := len(frac); i < 9; i++ {
		b = append(b, '0')
	}
	b = append(b, frac...)
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil {
		panic("BUG: formatting sum " + string(b) + ": " + err.Error())
	}
	return f
}

func abs(x int64) int64 {
	if x < 0 {
		return -x
	}
	return x
}
