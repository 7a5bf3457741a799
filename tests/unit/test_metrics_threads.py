"""``Metrics.record`` on the event loop while the Prometheus scrape thread folds the buffers: nothing is lost."""

from __future__ import annotations

import sys
import threading

from lowlat.services import Metrics


def test_record_concurrent_with_scrape_loses_no_sample():
    m = Metrics("race")
    stop = threading.Event()
    errors: list[BaseException] = []

    def scrape() -> None:
        while not stop.is_set():
            try:
                m.snapshot()  # what the Prometheus collector calls from its HTTP thread
            except BaseException as e:  # noqa: BLE001 - reported by the assertion below
                errors.append(e)
                return

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible, so an unlocked window is hit
    th = threading.Thread(target=scrape, daemon=True)
    th.start()
    try:
        n = 200_000
        for i in range(n):
            m.record("stage", 1000 + (i & 1023), 1)
    finally:
        stop.set()
        th.join(30)
        sys.setswitchinterval(old)
    assert not errors, errors
    assert m.stage("stage").count == n
