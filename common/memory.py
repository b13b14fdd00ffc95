"""Short-lived shared caches (the original's names; plugins import them)."""
from common.expired_dict import ExpiredDict

# session_id -> {"path": image file, "msg": ChatMessage}; the next question may use it.
USER_IMAGE_CACHE = ExpiredDict(60 * 3)
