"""Whether `base_url`'s server speaks the other scheme: an https URL for a plain-HTTP server
waits out the whole TLS handshake, and an http URL for a TLS server is cut off, both of which
a client would otherwise retry for minutes as a network failure."""

from __future__ import annotations

import warnings
from urllib.parse import urlsplit, urlunsplit

import requests
from urllib3.exceptions import InsecureRequestWarning

from ...errors import where_to_set

DEFAULT_PORTS = {"http": 80, "https": 443}
# The probe's whole budget: a server on this machine or a LAN answers in milliseconds.
PROBE_TIMEOUT = 2.0


def wrong_scheme_hint(base_url: str) -> str | None:
    """A one-line hint when the server at `base_url`'s host and port answers the other scheme
    (http for https, or the reverse), else None: the failure was something else."""
    parts = urlsplit(base_url)
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    other = "http" if parts.scheme == "https" else "https"
    # The same port: an https URL without one means 443, which the http probe must keep.
    port = parts.port or DEFAULT_PORTS[parts.scheme]
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    probe = urlunsplit((other, f"{host}:{port}", "/", "", ""))
    try:
        # Any HTTP answer proves the scheme, whatever its status; the probe sends no key, and a
        # certificate is not what is asked here.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", InsecureRequestWarning)
            requests.get(probe, timeout=PROBE_TIMEOUT, verify=False, allow_redirects=False)
    except requests.RequestException:
        return None
    suggested = urlunsplit(parts._replace(scheme=other))
    speaks = "plain HTTP, not HTTPS" if other == "http" else "HTTPS (TLS), not plain HTTP"
    return (
        f"{base_url}: the server at {parts.hostname}:{port} speaks {speaks}; set base_url to "
        f"{suggested} ({where_to_set('base_url')})"
    )
