"""Running jobs: flow definitions and the runner pool."""
