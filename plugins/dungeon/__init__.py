from .dungeon import *
