"""The Dify bot (bot_type / model "dify"): client, conversations, answer handling.

Public pieces other parts of the project use:

* ``bot.dify.dify_bot.DifyBot`` - the bot; ``bot.sessions`` is its DifySessionManager
  (``clear_session``, ``clear_all_session``, ``build_session``).
* ``bot.dify.dify_client.get_client(api_base=None, api_key=None)`` - the shared client of an
  app (settings by default), with ``audio_to_text(path, user)`` / ``text_to_audio(text, user)``
  for voice engines; errors are ``bot.dify.errors.DifyError`` subclasses and
  ``bot.dify.errors.user_message(error, chinese)`` words them for users.
"""
