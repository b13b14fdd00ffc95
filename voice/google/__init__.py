"""The `google` speech engine."""
