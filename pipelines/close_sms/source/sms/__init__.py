"""The SMS family: reading `/activity/sms/` in date windows, the change feed, and the rows' shape."""
