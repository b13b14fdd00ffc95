"""Libraries the original shipped inside its tree, kept importable for plugins written for it."""
