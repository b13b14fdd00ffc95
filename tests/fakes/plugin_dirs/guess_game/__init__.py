from .guess_game import *
