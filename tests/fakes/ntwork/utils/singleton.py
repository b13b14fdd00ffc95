"""Metaclass giving a class one shared instance per process."""
import threading


class Singleton(type):
    # Keyed by class. Public on purpose: tests take an instance out and put it back to force a
    # fresh construction (e.g. to re-run the manager's version check).
    _instances = {}
    _guard = threading.RLock()

    def __call__(cls, *args, **kwargs):
        existing = Singleton._instances.get(cls)
        if existing is not None:
            return existing
        # Two threads constructing the first WeWork at once must still end up with one manager.
        with Singleton._guard:
            if cls not in Singleton._instances:
                Singleton._instances[cls] = super().__call__(*args, **kwargs)
            return Singleton._instances[cls]
