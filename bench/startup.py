"""Seconds from launching SSL Studio to its window on screen: the bundle against the pip install,
cold (the system's file cache dropped first) and warm, median of --repeats.

    python bench/startup.py --program dist/SSLStudio/SSLStudio --program .venv/bin/sslstudio

Runs each program on a virtual X display (Xvfb, started here) with a fresh settings folder and
home, and polls with xdotool for a visible window named "SSL Studio" (every 10 ms); the program
is then closed. Cold starts need root (`echo 3 > /proc/sys/vm/drop_caches`); without it they are
reported as not measured. Needs Debian's xvfb and xdotool.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def drop_caches() -> bool:
    try:
        subprocess.run(["sync"], check=True)
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def time_to_window(program: str, display: str, timeout: float = 120.0) -> float:
    home = Path(tempfile.mkdtemp(prefix="sslstudio-start-"))
    environment = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "DISPLAY": display,
                   "XDG_CONFIG_HOME": str(home / ".config"), "XDG_DATA_HOME": str(home / ".local/share")}
    started = time.monotonic()
    log = open(home / "output.txt", "w")
    process = subprocess.Popen([program], env=environment, stdout=log, stderr=subprocess.STDOUT)
    try:
        while time.monotonic() - started < timeout:
            found = subprocess.run(["xdotool", "search", "--onlyvisible", "--name", "^SSL Studio"],
                                   env={"DISPLAY": display, "PATH": environment["PATH"]},
                                   capture_output=True, text=True)
            if found.stdout.strip():
                return time.monotonic() - started
            if process.poll() is not None:
                output = (home / "output.txt").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{program} exited ({process.returncode}) before showing a window:\n{output}")
            time.sleep(0.01)
        raise RuntimeError(f"no window from {program} within {timeout:.0f} s")
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
        shutil.rmtree(home, ignore_errors=True)  # made above, for this launch only


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--program", action="append", required=True, help="a program that opens the window")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--display", default=":97")
    args = parser.parse_args()
    for tool in ("Xvfb", "xdotool"):
        if shutil.which(tool) is None:
            sys.exit(f"startup: {tool} is needed (Debian: apt-get install xvfb xdotool)")
    server = subprocess.Popen(["Xvfb", args.display, "-screen", "0", "1600x1000x24", "-nolisten", "tcp"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while subprocess.run(["xdotool", "getdisplaygeometry"], env={"DISPLAY": args.display},
                             capture_output=True).returncode != 0:
            if time.monotonic() > deadline:
                sys.exit(f"startup: the X server on {args.display} did not come up")
            time.sleep(0.1)
        print("| program | cold start (median) | warm start (median) |")
        print("| --- | --- | --- |")
        for program in args.program:
            cold, warm = [], []
            for _ in range(args.repeats):
                if drop_caches():
                    cold.append(time_to_window(program, args.display))
                warm.append(time_to_window(program, args.display))
            cold_text = (f"{statistics.median(cold):.2f} s ({', '.join(f'{c:.2f}' for c in cold)})"
                         if cold else "not measured (needs root)")
            print(f"| {program} | {cold_text} | {statistics.median(warm):.2f} s "
                  f"({', '.join(f'{w:.2f}' for w in warm)}) |", flush=True)
    finally:
        server.terminate()
        server.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
