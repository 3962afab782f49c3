// Package dictionary maps strings (user ids, device ids, dimension values) to dense uint32 ids,
// one id space per namespace, so that distinct sets can be roaring bitmaps and group keys can be
// short fixed-width integers. This is the global-dictionary technique of Apache Kylin's exact
// count distinct and of Kuaishou's real-time UV platform.
package dictionary

import (
	"fmt"
	"math"
	"sync"
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
		ns = &memNamespace{ids: map[string]uint32{}}
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

// memNamespace is a map from value to id plus the values in id order.
type memNamespace struct {
	mu     sync.RWMutex // guards ids and values
	ids    map[string]uint32
	values []string // values[id]
}

func (n *memNamespace) ID(v []byte) uint32 {
	n.mu.RLock()
	id, ok := n.ids[string(v)]
	n.mu.RUnlock()
	if ok {
		return id
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if id, ok := n.ids[string(v)]; ok {
		return id
	}
	if len(n.values) >= NoID {
		panic(fmt.Sprintf("BUG: dictionary namespace full (%d ids)", len(n.values)))
	}
	s := string(v)
	id = uint32(len(n.values))
	n.ids[s] = id
	n.values = append(n.values, s)
	return id
}

func (n *memNamespace) Lookup(v []byte) (uint32, bool) {
	n.mu.RLock()
	defer n.mu.RUnlock()
	id, ok := n.ids[string(v)]
	return id, ok
}

func (n *memNamespace) Value(id uint32) (string, bool) {
	n.mu.RLock()
	defer n.mu.RUnlock()
	if int64(id) >= int64(len(n.values)) {
		return "", false
	}
	return n.values[id], true
}

func (n *memNamespace) Len() int {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return len(n.values)
}
