from .admin_tool import *
