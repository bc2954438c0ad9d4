"""The scan-file rules the sensor and the ``scan_latest`` asset use, shared with the scan bridge: they live in
``dolphin.scan_files`` (no Dagster), re-exported here for the code location."""

from dolphin.scan_files import (Cursor, Poll, ScanFile, ScanPublish, acb_scans_between, apply_acb_scans,  # noqa: F401
                                check_arrow, list_scan_files, newest_complete, poll, publish_scan_file)
