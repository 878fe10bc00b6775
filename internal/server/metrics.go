package server

import (
	"context"
	"runtime"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/moatgw/moat/internal/event"
)

// metrics are the gateway's Prometheus metrics, registered on a registry of
// the server's own (never the global one).
type metrics struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	reloads  *prometheus.CounterVec
	reloadTS prometheus.Gauge
	events   *prometheus.CounterVec
	backupTS prometheus.Gauge // last verified scheduled backup
	backupOK prometheus.Gauge
	limited  *prometheus.CounterVec // requests refused by a rate limit
	shed     *prometheus.CounterVec // requests refused by load shedding
}

func newMetrics(version string, snap func() *snapshot) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "moat_requests_total",
			Help: "Requests handled by the gateway, by route and status class (2xx, 4xx...). Route is empty for requests that matched none.",
		}, []string{"route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "moat_request_duration_seconds",
			Help:    "Time from when the request headers have been read to the end of the response, by route.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"route"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "moat_config_reloads_total",
			Help: "Configuration reloads, by result (success or failure).",
		}, []string{"result"}),
		reloadTS: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "moat_config_last_reload_success_timestamp_seconds",
			Help: "Unix time of the last configuration that was loaded successfully.",
		}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "moat_security_events_total",
			Help: "Security events, by kind and outcome.",
		}, []string{"kind", "outcome"}),
	}
	m.limited = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "moat_rate_limited_total",
		Help: "Requests refused with 429 by a rate limit, by route and limit.",
	}, []string{"route", "limit"})
	m.shed = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "moat_shed_total",
		Help: "Requests refused with 503 because too many were in flight, by route and which cap (global or route).",
	}, []string{"route", "cap"})
	m.backupTS = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "moat_backup_last_success_timestamp_seconds",
		Help: "Unix time of the last scheduled backup that was written and verified; 0 until one is.",
	})
	m.backupOK = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "moat_backup_last_verify_ok",
		Help: "1 when the last scheduled backup verified, 0 when it failed or none ran yet.",
	})
	info := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "moat_build_info",
		Help:        "Always 1; labels carry the Moat version and the Go version it was built with.",
		ConstLabels: prometheus.Labels{"version": version, "goversion": runtime.Version()},
	})
	info.Set(1)
	m.reg.MustRegister(m.requests, m.duration, m.reloads, m.reloadTS, m.events, m.backupTS, m.backupOK, m.limited, m.shed, info,
		upstreamCollector{snap},
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// routeMetrics are one route's series, resolved once when a config is
// compiled so the request path does no label lookups.
type routeMetrics struct {
	codes    [6]prometheus.Counter // index: status / 100
	duration prometheus.Observer
}

func (m *metrics) forRoute(name string) *routeMetrics {
	rm := &routeMetrics{duration: m.duration.WithLabelValues(name)}
	for i, c := range []string{"1xx", "1xx", "2xx", "3xx", "4xx", "5xx"} {
		rm.codes[i] = m.requests.WithLabelValues(name, c)
	}
	return rm
}

func (rm *routeMetrics) observe(status int, seconds float64) {
	i := status / 100
	if i < 1 || i > 5 {
		i = 5
	}
	rm.codes[i].Inc()
	rm.duration.Observe(seconds)
}

// countingRecorder counts every event in moat_security_events_total and
// passes it on.
type countingRecorder struct {
	next   event.Recorder
	events *prometheus.CounterVec
}

func (c countingRecorder) Record(ctx context.Context, e event.Event) {
	c.events.WithLabelValues(e.Kind, string(e.Outcome)).Inc()
	c.next.Record(ctx, e)
}

var upstreamHealthy = prometheus.NewDesc("moat_upstream_healthy",
	"1 when an upstream is taking traffic, 0 when it is marked down.",
	[]string{"route", "upstream"}, nil)

// upstreamCollector reports the health of the running snapshot's upstreams
// at scrape time, so routes removed by a reload disappear with them.
type upstreamCollector struct {
	snap func() *snapshot
}

func (c upstreamCollector) Describe(ch chan<- *prometheus.Desc) { ch <- upstreamHealthy }

func (c upstreamCollector) Collect(ch chan<- prometheus.Metric) {
	snap := c.snap()
	if snap == nil {
		return
	}
	for _, r := range snap.list {
		if r.proxy == nil {
			continue
		}
		for _, u := range r.proxy.Upstreams() {
			v := 0.0
			if u.Healthy {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(upstreamHealthy, prometheus.GaugeValue, v, r.name, u.URL)
		}
	}
}
