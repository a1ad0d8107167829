"""Process-wide observability that is not metrics or logs themselves: opt-in error reporting
(:mod:`.sentry`). Generic: nothing here knows VPSie, NodeGroups or controllers by name."""
