"""Chaos runs: leader kills, VPSie faults and (next) Kubernetes API faults under a changing workload.

See docs/reliability.md. ``make chaos`` runs the full version, ``make test`` the short one.
"""
