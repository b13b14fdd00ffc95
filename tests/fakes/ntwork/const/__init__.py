"""Numeric message ids on the hook's JSON wire: `notify_type` for what the client reports to us,
`send_type` for what we ask of it."""
