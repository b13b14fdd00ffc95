from .media_probe import *
