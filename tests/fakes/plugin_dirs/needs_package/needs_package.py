# encoding:utf-8
# A plugin importing a package nobody installed (plugins often ship no requirements file).
import plugins
import surely_not_installed_pkg  # noqa: F401
from plugins import *


@plugins.register(name="NeedsPackage", desire_priority=0, desc="needs a package", version="0.1", author="tests")
class NeedsPackage(Plugin):
    pass
