// Package dictionary maps strings (user ids, device ids, dimension values) to dense uint32 ids,
// one id space per namespace, so that distinct sets can be roaring bitmaps and group keys can be
// short fixed-width integers. This is the global-dictionary technique of Apache Kylin's exact
// count distinct and of Kuaishou's real-time UV platform.
package dictionary

import (
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
	// IDs sets out[i] to ID(vals[i]) for every i, in order (ids are assigned as ID would). It
	// overlaps the memory loads of successive lookups, which ID one by one cannot: with a
	// namespace much bigger than the processor's caches, that is most of a lookup's cost.
	// out must be at least as long as vals.
	IDs(vals [][]byte, out []uint32)
	// Lookup returns the id of v if it has one.
	Lookup(v []byte) (uint32, bool)
	// Value returns the string of id, or false when id was never assigned.
	Value(id uint32) (string, bool)
	// Len returns the number of ids assigned.
	Len() int
	// Snapshot returns the values of every id assigned so far, indexed by id. The slice is
	// never modified afterwards (later ids are not in it), so it may be read without locks.
	Snapshot() []string
	// VisitUnpersisted calls fn with each id assigned since the last MarkPersisted, in id
	// order, and its value's bytes, valid only during the call (no string per value), and
	// returns the id after the last one visited. The caller writes them durably, then calls
	// MarkPersisted with that id. It stops at fn's first error and returns it.
	VisitUnpersisted(fn func(id uint32, v []byte) error) (upto uint32, err error)
	// MarkPersisted records that every id below upto is durable.
	MarkPersisted(upto uint32)
	// Restore re-assigns a durable id while loading: ids must come in order 0, 1, 2 … before
	// any other use of the namespace. It fails on a gap or a duplicate value.
	Restore(id uint32, value string) error
	// Reserve makes room for n more ids, so that the next n Restore (or ID) calls neither grow
	// nor rehash the namespace's tables: a hint that changes no id.
	Reserve(n int)
	// RestoreLazy, instead of Restore calls, declares that ids 0 … n-1 are durable in the
	// dictionary's Store without loading them: they are looked up there when first needed.
	// It fails when the namespace has no Store or already holds ids.
	RestoreLazy(n uint32) error
	// SetCacheLimit bounds the namespace's memory, in bytes (0: unbounded). With a Store, Trim
	// keeps the namespace within it.
	SetCacheLimit(bytes int64)
	// SizeBytes returns the memory the namespace holds.
	SizeBytes() int64
	// Trim, when every id is persisted and the namespace holds more than its cache limit,
	// drops its in-memory entries (they stay in the Store and are looked up again when needed)
	// and reports whether it did.
	Trim() bool
	// Err returns the first error of reading the Store; ids handed out after it may be wrong.
	Err() error
}

// Store is the durable side of a dictionary: the ids and values written by checkpoints (the
// caller writes them; the dictionary only reads). Its methods are called from several
// goroutines at once.
type Store interface {
	// LookupID returns the id stored for value v in namespace ns.
	LookupID(ns string, v []byte) (id uint32, ok bool, err error)
	// LookupValue returns the value stored for id in namespace ns.
	LookupValue(ns string, id uint32) (v string, ok bool, err error)
}

// Dictionary is a set of namespaces, each named for the field it encodes ("dim:channel",
// "id:user"). The durable-state issue backs it with the embedded store.
type Dictionary interface {
	// Namespace returns the namespace called name, creating it when missing.
	Namespace(name string) Namespace
	// Names lists the namespaces in creation order.
	Names() []string
}

// Memory is a Dictionary held in memory, optionally backed by a Store that lets its namespaces
// stay within a memory bound (a cache of the Store) and restart without loading every id.
type Memory struct {
	mu    sync.Mutex // guards names and spaces
	names []string
	space map[string]*memNamespace
	store Store
}

// NewMemory returns an empty in-memory dictionary without a Store: namespaces hold every id.
func NewMemory() *Memory {
	return &Memory{space: map[string]*memNamespace{}}
}

// NewStored returns an empty dictionary whose namespaces read ids they no longer (or not yet)
// hold in memory from st.
func NewStored(st Store) *Memory {
	return &Memory{space: map[string]*memNamespace{}, store: st}
}

// Namespace implements Dictionary.
func (m *Memory) Namespace(name string) Namespace {
	m.mu.Lock()
	defer m.mu.Unlock()
	ns, ok := m.space[name]
	if !ok {
		ns = newMemNamespace(name, m.store)
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
