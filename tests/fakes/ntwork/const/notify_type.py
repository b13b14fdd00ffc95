"""Ids of notifications coming from the hooked WeCom client (values fixed by the native side).

Ordered by value. Two pairs share a value on purpose: upstream defines them that way and callers
that register the "wrong" name must still receive the event.
"""

# --- 110xx housekeeping ---------------------------------------------------------------------------
MT_ALL = 11000                    # not sent by the client: every notification is re-emitted here
MT_RECV_WEWORK_QUIT_MSG = 11001   # made up locally when the hook connection drops
MT_READY_MSG = 11024              # {"pid": …}; eaten by the manager to pair client id and instance
MT_USER_LOGIN_MSG = 11026         # payload is the login info dict
MT_USER_LOGOUT_MSG = 11027
MT_RECV_LOGIN_QRCODE_MSG = 11028

# --- received chat content ------------------------------------------------------------------------
MT_RECV_TEXT_MSG = 11041
MT_RECV_IMAGE_MSG = 11042
MT_RECV_VIDEO_MSG = 11043
MT_RECV_VOICE_MSG = 11044         # SILK audio
MT_RECV_FILE_MSG = 11045
MT_RECV_LOCATION_MSG = 11046
MT_RECV_LINK_CARD_MSG = 11047
MT_RECV_EMOTION_MSG = 11048
MT_RECV_RED_PACKET_MSG = 11049
MT_RECV_FRIEND_MSG = 11049        # collides with the red packet id (kept as upstream has it)
MT_RECV_PERSON_CARD_MSG = 11050
MT_RECV_CARD_MSG = 11050          # alias of the personal card id
MT_RECV_OTHER_MSG = 11051
MT_RECV_MIMI_APP_MSG = 11066      # mini program; the misspelling is the public name
MT_RECV_FINDER_MSG = 11124        # Channels ("finder") post
