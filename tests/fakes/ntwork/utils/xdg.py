"""Location of the per-version injection helper. The real package ships one file per supported WeCom
version next to its modules; the simulator only computes the path and never opens it."""
import os

_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def get_helper_file(version):
    return os.path.join(_PACKAGE_DIR, "helper", "%s.dat" % version)
