//go:build tools

// Package tools pins Karpenter's kwok cloud provider, the reference the comparison benchmark runs.
package tools

import _ "sigs.k8s.io/karpenter/kwok"
