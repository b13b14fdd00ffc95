"""A fake wechaty puppet service (gRPC `wechaty.Puppet`) and its discovery endpoint."""
from tests.fakes.wechaty.server import FakePuppet, Sent

__all__ = ["FakePuppet", "Sent"]
