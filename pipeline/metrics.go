package pipeline

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are the Prometheus series of a Service, labelled by cube.
type metrics struct {
	events          *prometheus.CounterVec
	badEvents       *prometheus.CounterVec
	lateEvents      *prometheus.CounterVec
	emittedRows     *prometheus.CounterVec
	lag             *prometheus.GaugeVec
	watermark       *prometheus.GaugeVec
	stateBytes      *prometheus.GaugeVec
	groups          *prometheus.GaugeVec
	sinkErrors      *prometheus.CounterVec
	checkpoints     *prometheus.CounterVec
	checkpointBytes *prometheus.CounterVec
	redelivered     *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cubed_events_total", Help: "Events decoded and aggregated.",
		}, []string{"cube"}),
		badEvents: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cubed_bad_events_total", Help: "Records that could not be decoded (dead-lettered).",
		}, []string{"cube"}),
		lateEvents: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cubed_late_events_total", Help: "Events behind watermark + allowed lateness for at least one window (dead-lettered).",
		}, []string{"cube"}),
		emittedRows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cubed_emitted_rows_total", Help: "Result rows upserted to the sink.",
		}, []string{"cube"}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "cubed_consumer_lag", Help: "Kafka records behind the partition's high watermark.",
		}, []string{"cube", "partition"}),
		watermark: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "cubed_watermark_seconds", Help: "Event-time watermark, Unix seconds.",
		}, []string{"cube"}),
		stateBytes: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "cubed_state_bytes", Help: "Estimated bytes of aggregation state.",
		}, []string{"cube"}),
		groups: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "cubed_groups", Help: "Groups held in open windows, per layer node.",
		}, []string{"cube", "node"}),
		sinkErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cubed_sink_errors_total", Help: "Failed sink writes (retried).",
		}, []string{"cube"}),
		checkpoints: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cubed_checkpoints_total", Help: "Completed checkpoints.",
		}, []string{"cube"}),
		checkpointBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cubed_checkpoint_bytes_total", Help: "Bytes written by checkpoints.",
		}, []string{"cube"}),
		redelivered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cubed_redelivered_records_total", Help: "Kafka records received again after a rebalance or offset reset, dropped as already counted.",
		}, []string{"cube"}),
	}
	reg.MustRegister(m.checkpoints, m.checkpointBytes, m.redelivered, m.events, m.badEvents, m.lateEvents, m.emittedRows, m.lag, m.watermark,
		m.stateBytes, m.groups, m.sinkErrors,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}
