from .greeter import *
