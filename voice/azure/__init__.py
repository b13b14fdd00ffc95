"""The `azure` speech engine."""
