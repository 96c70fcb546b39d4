package handlers

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/switchboard-dev/switchboard/realtime"
)

// Metrics are the Prometheus metrics of one server.
type Metrics struct {
	registry *prometheus.Registry
	requests *prometheus.HistogramVec
}

// NewMetrics registers the server's metrics, reading the hub's counters
// when scraped.
func NewMetrics(stats *realtime.Stats) *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{
		registry: reg,
		requests: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "switchboard_http_request_duration_seconds",
			Help:    "HTTP request latency by method, route and status (an HTTP/1 stream: until its start is written and the writer pool takes it over).",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 10),
		}, []string{"method", "route", "status"}),
	}
	gauge := func(name, help string, f func() int64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 { return float64(f()) })
	}
	counter := func(name, help string, f func() int64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return float64(f()) })
	}
	reg.MustRegister(
		m.requests,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		gauge("switchboard_streams_open", "Open SSE streams on this instance.", stats.Streams.Load),
		gauge("switchboard_subscriptions", "Subscriptions of the open streams.", stats.Subscriptions.Load),
		counter("switchboard_frames_sent_total", "SSE frames written to streams.", stats.Frames.Load),
		counter("switchboard_slow_disconnects_total", "Streams cut because they did not keep up.", stats.SlowDisconnects.Load),
	)
	return m
}

// RegisterRules adds the metrics of permission rules: evaluations by
// section, action and result, evaluation errors, and the time spent.
func (m *Metrics) RegisterRules(s *realtime.RuleStats) {
	for _, k := range realtime.RuleKinds() {
		for _, allowed := range []bool{true, false} {
			result := "deny"
			if allowed {
				result = "allow"
			}
			m.registry.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name:        "switchboard_rule_evaluations_total",
				Help:        "Permission decisions by section, action and result.",
				ConstLabels: prometheus.Labels{"section": k.Section, "action": k.Action, "result": result},
			}, func() float64 { return float64(s.Count(k, allowed)) }))
		}
	}
	m.registry.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "switchboard_rule_errors_total",
			Help: "Permission rule evaluations that failed (an error, the cost limit, the deadline, a fourth record() lookup) and so denied.",
		}, func() float64 { return float64(s.Errors.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "switchboard_rule_evaluation_seconds_total",
			Help: "Time spent deciding permissions, record() lookups included.",
		}, func() float64 { return float64(s.Nanos.Load()) / 1e9 }),
	)
}
