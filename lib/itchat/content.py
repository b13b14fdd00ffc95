"""itchat's message type names; plugins do ``from lib.itchat.content import *``."""

TEXT = "Text"
MAP = "Map"
CARD = "Card"
NOTE = "Note"
SHARING = "Sharing"
PICTURE = "Picture"
RECORDING = VOICE = "Recording"
ATTACHMENT = "Attachment"
VIDEO = "Video"
FRIENDS = "Friends"
SYSTEM = "System"

INCOME_MSG = [TEXT, MAP, CARD, NOTE, SHARING, PICTURE, RECORDING, VOICE, ATTACHMENT, VIDEO, FRIENDS, SYSTEM]
