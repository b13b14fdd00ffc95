from .compat_reply import *
