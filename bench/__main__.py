"""`python -m bench [scenario ...] [--set KEY=VALUE ...]`: run the scenarios, write results."""

import argparse
import resource
import signal
import sys

from . import results
from .scenarios import SCENARIOS


def main() -> None:
    """Run the chosen scenarios (all by default) and write one JSON file for each."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("scenarios", nargs="*", choices=[[], *SCENARIOS], default=[])
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra server environment, e.g. GUNICORN_CMD_ARGS=--worker-class=gevent_wsgi",
    )
    args = parser.parse_args()
    # Stopped from outside, a run still stops the servers, swarms and databases it started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    env = dict(item.split("=", 1) for item in args.env)
    # Thousands of sockets: the server and the swarm inherit the raised limit.
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    summary = {}
    for name in args.scenarios or SCENARIOS:
        figures = SCENARIOS[name](**env)
        path = results.write(name, figures)
        summary[name] = figures["met"]
        print(f"  -> {path.relative_to(path.parents[2])}  target met: {figures['met']}\n")
    print("targets met: " + ", ".join(f"{name} {met}" for name, met in summary.items()))


if __name__ == "__main__":
    main()
