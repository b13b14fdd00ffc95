"""Offline stand-ins for outside services.

`sandbox.dify_server.DifyServer` is a local HTTP server speaking the Dify Service API. Tests script it;
`python app.py --cmd --sandbox` runs the bot against it as a clearly labelled offline demo. It lives in
the product (not in tests/) only because that demo imports it; no other production code depends on it.
"""
