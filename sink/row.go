package sink

// Row is one emitted result: the cumulative value of one group of one grouping set in one window
// (or one step of a cumulative window), as an upsert keyed by its primary key
// (Window, GroupingSet, Start, End, Dims).
type Row struct {
	// Window indexes the cube's windows (cube.Plan.Windows).
	Window int
	// GroupingSet is the cuboid id (cube.GroupingSet.ID).
	GroupingSet uint16
	// Start and End bound the window in Unix milliseconds; for a cumulative window End is the
	// step's end, for a tumbling window the window's end.
	Start, End int64
	// Dims are the values of the grouping set's dimensions, in cube.GroupingSet.Dims order.
	Dims []string
	// Values are the measures in cube.Plan.Measures order; NaN stands for null (the min of a
	// group where the field never had a value).
	Values []float64
	// Version increases with every emission of the cube, across restarts; a replay of the same
	// key writes the same values with a larger version.
	Version uint64
}
