"""The Dify speech engine (``voice_to_text`` / ``text_to_voice`` = ``dify``)."""
