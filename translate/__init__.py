"""Text translation engines (``translate`` setting; ``Bridge().fetch_translate`` uses them)."""
