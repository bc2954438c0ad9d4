"""Alerts: notifications to a generic webhook (JSON POST) and/or Telegram's bot API, configured by environment.

``channels`` delivers (one bounded queue and one background thread per channel, timeouts, rate limit,
de-duplication: ``notify`` never blocks its caller, so a dead channel can never slow a trading process);
``watch`` (`dolphin alerts`) turns what the store and the ledger show into alerts; the Dagster side (run failures,
failed asset checks, the floors results) is ``dolphin_assets.sensors.alerts``.
"""

from dolphin.alerts.channels import (Alert, Dispatcher, TelegramChannel, WebhookChannel, dispatcher_from_env,
                                     redact)

__all__ = ["Alert", "Dispatcher", "TelegramChannel", "WebhookChannel", "dispatcher_from_env", "redact"]
