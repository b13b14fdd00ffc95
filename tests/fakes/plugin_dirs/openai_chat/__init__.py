from .openai_chat import *
