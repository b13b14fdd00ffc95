from .counter import *
