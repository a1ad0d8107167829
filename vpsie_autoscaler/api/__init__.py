"""CRD models for ``autoscaler.vpsie.com/v1alpha1``: NodeGroup and VPSieNode."""
