"""The one clock: every module that reads the time is handed this, so a test that freezes
`Runtime.clock` freezes all of them (services, stores, the verified-token cache, the mail
sender). Only durations (time.monotonic) and third-party internals (PyJWT's expiry
check, the `limits` windows, Redis's own TIME) keep their own clocks."""

import time
from collections.abc import Callable

# Seconds since the epoch, as time.time() answers them.
Clock = Callable[[], float]

system_clock: Clock = time.time
