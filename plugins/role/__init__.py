from .role import *
