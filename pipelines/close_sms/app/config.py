"""The `close-sms` command's own settings, resolved the dlt way and checked in one place.

They sit beside the source's settings under `[sources.close_sms]` (environment variables
`SOURCES__CLOSE_SMS__*`, `.dlt/config.toml`, `.dlt/secrets.toml`); the source resolves its own.
"""

from __future__ import annotations

import difflib
import inspect
import os
from pathlib import Path
from urllib.parse import urlparse

import dlt
import tomllib
from dlt.common.configuration import configspec, resolve_configuration
from dlt.common.configuration.exceptions import (
    ConfigValueCannotBeCoercedException,
    ValueNotSecretException,
)
from dlt.common.configuration.providers.toml import TomlProviderReadException
from dlt.common.configuration.specs import BaseConfiguration

from ..errors import ConfigError, exception_chain, one_line, where_to_set
from ..source import check_positive, settings
from ..source.api.client import ClientConfig, CloseClient
from ..source.api.keys import parse_api_keys
from ..source.checks import MISSING_KEY, check_url
from ..warehouse.duckdb_wait import LOCK_WAIT_SECONDS
from .alerts import Alerts, parse_duration
from .doorbell import Doorbell, signature_key_bytes

SECTIONS = ("sources", settings.SOURCE_NAME)

# SMS per extract/normalize/load chunk of a backfill; bounds memory and is the resume granularity.
BACKFILL_CHUNK_SIZE = 50_000
# Seconds between two backfill progress lines when stderr is a log, not a terminal.
PROGRESS_INTERVAL_SECONDS = 5.0
# The command's own requests to Close: a few quick retries, not a sync's patience.
COMMAND_RETRIES = 3
# Seconds between two cycles of `close-sms follow`.
FOLLOW_INTERVAL_SECONDS = 10.0
# The numbers' rules, also used to word a value dlt could not even read as a number.
NUMBER_RULES: dict[str, dict[str, bool]] = {
    "backfill_chunk_size": {"whole": True},
    "progress_interval": {},
    "lock_wait": {"allow_zero": True},
    "follow_interval": {},
}


@configspec
class CommandSettings(BaseConfiguration):
    """What `close-sms` itself reads from `[sources.close_sms]`; the rest is the source's."""

    backfill_chunk_size: int = BACKFILL_CHUNK_SIZE
    """SMS per extract/normalize/load step of a backfill."""
    progress_interval: float = PROGRESS_INTERVAL_SECONDS
    """Seconds between backfill progress lines in a log."""
    lock_wait: float = LOCK_WAIT_SECONDS
    """Seconds to wait for a reader to close the DuckDB file."""
    reader_copy: str | None = None
    """Where a sync publishes a copy of the DuckDB file for readers."""
    notify_url: dlt.TSecretStrValue | None = None
    """A webhook for alerts; it may hold a token, so it is a secret."""
    max_lag: str | None = None
    """Alert when the change feed was read longer ago than this (90s, 30m, 2h, 1d, PT30M)."""
    follow_interval: float = FOLLOW_INTERVAL_SECONDS
    """Seconds between two cycles of `close-sms follow`."""
    webhook_listen: str | None = None
    """Where `close-sms follow` serves Close's webhooks: host:port, or a port on loopback."""
    webhook_signature_key: dlt.TSecretStrValue | None = None
    """The hex signature_key Close returned for the webhook subscription."""
    webhook_subscription_id: str | None = None
    """The subscription `close-sms follow` watches; `close-sms webhook create` sets both."""

    @classmethod
    def read(cls) -> CommandSettings:
        """The settings from the environment and `.dlt/`, checked; raises `ConfigError`."""
        try:
            return resolve_configuration(cls(), sections=SECTIONS)
        except ValueNotSecretException:
            # dlt takes no secret from config.toml; a notify_url there was always honoured.
            notify_url = dlt.config.get(".".join((*SECTIONS, "notify_url")))
            return resolve_configuration(
                cls(), sections=SECTIONS, explicit_value={"notify_url": notify_url}
            )
        except ConfigValueCannotBeCoercedException as exc:
            rules = NUMBER_RULES.get(exc.field_name)
            if rules is not None:
                check_positive(exc.field_name, exc.field_value, **rules)
            raise not_coercible(exc) from None

    def on_resolved(self) -> None:
        """Refuse values that cannot work, each in one line naming where to set it."""
        for name, rules in NUMBER_RULES.items():
            check_positive(name, getattr(self, name), **rules)
        if self.max_lag not in (None, ""):
            try:
                parse_duration(self.max_lag)
            except ValueError as exc:
                raise ConfigError(f"setting max_lag: {exc} ({where_to_set('max_lag')})") from None
        if self.notify_url is not None and not str(self.notify_url).strip():
            self.notify_url = None
        if self.notify_url is not None:
            parsed = urlparse(str(self.notify_url).strip())
            if parsed.scheme not in ("http", "https") or not parsed.hostname:
                # The value is not shown: a webhook URL carries its token.
                raise ConfigError(
                    "setting notify_url is not an http(s) URL "
                    f"({where_to_set('notify_url', secret=True)})"
                )

    def doorbell(self) -> Doorbell | None:
        """The webhook listener `webhook_listen` asks for (not started); raises `ConfigError`."""
        if self.webhook_listen in (None, ""):
            return None
        if self.webhook_signature_key in (None, ""):
            raise ConfigError(
                "setting webhook_listen needs webhook_signature_key, the key Close returned "
                f"for the subscription ({where_to_set('webhook_signature_key', secret=True)})"
            )
        key = signature_key_bytes(str(self.webhook_signature_key))
        try:
            return Doorbell(str(self.webhook_listen), key)
        except OSError as exc:
            raise ConfigError(
                f"cannot listen on webhook_listen = {self.webhook_listen!r}: "
                f"{exc.strerror or exc} ({where_to_set('webhook_listen')})"
            ) from None

    def alerts(self) -> Alerts | None:
        """Where and when to alert; None when no `notify_url` is set."""
        if self.notify_url is None:
            return None
        max_lag = parse_duration(self.max_lag) if self.max_lag not in (None, "") else None
        return Alerts(str(self.notify_url).strip(), max_lag)


def close_client(base_url: str | None, retries: int = COMMAND_RETRIES) -> CloseClient:
    """A client on the sync's first key and base URL, resolved as `close-sms sync` resolves
    them, for the command's own requests (webhook subscriptions, the follower's probe)."""
    section = f"sources.{settings.SOURCE_NAME}"
    raw_key = os.environ.get(f"SOURCES__{settings.SOURCE_NAME.upper()}__API_KEY") or None
    if raw_key is None:
        raw_key = dlt.secrets.get(f"{section}.api_key") or os.environ.get("CLOSE_API_KEY")
    keys = parse_api_keys(raw_key)
    if not keys:
        raise ConfigError(MISSING_KEY)
    url = base_url or dlt.config.get(f"{section}.base_url") or settings.DEFAULT_BASE_URL
    check_url(url)
    return CloseClient(str(url), keys[0], ClientConfig(max_retries=retries))


def not_coercible(exc: ConfigValueCannotBeCoercedException) -> ConfigError:
    """dlt's failure to read a setting as its type, in one line naming where to set it."""
    return ConfigError(
        f"setting {exc.field_name} = {exc.field_value!r} is not a valid "
        f"{getattr(exc.hint, '__name__', exc.hint)} ({where_to_set(exc.field_name)})"
    )


def unreadable_config_file(exc: BaseException) -> ConfigError | None:
    """The one-line cause of a `config.toml` or `secrets.toml` that is not valid TOML, naming
    the file and the line, if `exc` (or what caused it) is dlt's failure to read one."""
    cause = next(
        (e for e in exception_chain(exc) if isinstance(e, TomlProviderReadException)), None
    )
    if cause is None:
        return None
    # dlt names every place it looked, not the file that failed: each is parsed again to find it.
    for path in map(Path, cause.full_paths):
        try:
            tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError):
            continue
        except tomllib.TOMLDecodeError as error:
            return ConfigError(f"{path}: not valid TOML: {error}")
    return ConfigError(f"{cause.file_name} is not valid TOML: {one_line(cause)}")


def known_settings() -> set[str]:
    """Every setting of `[sources.close_sms]`: the source's arguments and the command's own."""
    from ..source import close_sms_source

    arguments = set(inspect.signature(close_sms_source).parameters) - {"progress"}
    return arguments | set(CommandSettings.get_resolvable_fields())


def unknown_settings(known: set[str]) -> list[str]:
    """A warning for each key of `[sources.close_sms]` (in `.dlt/config.toml`, `secrets.toml`
    or `SOURCES__CLOSE_SMS__*`) that is no setting: dlt ignores such a key without a word, so
    a misspelt `backfill_worker = 4` would leave the default in force."""
    found: dict[str, str] = {}
    prefix = f"SOURCES__{settings.SOURCE_NAME.upper()}__"
    for variable in os.environ:
        name = variable[len(prefix) :].lower() if variable.startswith(prefix) else ""
        # A deeper name (SECTION__KEY) is a resource's own section, not a setting.
        if name and "__" not in name:
            found.setdefault(name, variable)
    folder = Path(dlt.current.run_context().settings_dir)
    for file_name in ("config.toml", "secrets.toml"):
        try:
            document = tomllib.loads((folder / file_name).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
            continue
        section = document.get("sources", {}).get(settings.SOURCE_NAME, {})
        for name, value in section.items() if isinstance(section, dict) else ():
            if not isinstance(value, dict):
                found.setdefault(name, f"{folder / file_name} [sources.{settings.SOURCE_NAME}]")
    warnings = []
    for name, where in sorted(found.items()):
        if name not in known:
            closest = difflib.get_close_matches(name, sorted(known), n=1)
            guess = f"; did you mean {closest[0]}?" if closest else ""
            warnings.append(f"{name} ({where}) is no close-sms setting and is ignored{guess}")
    return warnings
