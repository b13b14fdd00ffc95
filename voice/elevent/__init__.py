"""The `elevent` speech engine."""
