package handlers

import (
	"context"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/switchboard-dev/switchboard/realtime"
)

// Metrics are the Prometheus metrics of one server, served at /metrics.
// Labels never hold a raw path, a name or a user: routes are chi's
// patterns, the rest small fixed sets. Metrics is safe for concurrent use;
// its recording methods may be called on a nil *Metrics, which records
// nothing.
type Metrics struct {
	registry    *prometheus.Registry
	requests    *prometheus.HistogramVec
	streamEnds  *prometheus.CounterVec
	lag         prometheus.Histogram
	rpcCalls    *prometheus.HistogramVec
	webhook     *prometheus.HistogramVec
	webhookFail prometheus.Counter
	refusals    *prometheus.CounterVec
	forwards    *prometheus.CounterVec

	// observers caches the request histogram's series by labels, so that
	// a request looks its series up in one map rather than hashing its
	// label values (see observeRequest).
	mu        sync.RWMutex
	observers map[requestLabels]prometheus.Observer
}

// requestLabels are the labels of a request's latency series.
type requestLabels struct {
	method, route string
	status        int
}

// maxObservers bounds the cache of series: the method is the client's,
// so the labels are not a closed set; past the bound, a request's series
// is looked up in the histogram.
const maxObservers = 1024

// Limits are the names of the limits that Refused counts: the variables
// that set them. Each is exported as zero from the start, so that a
// dashboard sees every one.
var Limits = []string{
	"RATE_LIMIT", "MAX_STREAMS_PER_USER", "MAX_SUBSCRIPTIONS_PER_STREAM",
	"MAX_RPC_IN_FLIGHT_PER_USER", "MAX_STREAMS", "MAX_RECORD_BYTES",
	"MAX_COLLECTION_RECORDS", "MAX_BODY_BYTES",
}

// latency buckets, in seconds: 0.5 ms to about 2 min.
var latencyBuckets = prometheus.ExponentialBuckets(0.0005, 4, 10)

// NewMetrics registers the server's metrics, reading the hub's counters
// when scraped.
func NewMetrics(stats *realtime.Stats) *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{
		registry:  reg,
		observers: make(map[requestLabels]prometheus.Observer),
		requests: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "switchboard_http_request_duration_seconds",
			Help:    "HTTP request latency by method, route pattern (\"unmatched\" for no route) and status (an HTTP/1 stream: until its start is written and the writer pool takes it over).",
			Buckets: latencyBuckets,
		}, []string{"method", "route", "status"}),
		streamEnds: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchboard_streams_ended_total",
			Help: "Streams that ended, by reason (client_gone, lifetime, token_expired, drain, slow_consumer, busy, behind, revoked, error).",
		}, []string{"reason"}),
		lag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "switchboard_delivery_lag_seconds",
			Help:    "Time from a change's commit to its dispatch to the subscribed streams' queues on this instance.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}),
		rpcCalls: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "switchboard_rpc_call_duration_seconds",
			Help:    "Time from queueing an RPC call to its end, by outcome (ok, an error code, or gone when the caller left).",
			Buckets: latencyBuckets,
		}, []string{"outcome"}),
		webhook: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "switchboard_auth_webhook_duration_seconds",
			Help:    "Auth webhook calls (POST /auth/login) by result: ok, refused (401/403) or unavailable.",
			Buckets: latencyBuckets,
		}, []string{"result"}),
		webhookFail: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "switchboard_auth_webhook_failures_total",
			Help: "Auth webhook calls that gave no answer usable as an identity or a refusal (timeout, unreachable, 5xx, bad body): logins answered 503 AUTH_UNAVAILABLE.",
		}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchboard_limit_refusals_total",
			Help: "Requests refused by a limit, by the variable that sets it.",
		}, []string{"limit"}),
	}
	m.forwards = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "switchboard_writes_forwarded_total",
		Help: "Writes sent to the sequencer instance (PEER_URL) by outcome: forwarded (answered by it), served_here (not sent whole, or refused by a closing sequencer: served on this instance) or lost (sent, but its answer did not come: 503 UNAVAILABLE).",
	}, []string{"outcome"})
	for _, o := range []string{"forwarded", "served_here", "lost"} {
		m.forwards.WithLabelValues(o)
	}
	for _, l := range Limits {
		m.refusals.WithLabelValues(l)
	}
	for _, r := range []string{"ok", "refused", "unavailable"} {
		m.webhook.WithLabelValues(r)
	}
	reg.MustRegister(
		m.requests, m.streamEnds, m.lag, m.rpcCalls, m.webhook, m.webhookFail, m.refusals, m.forwards,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		gauge("switchboard_streams_open", "Open SSE streams on this instance.", stats.Streams.Load),
		gauge("switchboard_subscriptions", "Subscriptions of the open streams.", stats.Subscriptions.Load),
		counter("switchboard_frames_sent_total", "SSE frames written to streams.", stats.Frames.Load),
		counter("switchboard_frames_dropped_total", "Changes not queued for a stream because its queue was full or it had just ended (the client resumes from its last id).", stats.Dropped.Load),
		counter("switchboard_slow_disconnects_total", "Streams cut because they did not keep up.", stats.SlowDisconnects.Load),
	)
	return m
}

// RegisterSequencer exports whether this instance holds the sequencer's
// lease (PEER_URL).
func (m *Metrics) RegisterSequencer(seq Sequencer) {
	m.registry.MustRegister(gauge("switchboard_sequencer", "1 while this instance is the sequencer (PEER_URL): it commits the writes the other instances forward.", func() int64 {
		if seq.Holds() {
			return 1
		}
		return 0
	}))
}

// forwarded counts a write sent to the sequencer by its outcome.
func (m *Metrics) forwarded(outcome string) {
	if m != nil {
		m.forwards.WithLabelValues(outcome).Inc()
	}
}

func gauge(name, help string, f func() int64) prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 { return float64(f()) })
}

func counter(name, help string, f func() int64) prometheus.Collector {
	return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return float64(f()) })
}

// observeRequest records a request's latency by method, route pattern
// and status.
func (m *Metrics) observeRequest(method, route string, status int, d time.Duration) {
	if m == nil {
		return
	}
	k := requestLabels{method, route, status}
	m.mu.RLock()
	o := m.observers[k]
	m.mu.RUnlock()
	if o == nil {
		o = m.requests.WithLabelValues(method, route, strconv.Itoa(status))
		m.mu.Lock()
		if len(m.observers) < maxObservers {
			m.observers[k] = o
		}
		m.mu.Unlock()
	}
	o.Observe(d.Seconds())
}

// Refused counts a request refused by limit, named by the variable that
// sets it (one of Limits, e.g. "RATE_LIMIT" or "MAX_STREAMS"). The limits'
// middleware calls it with each 429, 503 or 413 it answers.
func (m *Metrics) Refused(limit string) {
	if m == nil {
		return
	}
	m.refusals.WithLabelValues(limit).Inc()
}

// Webhook records one call of the auth webhook (auth.Webhook.Observe).
func (m *Metrics) Webhook(d time.Duration, result string) {
	if m == nil {
		return
	}
	m.webhook.WithLabelValues(result).Observe(d.Seconds())
	if result == "unavailable" {
		m.webhookFail.Inc()
	}
}

// RegisterRPC adds the gauges of the RPC service: the calls of this
// instance waiting for an answer (its part of the RPC queue) and the
// providers' polls waiting for a request.
func (m *Metrics) RegisterRPC(rpc *realtime.RPC) {
	m.registry.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "switchboard_rpc_calls_waiting",
			Help: "RPC calls made on this instance that wait for a provider's answer.",
		}, func() float64 { calls, _ := rpc.Waiting(); return float64(calls) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "switchboard_rpc_polls_waiting",
			Help: "Provider polls (GET /rpc-requests) on this instance that wait for a request.",
		}, func() float64 { _, polls := rpc.Waiting(); return float64(polls) }),
	)
}

// RegisterListener adds the count of reconnects of the Postgres
// notification listener, read from reconnects when scraped.
func (m *Metrics) RegisterListener(reconnects func() int64) {
	m.registry.MustRegister(counter("switchboard_listener_reconnects_total",
		"Times the Postgres notification listener reconnected after losing its connection.", reconnects))
}

// RegisterNotifications adds the counts of the committed groups that this
// instance announced to the others and of the transactions that carried
// them (Postgres), read from notifications when scraped.
func (m *Metrics) RegisterNotifications(notifications func() (groups, transactions int64)) {
	m.registry.MustRegister(
		counter("switchboard_notified_groups_total",
			"Committed write groups this instance announced to the other instances (Postgres).",
			func() int64 { g, _ := notifications(); return g }),
		counter("switchboard_notify_transactions_total",
			"NOTIFY transactions that carried those announcements: groups per transaction is what NOTIFY_INTERVAL gathers; groups that every instance takes from a feed need none.",
			func() int64 { _, t := notifications(); return t }),
	)
}

// RegisterFeed adds the count of the announcements this instance took
// from its feed (Postgres with PEER_URL), and the pace it asks of the
// feed, read from taken and pace when scraped.
func (m *Metrics) RegisterFeed(taken func() int64, pace func() time.Duration) {
	m.registry.MustRegister(
		counter("switchboard_feed_notifications_total",
			"Announcements of the sequencer's commits that this instance took from its feed (Postgres with PEER_URL).", taken),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "switchboard_feed_pace_seconds",
			Help: "How long the sequencer may gather this instance's feed before it writes it: 0 while the instance has a stream or a read waited for the feed within the last second or two, else 0.05 (Postgres with PEER_URL).",
		}, func() float64 { return pace().Seconds() }),
	)
}

// Measures returns the engine's measures: each stream's end is logged
// (stream id, user, duration in ms, frames, bytes, reason) and counted by
// reason; the commit-to-dispatch lag and RPC calls are observed.
func (m *Metrics) Measures(log *slog.Logger) realtime.Measures {
	return realtime.Measures{
		StreamEnd: func(e realtime.StreamEnd) {
			m.streamEnds.WithLabelValues(e.Reason).Inc()
			attrs := []slog.Attr{
				slog.String("stream", e.Stream), slog.String("user", e.User),
				slog.Float64("duration_ms", milliseconds(e.Duration)),
				slog.Int64("frames", e.Frames), slog.Int64("bytes", e.Bytes),
				slog.String("reason", e.Reason),
			}
			if e.Err != nil {
				attrs = append(attrs, slog.String("err", e.Err.Error()))
			}
			log.LogAttrs(context.Background(), slog.LevelInfo, "stream ended", attrs...)
		},
		Lag:     func(d time.Duration) { m.lag.Observe(d.Seconds()) },
		RPCCall: func(d time.Duration, outcome string) { m.rpcCalls.WithLabelValues(outcome).Observe(d.Seconds()) },
	}
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
