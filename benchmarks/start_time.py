"""Start-up CPU time of the listings: `reclip-eval models` (and --help, tasks, recipes, `import reclip_eval`) against
`python -c "import torch"`, each in a fresh process, as the ratio of their median CPU times (user + sys of the child,
from os.wait4, so another process's load on the machine does not count as it would in wall time).

    python benchmarks/start_time.py --runs 7 --out benchmarks/results/start_time_cpu.json
    python benchmarks/start_time.py --runs 7 --source /tmp/reclip-96e3ae0    # another tree, e.g. `git archive REV`

The commands run as `python -m reclip_eval ...` (what the `reclip-eval` script runs) with the source tree first on
PYTHONPATH; the runs of all commands alternate, so that the page cache and the machine's load treat them alike.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

from _common import emit_report

REPO = Path(__file__).resolve().parents[1]
COMMANDS = {
    "reclip-eval models": ["-m", "reclip_eval", "models"],
    "reclip-eval --help": ["-m", "reclip_eval", "--help"],
    "reclip-eval tasks": ["-m", "reclip_eval", "tasks"],
    "reclip-eval recipes": ["-m", "reclip_eval", "recipes"],
    "python -c 'import reclip_eval'": ["-c", "import reclip_eval"],
    "python -c 'import torch'": ["-c", "import torch"],
}
REFERENCE = "python -c 'import torch'"


def cpu_seconds(args: list[str], source: Path) -> float:
    """User + sys CPU seconds of one fresh `python ARGS` process (its children included)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(source), os.environ.get("PYTHONPATH")]))}
    process = subprocess.Popen([sys.executable, *args], cwd=source, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"python {' '.join(args)} exited with {process.returncode}")
    return usage.ru_utime + usage.ru_stime


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=7, help="fresh processes per command (the median is reported)")
    p.add_argument("--source", type=Path, default=REPO, help="the source tree whose reclip_eval is run")
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    cpu_seconds(COMMANDS[REFERENCE], args.source)  # warm the page cache once before timing anything
    seconds: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(args.runs):
        for name, command in COMMANDS.items():
            seconds[name].append(round(cpu_seconds(command, args.source), 4))
    medians = {name: statistics.median(values) for name, values in seconds.items()}
    report = {
        "benchmark": "CPU seconds (user + sys) of a fresh process per command; ratio = median / median of "
                     f"{REFERENCE}",
        "command": " ".join([Path(sys.executable).name, "benchmarks/start_time.py", *(argv or sys.argv[1:])]),
        "source": str(args.source),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "runs": args.runs,
        "seconds": seconds,
        "median_seconds": medians,
        "ratio_to_import_torch": {name: round(m / medians[REFERENCE], 3) for name, m in medians.items()},
    }
    return emit_report(report, args.out)


if __name__ == "__main__":
    raise SystemExit(main())
