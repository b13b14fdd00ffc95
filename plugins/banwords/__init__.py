from .banwords import *
