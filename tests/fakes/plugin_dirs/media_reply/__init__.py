from .media_reply import *
