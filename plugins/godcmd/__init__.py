from .godcmd import *
