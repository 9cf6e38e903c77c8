package relay

import (
	"sync/atomic"
	"time"

	relayv2 "github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/relay"
	"github.com/prometheus/client_golang/prometheus"
)

// tracer forwards the relay's events to libp2p's own metrics tracer (the
// libp2p_relaysvc_* series) and keeps this relay's counts: reservations
// and circuits open now, circuits opened, bytes relayed. libp2p's series
// are process-wide (package-level collectors), ours are per Service.
type tracer struct {
	relayv2.MetricsTracer
	reservations atomic.Int64
	circuits     atomic.Int64
	opened       prometheus.Counter
	bytes        prometheus.Counter
}

func newTracer(reg prometheus.Registerer) *tracer {
	t := &tracer{
		MetricsTracer: relayv2.NewMetricsTracer(relayv2.WithRegisterer(reg)),
		opened: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kez_relay_circuits_opened_total", Help: "Relayed connections opened.",
		}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kez_relay_bytes_total", Help: "Bytes relayed, both directions.",
		}),
	}
	reg.MustRegister(t.opened, t.bytes,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "kez_relay_reservations", Help: "Reservations held now.",
		}, func() float64 { return float64(t.reservations.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "kez_relay_circuits", Help: "Relayed connections open now.",
		}, func() float64 { return float64(t.circuits.Load()) }),
	)
	return t
}

func (t *tracer) ConnectionOpened() {
	t.circuits.Add(1)
	t.opened.Inc()
	t.MetricsTracer.ConnectionOpened()
}

func (t *tracer) ConnectionClosed(d time.Duration) {
	t.circuits.Add(-1)
	t.MetricsTracer.ConnectionClosed(d)
}

func (t *tracer) ReservationAllowed(isRenewal bool) {
	if !isRenewal {
		t.reservations.Add(1)
	}
	t.MetricsTracer.ReservationAllowed(isRenewal)
}

func (t *tracer) ReservationClosed(cnt int) {
	t.reservations.Add(-int64(cnt))
	t.MetricsTracer.ReservationClosed(cnt)
}

func (t *tracer) BytesTransferred(cnt int) {
	t.bytes.Add(float64(cnt))
	t.MetricsTracer.BytesTransferred(cnt)
}
