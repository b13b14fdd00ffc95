from .broken import *
