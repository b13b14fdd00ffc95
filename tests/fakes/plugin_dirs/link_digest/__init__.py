from .link_digest import *
