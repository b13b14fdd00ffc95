from .reminder import *
