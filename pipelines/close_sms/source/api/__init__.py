"""Talking to Close's API, shared by every family of resources: the HTTP client and the keys."""
