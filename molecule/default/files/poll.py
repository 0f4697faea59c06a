"""Request a URL in a loop until a stop file appears, then print a JSON tally of the answers.

Used to show that publishing a new generation causes no failed request: every answer must be
200. Arguments: URL STOP_FILE [MAX_SECONDS].
"""

import json
import os
import sys
import time
import urllib.error
import urllib.request


def main() -> int:
    url, stop_file = sys.argv[1], sys.argv[2]
    deadline = time.monotonic() + (float(sys.argv[3]) if len(sys.argv) > 3 else 600.0)
    tally: dict[str, int] = {}
    generations: list[str] = []

    while not os.path.exists(stop_file) and time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                outcome = str(response.status)
                generation = json.load(response).get("generation", "")
                if not generations or generations[-1] != generation:
                    generations.append(generation)
        except urllib.error.HTTPError as error:
            outcome = str(error.code)
        except (urllib.error.URLError, OSError) as error:
            outcome = type(error).__name__
        tally[outcome] = tally.get(outcome, 0) + 1
        time.sleep(0.05)

    print(json.dumps({"answers": tally, "generations": generations}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
