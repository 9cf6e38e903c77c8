package web

import (
	"github.com/prometheus/client_golang/prometheus"

	"kez.lat/kez/buildinfo"
)

// buildInfoGauge is kez_build_info{version,revision,go}, always 1: which
// build each server runs, to join with its other series.
func buildInfoGauge(in buildinfo.Info) prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name:        "kez_build_info",
		Help:        "The build of this server (always 1): module version, commit and Go version.",
		ConstLabels: prometheus.Labels{"version": in.Version, "revision": in.Revision, "go": in.Go},
	}, func() float64 { return 1 })
}
