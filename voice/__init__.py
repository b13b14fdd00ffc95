"""Speech-to-text and text-to-speech engines (``voice_to_text`` / ``text_to_voice``)."""
