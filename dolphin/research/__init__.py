"""Honest research: validation records, walk-forward validation, the deflated Sharpe ratio.

``records`` is the durable part other steps rely on (GREEN's LONG leg requires a passing record);
``walkforward`` runs ``dolphin validate``.
"""

from dolphin.research.records import (ValidationRecord, config_hash, data_fingerprint, find_records, latest_passing,
                                      save_record, validation_dir)

__all__ = ["ValidationRecord", "config_hash", "data_fingerprint", "find_records", "latest_passing", "save_record",
           "validation_dir"]
