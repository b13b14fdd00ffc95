"""WeChat Official Account channels (reference/channel-protocols.md §1): `wechatmp` answers in the
callback's HTTP response (passive reply), `wechatmp_service` through the customer-service API."""
