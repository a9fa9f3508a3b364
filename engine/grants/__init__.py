"""engine.grants: writing grants and their refresh schedule (below flows and lifecycle)."""
