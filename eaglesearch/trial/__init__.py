"""One trial's work, start to end: data → model → stage pipeline → evaluation → cost; and what ``plan`` builds
without training. No Ray, no MLflow: ``execution/`` dispatches and records."""
