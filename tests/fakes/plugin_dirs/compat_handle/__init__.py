from .compat_handle import *
