"""The `linkai` speech engine."""
