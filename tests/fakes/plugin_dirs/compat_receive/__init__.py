from .compat_receive import *
