package cube

import (
	"github.com/dustin/go-humanize"
	"go.yaml.in/yaml/v3"
)

// DefaultMemoryLimit is the state memory budget of a cube whose model sets none: 1 GiB.
const DefaultMemoryLimit = 1 << 30

// DefaultDictionaryCache bounds each dictionary namespace of a cube whose model sets no
// state.dictionary_cache: 256 MiB, about 5M ids of 16 bytes.
const DefaultDictionaryCache = 256 << 20

// StateConfig is a cube's `state:` mapping: how its aggregation state uses memory. It does not
// change results, so it is not part of the fingerprint.
type StateConfig struct {
	// MemoryLimit is the budget, in bytes, for the cube's aggregation state (group tables and
	// distinct-id blocks). Above it, blocks of distinct sets that were not used since the last
	// checkpoint are dropped from memory after each checkpoint and read back from the state store
	// when one of their ids arrives (state.memory_limit; 0 in a parsed model means
	// DefaultMemoryLimit). Group tables themselves always stay in memory.
	MemoryLimit int64
	// DictionaryCache bounds, in bytes, the memory of each of the cube's dictionary namespaces
	// (state.dictionary_cache; 0 in a parsed model means DefaultDictionaryCache). Beyond it,
	// after a checkpoint, the namespace forgets its entries; ids are read back from the state
	// store when their value comes again.
	DictionaryCache int64
}

var stateSchema = &schema{where: "state", keys: []string{"memory_limit", "dictionary_cache"}}

// state decodes `state: {memory_limit: 512MiB}` (a byte count, or a size with a unit: KB, MB, GB
// are powers of 1000, KiB, MiB, GiB of 1024).
func (d *decoder) state(n *yaml.Node, c *Cube) {
	sm, ok := d.mapping(n, stateSchema)
	if !ok {
		return
	}
	if v := sm.get("memory_limit"); v != nil {
		c.State.MemoryLimit = d.size(v, "state memory_limit", 1<<20, "1MiB")
	}
	if v := sm.get("dictionary_cache"); v != nil {
		c.State.DictionaryCache = d.size(v, "state dictionary_cache", 64<<10, "64KiB")
	}
}

// size decodes a byte size of at least least (named leastName in the message); 0 on errors.
func (d *decoder) size(v *yaml.Node, what string, least uint64, leastName string) int64 {
	s, ok := d.str(v, what)
	if !ok {
		return 0
	}
	b, err := humanize.ParseBytes(s)
	switch {
	case err != nil:
		d.errorf(v, "%s: bad size %q (use bytes or a size such as 512MiB, 2GiB, 1GB)", what, s)
	case b < least:
		d.errorf(v, "%s must be at least %s, got %s", what, leastName, s)
	case b > 1<<50:
		d.errorf(v, "%s %s is beyond any machine", what, s)
	default:
		return int64(b)
	}
	return 0
}

// DictionaryCacheBytes returns the bound of each of the cube's dictionary namespaces in bytes
// (the default when unset).
func (c *Cube) DictionaryCacheBytes() int64 {
	if c.State.DictionaryCache > 0 {
		return c.State.DictionaryCache
	}
	return DefaultDictionaryCache
}

// MemoryLimitBytes returns the cube's state memory budget in bytes (the default when unset).
func (c *Cube) MemoryLimitBytes() int64 {
	if c.State.MemoryLimit > 0 {
		return c.State.MemoryLimit
	}
	return DefaultMemoryLimit
}
