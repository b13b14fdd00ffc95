from .needs_package import *
