package cube

import (
	"github.com/dustin/go-humanize"
	"go.yaml.in/yaml/v3"
)

// DefaultMemoryLimit is the state memory budget of a cube whose model sets none: 1 GiB.
const DefaultMemoryLimit = 1 << 30

// StateConfig is a cube's `state:` mapping: how its aggregation state uses memory. It does not
// change results, so it is not part of the fingerprint.
type StateConfig struct {
	// MemoryLimit is the budget, in bytes, for the cube's aggregation state (group tables and
	// distinct-id blocks). Above it, blocks of distinct sets that were not used since the last
	// checkpoint are dropped from memory after each checkpoint and read back from the state store
	// when one of their ids arrives (state.memory_limit; 0 in a parsed model means
	// DefaultMemoryLimit). Group tables themselves always stay in memory.
	MemoryLimit int64
}

var stateSchema = &schema{where: "state", keys: []string{"memory_limit"}}

// state decodes `state: {memory_limit: 512MiB}` (a byte count, or a size with a unit: KB, MB, GB
// are powers of 1000, KiB, MiB, GiB of 1024).
func (d *decoder) state(n *yaml.Node, c *Cube) {
	sm, ok := d.mapping(n, stateSchema)
	if !ok {
		return
	}
	if v := sm.get("memory_limit"); v != nil {
		s, ok := d.str(v, "state memory_limit")
		if !ok {
			return
		}
		b, err := humanize.ParseBytes(s)
		switch {
		case err != nil:
			d.errorf(v, "state memory_limit: bad size %q (use bytes or a size such as 512MiB, 2GiB, 1GB)", s)
		case b < 1<<20:
			d.errorf(v, "state memory_limit must be at least 1MiB, got %s", s)
		case b > 1<<50:
			d.errorf(v, "state memory_limit %s is beyond any machine", s)
		default:
			c.State.MemoryLimit = int64(b)
		}
	}
}

// MemoryLimitBytes returns the cube's state memory budget in bytes (the default when unset).
func (c *Cube) MemoryLimitBytes() int64 {
	if c.State.MemoryLimit > 0 {
		return c.State.MemoryLimit
	}
	return DefaultMemoryLimit
}
