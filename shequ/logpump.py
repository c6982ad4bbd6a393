"""Run a command and write its output to a rotated log file: `python -m shequ.logpump LOG -- CMD ...`.

`shequ serve` starts dagster-daemon, dagster-webserver and the code server through this, so their output is
rotated while they run (a plain stdout file could only be rotated at a restart, and a daemon that runs for
months writes a few hundred kB a day). Colour escape sequences are removed, so the files read as plain text.
The pump exits with the command's exit code when the command ends (its output pipe closes), so a killed daemon
is seen as a stopped process. Kept free of heavy imports: it runs once per service process.
"""

import logging
import logging.handlers
import re
import signal
import subprocess
import sys

ANSI = re.compile(rb"\x1b\[[0-9;?]*[ -/]*[@-~]")
MAX_BYTES = 5_000_000
BACKUPS = 3


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        print("usage: python -m shequ.logpump LOG -- CMD ...", file=sys.stderr)
        return 2
    handler = logging.handlers.RotatingFileHandler(argv[0], maxBytes=MAX_BYTES, backupCount=BACKUPS,
                                                   encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(message)s"))
    proc = subprocess.Popen(argv[2:], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    def forward(signum, _frame):    # stop: pass the signal on and keep reading until the command has exited
        try:
            proc.send_signal(signum)
        except ProcessLookupError:
            pass

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for raw in iter(proc.stdout.readline, b""):
        line = ANSI.sub(b"", raw).decode("utf-8", errors="replace").rstrip("\n")
        handler.emit(logging.LogRecord("p", logging.INFO, "", 0, line, None, None))
    handler.close()
    return proc.wait()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
