"""Ids of requests we send to the hooked WeCom client. Not re-exported by the package root."""

# --- outgoing messages (fire and forget) ----------------------------------------------------------
MT_SEND_TEXT_MSG = 11029
MT_SEND_IMAGE_MSG = 11030
MT_SEND_FILE_MSG = 11031
MT_SEND_LINK_MSG = 11033          # was 11039 in 0.1.1, clashing with the contact-detail query
MT_SEND_CARD_MSG = 11034
MT_SEND_VIDEO_MSG = 11067
MT_SEND_ROOM_AT_MSG = 11069
MT_SEND_GIF_MSG = 11070

# --- queries (answered through a reply carrying our "extend" id) ----------------------------------
MT_GET_SELF_MSG = 11035
MT_GET_INNER_CONTACTS_MSG = 11036
MT_GET_EXTERNAL_CONTACTS_MSG = 11037
MT_GET_ROOMS_MSG = 11038
MT_GET_CONTACT_DETAIL_MSG = 11039
MT_GET_ROOM_MEMBERS_MSG = 11040

# --- media downloads (also queries: the reply comes once the file is on disk) ---------------------
MT_C2CCDN_DOWNLOAD_MSG = 11170    # files shared between WeCom users (cdn.file_id)
MT_WXCDN_DOWNLOAD_MSG = 11171     # files coming from WeChat users (cdn.url + auth_key)
