from .finish import *
