"""The VPSie cloud: typed async API client, node providers and the VPSie simulator."""
