"""The ``jaxsenti`` command (and ``python -m jaxsenti``).

Loading jax, flax and orbax takes seconds, and a KeyboardInterrupt raised inside a native module's
import can crash the interpreter or be swallowed by the library; so Ctrl-C during the imports is held
until they are done, and then ends the command with one line and exit code 130, as it would later.
"""

import signal
import sys
import threading


def run() -> int:
    caught = []
    held = threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGINT) is signal.default_int_handler
    if held:  # a SIGINT the caller ignores (a background job) stays ignored
        signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        from jaxsenti.xla_options import apply_defaults

        apply_defaults()  # XLA reads XLA_FLAGS once, when jax starts: before anything imports it
        from jaxsenti.cli import main
    finally:
        if held:
            signal.signal(signal.SIGINT, signal.default_int_handler)
    if caught:
        print("jaxsenti: interrupted", file=sys.stderr)
        return 130
    return main(use_compile_cache=True)


if __name__ == "__main__":
    sys.exit(run())
