"""Pure scaling decisions: scale-up and scale-down planners over immutable snapshots."""
