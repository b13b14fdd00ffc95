from .keyword import *
