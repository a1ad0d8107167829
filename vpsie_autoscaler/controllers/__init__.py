"""Reconcilers that wire the runtime, the Kubernetes adapter, the VPSie client and the planners."""
