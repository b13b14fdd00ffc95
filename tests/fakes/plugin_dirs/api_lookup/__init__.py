from .api_lookup import *
