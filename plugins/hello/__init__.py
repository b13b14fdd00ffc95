from .hello import *
