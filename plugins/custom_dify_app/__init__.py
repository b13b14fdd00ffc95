from .custom_dify_app import *
