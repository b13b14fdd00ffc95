from .timer_task import *
