"""SIGTERM and SIGINT as requests to stop cleanly: finish the step, save a checkpoint, exit with EXIT_CODE.

A cloud preemption notice, `kill PID` and Ctrl-C all arrive as one of these signals. The handler only records the
request; train.py's callback sees it after the step that is running, writes a checkpoint of that exact position and
ends the run with EXIT_CODE (75, EX_TEMPFAIL of sysexits.h: "try again later"). A second Ctrl-C stops at once
(KeyboardInterrupt), losing at most the steps since the last checkpoint.

Usage:
    from safeguards.interruption import StopRequest
    request = StopRequest().install()
    ...
    if request.received:
        save(); raise SystemExit(request.EXIT_CODE)
"""

import signal
import sys

EXIT_CODE = 75  # what train.py exits with after a stop asked by SIGTERM or SIGINT (3 is a stall, 1 an error)


class StopRequest:
    """Records SIGTERM / SIGINT instead of dying on them; `received` is the signal's name once one came."""

    EXIT_CODE = EXIT_CODE

    def __init__(self):
        self.received = None
        self.previous = {}

    def install(self):
        """Take over SIGTERM and SIGINT (main thread only). Returns self."""
        for number in (signal.SIGTERM, signal.SIGINT):
            self.previous[number] = signal.signal(number, self._handle)
        return self

    def uninstall(self):
        """Give SIGTERM and SIGINT their earlier handlers back."""
        for number, handler in self.previous.items():
            signal.signal(number, handler)
        self.previous = {}

    def _handle(self, number, frame):
        if self.received is not None and number == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now
        self.received = signal.Signals(number).name
        print(f"\n{self.received} received: finishing this step, then saving a checkpoint "
              "(Ctrl-C again stops at once)", file=sys.stderr, flush=True)

    def __enter__(self):
        return self.install()

    def __exit__(self, *exception):
        self.uninstall()
        return False
