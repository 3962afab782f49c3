// Package dictionary maps strings (user ids, device ids, dimension values) to dense uint32 ids,
// one id space per namespace, so that distinct sets can be roaring bitmaps and group keys can be
// short fixed-width integers. This is the global-dictionary technique of Apache Kylin's exact
// count distinct and of Kuaishou's real-time UV platform.
package dictionary

import (
	"fmt"
	"math"
	"sync"

	"github.com/cespare/xxhash/v2"
)

// NoID is the id of "no value": it is never assigned to a string.
const NoID = math.MaxUint32

// Namespace is one id space. Ids are dense: the n-th distinct value gets id n-1. All methods are
// safe for concurrent use.
type Namespace interface {
	// ID returns the id of v, assigning the next free id when v is new. It does not keep v: the
	// caller may reuse the bytes. It panics when the namespace already holds NoID values.
	ID(v []byte) uint32
	// Lookup returns the id of v if it has one.
	Lookup(v []byte) (uint32, bool)
	// Value returns the string of id, or false when id was never assigned.
	Value(id uint32) (string, bool)
	// Len returns the number of ids assigned.
	Len() int
	// Snapshot returns the values of every id assigned so far, indexed by id. The slice is
	// never modified afterwards (later ids are not in it), so it may be read without locks.
	Snapshot() []string
	// Unpersisted returns the ids assigned since the last MarkPersisted: ids from, from+1, …
	// map to values[0], values[1], …. The caller writes them durably, then calls MarkPersisted.
	Unpersisted() (from uint32, values []string)
	// MarkPersisted records that every id below upto is durable.
	MarkPersisted(upto uint32)
	// Restore re-assigns a durable id while loading: ids must come in order 0, 1, 2 … before
	// any other use of the namespace. It fails on a gap or a duplicate value.
	Restore(id uint32, value string) error
}

// Dictionary is a set of namespaces, each named for the field it encodes ("dim:channel",
// "id:user"). The durable-state issue backs it with the embedded store.
type Dictionary interface {
	// Namespace returns the namespace called name, creating it when missing.
	Namespace(name string) Namespace
	// Names lists the namespaces in creation order.
	Names() []string
}

// Memory is an in-memory Dictionary.
type Memory struct {
	mu    sync.Mutex // guards names and spaces
	names []string
	space map[string]*memNamespace
}

// NewMemory returns an empty in-memory dictionary.
func NewMemory() *Memory {
	return &Memory{space: map[string]*memNamespace{}}
}

// Namespace implements Dictionary.
func (m *Memory) Namespace(name string) Namespace {
	m.mu.Lock()
	defer m.mu.Unlock()
	ns, ok := m.space[name]
	if !ok {
		ns = newMemNamespace()
		m.space[name] = ns
		m.names = append(m.names, name)
	}
	return ns
}

// Names implements Dictionary.
func (m *Memory) Names() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.names...)
}

// shardCount is the number of independently locked maps of a namespace, so that concurrent
// decoders rarely touch the same lock.
const shardCount = 64

// memNamespace is value → id maps sharded by a hash of the value, plus the values in id order.
type memNamespace struct {
	shards    [shardCount]memShard
	valMu     sync.RWMutex // guards values and persisted; taken inside a shard lock when assigning
	values    []string     // values[id]
	persisted uint32       // ids below are durable
}

type memShard struct {
	mu  sync.RWMutex // guards ids
	ids map[string]uint32
	_   [32]byte // keep shards on separate cache lines
}

func newMemNamespace() *memNamespace {
	n := &memNamespace{}
	for i := range n.shards {
		n.shards[i].ids = map[string]uint32{}
	}
	return n
}

func (n *memNamespace) shard(v []byte) *memShard {
	return &n.shards[xxhash.Sum64(v)%shardCount]
}

func (n *memNamespace) ID(v []byte) uint32 {
	sh := n.shard(v)
	sh.mu.RLock()
	id, ok := sh.ids[string(v)]
	sh.mu.RUnlock()
	if ok {
		return id
	}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if id, ok := sh.ids[string(v)]; ok {
		return id
	}
	s := string(v)
	n.valMu.Lock()
	if len(n.values) >= NoID {
		n.valMu.Unlock()
		panic(fmt.Sprintf("BUG: dictionary namespace full (%d ids)", len(n.values)))
	}
	id = uint32(len(n.values))
	n.values = append(n.values, s)
	n.valMu.Unlock()
	sh.ids[s] = id
	return id
}

func (n *memNamespace) Lookup(v []byte) (uint32, bool) {
	sh := n.shard(v)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	id, ok := sh.ids[string(v)]
	return id, ok
}

func (n *memNamespace) Value(id uint32) (string, bool) {
	n.valMu.RLock()
	defer n.valMu.RUnlock()
	if int64(id) >= int64(len(n.values)) {
		return "", false
	}
	return n.values[id], true
}

func (n *memNamespace) Len() int {
	n.valMu.RLock()
	defer n.valMu.RUnlock()
	return len(n.values)
}

func (n *memNamespace) Unpersisted() (uint32, []string) {
	n.valMu.RLock()
	defer n.valMu.RUnlock()
	return n.persisted, n.values[n.persisted:len(n.values):len(n.values)]
}

func (n *memNamespace) MarkPersisted(upto uint32) {
	n.valMu.Lock()
	defer n.valMu.Unlock()
	if upto > n.persisted && int(upto) <= len(n.values) {
		n.persisted = upto
	}
}

func (n *memNamespace) Restore(id uint32, value string) error {
	sh := n.shard([]byte(value))
	sh.mu.Lock()
	defer sh.mu.Unlock()
	n.valMu.Lock()
	defer n.valMu.Unlock()
	if int(id) != len(n.values) {
		return fmt.Errorf("restoring dictionary id %d: expected id %d next", id, len(n.values))
	}
	if old, dup := sh.ids[value]; dup {
		return fmt.Errorf("restoring dictionary id %d: value %q already has id %d", id, value, old)
	}
	sh.ids[value] = id
	n.values = append(n.values, value)
	n.persisted = id + 1
	return nil
}

func (n *memNamespace) Snapshot() []string {
	n.valMu.RLock()
	defer n.valMu.RUnlock()
	return n.values[:len(n.values):len(n.values)]
}
