"""Small helpers shared by the core modules (and imported by some third-party code)."""
import time
import uuid

__all__ = ["ObjectDict", "generate_guid"]


class ObjectDict(dict):
    """dict whose keys can also be read and written as attributes (payloads read nicer that way)."""

    def __getattr__(self, key):
        # Only called when normal lookup fails, so dict methods keep working.
        if key in self:
            return self[key]
        raise AttributeError(key)

    def __setattr__(self, key, value):
        self[key] = value

    def __delattr__(self, key):
        try:
            del self[key]
        except KeyError:
            raise AttributeError(key) from None


def generate_guid(prefix=""):
    """A 36-character request id. Name-based (uuid3 over the prefix and the clock) like upstream, so
    two calls within one clock tick collide; callers that need uniqueness must check and retry."""
    seed = f"{prefix}{time.time()}"
    return str(uuid.uuid3(uuid.NAMESPACE_URL, seed))
