"""Interrupt Pool.run_all with SIGINT again and again; exit 1 if shutting the pool down hangs.

Run as a script in its own process: it sends SIGINT to itself, which must not reach pytest.
Each round interrupts a run of many tiny tasks at a different moment, so that the interrupt
lands anywhere in run_all's waiting, including while it holds the futures' locks.
"""

from __future__ import annotations

import faulthandler
import os
import signal
import sys
import threading

from etl.pool import Pool


def square(number: int) -> int:
    return number * number


def main(rounds: int) -> int:
    for round_number in range(rounds):
        pool = Pool(2)
        delay = 0.02 + 0.005 * (round_number % 20)
        threading.Timer(delay, os.kill, (os.getpid(), signal.SIGINT)).start()
        try:
            pool.run_all(square, range(20_000), lambda task, result: None)
            threading.Event().wait(5)  # the run finished first: the timer still fires
        except KeyboardInterrupt:
            pass
        closer = threading.Thread(target=pool.close, kwargs={"kill": True}, daemon=True)
        closer.start()
        closer.join(10)
        if closer.is_alive():
            print(f"round {round_number}: closing the pool hung after SIGINT", flush=True)
            faulthandler.dump_traceback(file=sys.stdout, all_threads=True)  # where it hangs
            return 1
    print(f"{rounds} rounds, no hang", flush=True)
    return 0


if __name__ == "__main__":
    # os._exit: a hung pool would also block the interpreter's exit, which joins its threads.
    os._exit(main(int(sys.argv[1])))
