"""The VPSie simulator behind ``vpsie-autoscaler cloudsim``: VPSie's API, quirks and faults on loopback."""
