"""Status of the custom resources, computed from their children (pure functions)."""
