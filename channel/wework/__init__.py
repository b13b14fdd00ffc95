"""WeCom (企业微信) through the PC client hook ``ntwork`` (Windows only).

``wework_message`` translates the hook's notifications into ``ChatMessage``s, ``wework_media``
prepares files for the client to send, ``wework_channel`` runs the client session. Nothing here
imports ntwork at import time: the channel imports it when it starts.
"""
