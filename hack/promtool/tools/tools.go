//go:build tools

// Package tools pins the Prometheus module whose promtool evaluates the chart's alert rules in tests
// (hack/promtool/build.py builds ./cmd/promtool from it).
package tools

import (
	_ "github.com/prometheus/prometheus/cmd/promtool"
)
