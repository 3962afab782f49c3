package pipeline

import (
	"fmt"
	"unsafe"

	"github.com/cubed-olap/cubed/aggregate"
	"github.com/cubed-olap/cubed/dictionary"
	"github.com/cubed-olap/cubed/source"
)

// This file computes the per-node counters of a cube's compiled graph (the model view's DAG) and
// the sizes of its dictionaries. Both are computed when the cube publishes its aggregator stats
// (at most once a second, see publish), never per event.

// NodeStatus is the live counters of one node of a cube's compiled graph, as drawn from
// cube.Plan.Graph. Fields that do not apply to a node are left out of its JSON.
type NodeStatus struct {
	// ID is the cube.PlanNode ID: source, decode, layer1_preagg, layer1_full, gs_<cuboid id>
	// or sink.
	ID string `json:"id"`
	// Events that entered the node: records read (source, bad ones included), records decoded
	// into events (decode), events aggregated (layer1_preagg). Aggregation nodes past the
	// pre-aggregation see partials, not events, and leave it out.
	Events *uint64 `json:"events,omitempty"`
	// Rows is the sink's result rows written.
	Rows *uint64 `json:"rows,omitempty"`
	// Groups held in open window instances (layer1_full and gs_* nodes).
	Groups *int `json:"groups,omitempty"`
	// StateBytes estimates the memory the node holds: rows held back by watermark alignment
	// (source), the cube's dictionaries (decode, see DictionaryStatus), partial tables kept
	// between batches (layer1_preagg), group state, distinct-id sets and key tables (layer1_full,
	// gs_*; a gs_* node's own pre-aggregation partials are in PartialBytes).
	StateBytes uint64 `json:"state_bytes"`
	// PartialBytes is a layer-2 node's pre-aggregation partial tables, kept between batches.
	PartialBytes uint64 `json:"partial_bytes,omitempty"`
	// In names the node that holds this grouping set's groups when it is not its own: the
	// grouping set of every layer-1 dimension is emitted by layer1_full.
	In string `json:"in,omitempty"`
}

// DictionaryStatus is the size of one dictionary namespace of a cube.
type DictionaryStatus struct {
	// Namespace is "<cube>/dim/<dimension>" or "<cube>/id/<distinct field>".
	Namespace string `json:"namespace"`
	// IDs is the number of ids assigned (distinct values seen).
	IDs int `json:"ids"`
	// Bytes is the memory the namespace holds (dictionary.Namespace.SizeBytes).
	Bytes uint64 `json:"bytes"`
}

// dictNamespace is one of the cube's dictionary namespaces, by name.
type dictNamespace struct {
	name string
	ns   dictionary.Namespace
}

// heldRowBytes is the memory of one row held back by watermark alignment.
func (c *cubeRun) heldRowBytes() uint64 {
	nd, nv, nf := len(c.plan.Dimensions), len(c.plan.ValueFields), len(c.plan.DistinctFields)
	return uint64(8 + 4*nd + 8*nv + 4*nf + int(unsafe.Sizeof(source.Record{})))
}

// graphStatus returns the cube's dictionary sizes and the counters of every node of its graph,
// in cube.Plan.Graph's order, from the aggregator stats st. It runs on the cube's goroutine.
func (c *cubeRun) graphStatus(st aggregate.Stats) ([]NodeStatus, []DictionaryStatus) {
	if c.dicts == nil {
		for i, d := range c.plan.Dimensions {
			c.dicts = append(c.dicts, dictNamespace{name: c.name + "/dim/" + c.plan.Cube.Dimensions[d].Name, ns: c.dimNS[i]})
		}
		for i, f := range c.plan.DistinctFields {
			c.dicts = append(c.dicts, dictNamespace{name: c.name + "/id/" + f, ns: c.idNS[i]})
		}
	}
	dicts := make([]DictionaryStatus, len(c.dicts))
	var dictBytes uint64
	for i, d := range c.dicts {
		b := uint64(max(d.ns.SizeBytes(), 0))
		dicts[i] = DictionaryStatus{Namespace: d.name, IDs: d.ns.Len(), Bytes: b}
		dictBytes += b
	}
	held := 0
	for _, q := range c.queues {
		held += q.len()
	}
	records, events, rows := c.events+c.bad, c.events, c.rows
	nodes := []NodeStatus{
		{ID: "source", Events: &records, StateBytes: uint64(held) * c.heldRowBytes()},
		{ID: "decode", Events: &events, StateBytes: dictBytes},
		{ID: "layer1_preagg", Events: &events},
		{ID: "layer1_full"},
	}
	byGS := map[int]int{} // grouping-set index → node index in st
	for i, gs := range st.NodeGroupingSets {
		if gs >= 0 {
			byGS[gs] = i
		}
	}
	if len(st.NodePreaggBytes) > 0 {
		nodes[2].StateBytes = st.NodePreaggBytes[0]
	}
	if len(st.Groups) > 0 {
		g := st.Groups[0]
		nodes[3].Groups, nodes[3].StateBytes = &g, st.NodeStateBytes[0]
	}
	for gi, gs := range c.plan.GroupingSets {
		n := NodeStatus{ID: fmt.Sprintf("gs_%d", gs.ID)}
		if i, ok := byGS[gi]; ok {
			g := st.Groups[i]
			n.Groups, n.StateBytes = &g, st.NodeStateBytes[i]
			if i == 0 {
				n.In = "layer1_full"
			} else {
				n.PartialBytes = st.NodePreaggBytes[i]
			}
		}
		nodes = append(nodes, n)
	}
	return append(nodes, NodeStatus{ID: "sink", Rows: &rows}), dicts
}
