from .signal_probe import *
