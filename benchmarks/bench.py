"""Benchmark the window against what ops would do without it, and print the figures.

Three parts, each optional:

- rename throughput: one host renames N scripts, and updates the hook files naming them,
  with the project's module (one task), with a naive Ansible loop of `command: mv` (one
  task item per script) and with a plain shell loop of `mv` run on the host itself, next to
  bare `os.rename` calls as the floor of the filesystem;
- host scaling: the module's batch on 1, 2, 4 ... hosts at once;
- the whole window on the built-in lab: rehearsal, run and rollback, phase by phase, from
  the run records mwctl writes.

The hosts of the first two parts are containers of the lab's image, started for the
benchmark and removed after it, so the figures are those of a lab host without touching
the lab. Figures go to stdout as tables, to bench.json and to rename.png.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from mwctl.project import Project

IMAGE = "localhost/mwlab-debian12:latest"
# Inside the benchmark's own containers, where /var/tmp survives their start.
BENCH_ROOT = "/var/tmp/mwbench"  # noqa: S108
CONTAINER_PREFIX = "mwbench-"
# Scripts named by one hook file, as the lab's protocols hold a few dozen each.
SCRIPTS_PER_HOOK = 50

# Seeds BENCH_ROOT on a host: N scripts, their hook files, and the rename list as
# "old new" lines for the shell and os.rename variants. Run with python3 on the host.
SEED = r"""
import os, shutil, sys
n, root, per_hook = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
shutil.rmtree(root, ignore_errors=True)
os.makedirs(root + "/scripts"); os.makedirs(root + "/hooks")
for i in range(n):
    with open(f"{root}/scripts/check-{i:06d}-old.sh", "w") as f:
        f.write(f"#!/bin/sh\necho check {i}\n")
for h in range(0, n, per_hook):
    with open(f"{root}/hooks/hook-{h:06d}.yaml", "w") as f:
        names = range(h, min(n, h + per_hook))
        f.writelines(f"- run: scripts/check-{i:06d}-old.sh\n" for i in names)
with open(root + "/list", "w") as f:
    f.writelines(f"scripts/check-{i:06d}-old.sh scripts/check-{i:06d}-new.sh\n" for i in range(n))
"""

# Counts what a variant left: scripts under new names, old names, and hook lines that name
# a new script. Prints "new old refs".
COUNT = r"""
import os, sys
root = sys.argv[1]
names = os.listdir(root + "/scripts")
refs = 0
for hook in os.listdir(root + "/hooks"):
    with open(root + "/hooks/" + hook) as f:
        refs += sum(1 for line in f if "-new.sh" in line)
print(sum(n.endswith("-new.sh") for n in names), sum(n.endswith("-old.sh") for n in names), refs)
"""

SHELL_LOOP = (
    'cd "$1" && s=$(date +%s%N) && while read -r a b; do mv "$a" "$b"; done < list'
    " && e=$(date +%s%N) && echo $(( (e - s) / 1000 ))"
)

OS_RENAME = r"""
import os, sys, time
os.chdir(sys.argv[1])
pairs = [line.split() for line in open("list")]
start = time.perf_counter()
for old, new in pairs:
    os.rename(old, new)
print(int((time.perf_counter() - start) * 1e6))
"""

MODULE_PLAY = """
- name: Rename the benchmark's scripts with the project's module
  hosts: bench
  gather_facts: false
  tasks:
    - name: Apply the batch
      mw_batch_rename:
        root: {root}
        renames: "{{{{ lookup('ansible.builtin.file', '{renames}') | from_json }}}}"
        reference_paths: [hooks]
        batch_id: bench
        journal_dir: {root}-journal
"""

NAIVE_PLAY = """
- name: Rename the benchmark's scripts one task item at a time
  hosts: bench
  gather_facts: false
  tasks:
    - name: Move each script
      ansible.builtin.command:
        argv: [mv, "{root}/{{{{ item.src }}}}", "{root}/{{{{ item.dest }}}}"]
      loop: "{{{{ lookup('ansible.builtin.file', '{renames}') | from_json }}}}"
      changed_when: true
"""


@dataclass
class Measure:
    """One variant at one size: seconds, or why it was not run."""

    variant: str
    scripts: int
    seconds: float | None
    note: str = ""


@dataclass
class Results:
    """Everything one benchmark run measured."""

    machine: dict[str, Any]
    rename: list[Measure] = field(default_factory=list)
    scaling: list[dict[str, Any]] = field(default_factory=list)
    window: list[dict[str, Any]] = field(default_factory=list)


class Bench:
    """The benchmark's containers and the calls made into them."""

    def __init__(self, project: Project, workdir: Path) -> None:
        """Calls on behalf of the checkout, with scratch files in workdir."""
        self.project = project
        self.workdir = workdir
        self.env = {
            **os.environ,
            **project.env(),
            "ANSIBLE_LIBRARY": str(project.root / "roles" / "script_rename" / "library"),
            "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json",
            "ANSIBLE_CALLBACKS_ENABLED": "ansible.posix.json",
        }

    def podman(self, *args: str, stdin: str | None = None) -> str:
        """Run podman; its stdout, or an error naming the command."""
        done = subprocess.run(
            ["podman", *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=self.env,
            check=False,
        )
        if done.returncode != 0:
            msg = f"podman {' '.join(args[:3])} failed: {done.stderr.strip()[-500:]}"
            raise RuntimeError(msg)
        return done.stdout

    @contextmanager
    def hosts(self, count: int) -> Iterator[list[str]]:
        """Start `count` containers of the lab image; remove them however the block ends."""
        names = [f"{CONTAINER_PREFIX}{i}" for i in range(1, count + 1)]
        for name in names:
            subprocess.run(
                ["podman", "rm", "-f", name], capture_output=True, env=self.env, check=False
            )
            self.podman(
                "run", "-d", "--name", name, "--network", "none", IMAGE, "sleep", "infinity"
            )
        try:
            yield names
        finally:
            for name in names:
                subprocess.run(
                    ["podman", "rm", "-f", "-t", "0", name],
                    capture_output=True,
                    env=self.env,
                    check=False,
                )

    def python(self, host: str, code: str, *args: str) -> str:
        """Run a Python program on the host; its stdout."""
        return self.podman("exec", "-i", host, "python3", "-", *args, stdin=code)

    def seed(self, hosts: Sequence[str], scripts: int) -> None:
        """A fresh tree of `scripts` scripts and their hooks on each host, and no journal."""
        for host in hosts:
            self.python(host, SEED, str(scripts), BENCH_ROOT, str(SCRIPTS_PER_HOOK))
            self.podman("exec", host, "rm", "-rf", f"{BENCH_ROOT}-journal")

    def check(self, hosts: Sequence[str], scripts: int, *, references: bool) -> None:
        """Fail unless every script was renamed (and, when asked, every reference updated)."""
        for host in hosts:
            new, old, refs = map(int, self.python(host, COUNT, BENCH_ROOT).split())
            expected_refs = scripts if references else 0
            if (new, old, refs) != (scripts, 0, expected_refs):
                msg = (
                    f"{host}: expected {scripts} renamed scripts, 0 old names and {expected_refs}"
                    f" updated references; found {new}, {old} and {refs}"
                )
                raise RuntimeError(msg)

    def renames_file(self, scripts: int) -> Path:
        """The batch as the module takes it, in a JSON file the play looks up."""
        path = self.workdir / f"renames-{scripts}.json"
        path.write_text(
            json.dumps(
                [
                    {
                        "src": f"scripts/check-{i:06d}-old.sh",
                        "dest": f"scripts/check-{i:06d}-new.sh",
                    }
                    for i in range(scripts)
                ]
            ),
            encoding="utf-8",
        )
        return path

    def play(self, template: str, hosts: Sequence[str], scripts: int) -> float:
        """Run one play on the hosts; the seconds its one task took, first start to last end."""
        playbook = self.workdir / "play.yml"
        playbook.write_text(
            template.format(root=BENCH_ROOT, renames=self.renames_file(scripts)), encoding="utf-8"
        )
        inventory = self.workdir / "hosts.yml"
        inventory.write_text(
            json.dumps(
                {
                    "bench": {
                        "hosts": {h: {} for h in hosts},
                        "vars": {
                            "ansible_connection": "lab_podman",
                            "ansible_python_interpreter": "/usr/bin/python3",
                        },
                    }
                }
            ),
            encoding="utf-8",
        )
        done = subprocess.run(
            ["ansible-playbook", "-i", str(inventory), str(playbook)],
            capture_output=True,
            text=True,
            env=self.env,
            cwd=self.project.root,
            check=False,
        )
        if done.returncode != 0:
            msg = f"the benchmark play failed: {done.stdout[-1500:]}{done.stderr[-1500:]}"
            raise RuntimeError(msg)
        task = json.loads(done.stdout)["plays"][0]["tasks"][0]
        return _iso_seconds(task["task"]["duration"]["end"]) - _iso_seconds(
            task["task"]["duration"]["start"]
        )

    def in_host(self, host: str, variant: str) -> float:
        """Seconds a loop run on the host itself took, as the host's clock measured it."""
        if variant == "shell mv loop":
            micros = self.podman("exec", host, "sh", "-c", SHELL_LOOP, "sh", BENCH_ROOT)
        else:
            micros = self.python(host, OS_RENAME, BENCH_ROOT)
        return int(micros.strip()) / 1e6


def _iso_seconds(stamp: str) -> float:
    return datetime.fromisoformat(stamp).timestamp()


def bench_rename(bench: Bench, sizes: Sequence[int], naive_max: int) -> list[Measure]:
    """Each variant at each size on one host, each from a freshly seeded tree."""
    measures: list[Measure] = []
    with bench.hosts(1) as hosts:
        for scripts in sizes:
            bench.seed(hosts, scripts)
            seconds = bench.play(MODULE_PLAY, hosts, scripts)
            bench.check(hosts, scripts, references=True)
            measures.append(Measure("module (one task)", scripts, seconds))
            _progress(measures[-1])

            if scripts <= naive_max:
                bench.seed(hosts, scripts)
                seconds = bench.play(NAIVE_PLAY, hosts, scripts)
                bench.check(hosts, scripts, references=False)
                measures.append(Measure("naive command: mv loop", scripts, seconds))
            else:
                measures.append(
                    Measure(
                        "naive command: mv loop",
                        scripts,
                        None,
                        f"not run above {naive_max} scripts (--naive-max):"
                        " it costs one task item per script",
                    )
                )
            _progress(measures[-1])

            for variant in ("shell mv loop", "bare os.rename"):
                bench.seed(hosts, scripts)
                seconds = bench.in_host(hosts[0], variant)
                bench.check(hosts, scripts, references=False)
                measures.append(Measure(variant, scripts, seconds))
                _progress(measures[-1])
    return measures


def bench_scaling(bench: Bench, counts: Sequence[int], scripts: int) -> list[dict[str, Any]]:
    """The module's batch of `scripts` renames on 1, 2, 4 ... hosts in one task."""
    rows: list[dict[str, Any]] = []
    with bench.hosts(max(counts)) as all_hosts:
        for count in counts:
            hosts = all_hosts[:count]
            bench.seed(hosts, scripts)
            seconds = bench.play(MODULE_PLAY, hosts, scripts)
            bench.check(hosts, scripts, references=True)
            rows.append({"hosts": count, "scripts_per_host": scripts, "seconds": seconds})
            print(f"  scaling: {count} hosts x {scripts} scripts: {seconds:.2f} s", flush=True)
    return rows


def bench_window(project: Project) -> list[dict[str, Any]]:
    """Rehearsal, run and rollback on a freshly seeded lab; per phase, from the run records."""
    mwctl = str(Path(sys.executable).parent / "mwctl")
    rows: list[dict[str, Any]] = []

    def timed(label: str, *args: str) -> dict[str, Any]:
        start = time.monotonic()
        done = subprocess.run(
            [mwctl, *args, "-q"], cwd=project.root, capture_output=True, text=True, check=False
        )
        wall = time.monotonic() - start
        if done.returncode != 0:
            msg = f"mwctl {' '.join(args)} failed (rc {done.returncode}): {done.stderr[-1500:]}"
            raise RuntimeError(msg)
        run_id = _reported_run(done.stdout) if label != "lab up" else None
        row: dict[str, Any] = {"step": label, "seconds": round(wall, 1), "phases": {}}
        if run_id:
            record = json.loads(
                (project.runs_dir / run_id / "run.json").read_text(encoding="utf-8")
            )
            row["run_id"] = run_id
            # A rollback is recorded in the run it rolls back, beside that run's phases.
            steps = record.get("rollbacks", [])[-1:] if label == "rollback" else record["phases"]
            row["phases"] = {
                p["name"]: round(p["finished"] - p["started"], 1)
                for p in steps
                if p.get("finished") and p.get("started")
            }
        print(f"  {label}: {wall:.0f} s {row['phases']}", flush=True)
        return row

    subprocess.run([mwctl, "lab", "down", "-q"], cwd=project.root, capture_output=True, check=True)
    rows.append(timed("lab up", "lab", "up"))
    rehearsal = timed("rehearsal", "rehearse")
    rows.append(rehearsal)
    window = timed("window", "run", "--from-rehearsal", rehearsal["run_id"])
    rows.append(window)
    rows.append(timed("rollback", "rollback", window["run_id"]))
    return rows


def _reported_run(stdout: str) -> str | None:
    for line in stdout.splitlines():
        if line.startswith("report: ") and line.endswith("/report.md"):
            return Path(line.removeprefix("report: ")).parent.name
    return None


def _progress(measure: Measure) -> None:
    figure = f"{measure.seconds:.3f} s" if measure.seconds is not None else measure.note
    print(f"  {measure.scripts:>6} scripts  {measure.variant:<24} {figure}", flush=True)


def rename_table(measures: Sequence[Measure]) -> str:
    """Markdown table: one row per size, seconds per variant and the module's ratios."""
    sizes = sorted({m.scripts for m in measures})
    by = {(m.variant, m.scripts): m.seconds for m in measures}
    lines = [
        (
            "| scripts | module | naive loop | shell mv loop | os.rename"
            " | naive / module | shell / module |"
        ),
        "|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for n in sizes:
        module = by.get(("module (one task)", n))
        naive = by.get(("naive command: mv loop", n))
        shell = by.get(("shell mv loop", n))
        floor = by.get(("bare os.rename", n))
        lines.append(
            f"| {n} | {_s(module)} | {_s(naive) if naive is not None else 'not run'} | {_s(shell)}"
            f" | {_s(floor)} | {_ratio(naive, module)} | {_ratio(shell, module)} |"
        )
    return "\n".join(lines)


def window_table(rows: Sequence[dict[str, Any]]) -> str:
    """Markdown table: one row per mwctl step, its wall time and its phases' times."""
    phases = sorted({name for row in rows for name in row["phases"]}, key=_phase_order)
    lines = [
        "| step | seconds | " + " | ".join(phases) + " |",
        "|--|--:|" + "--:|" * len(phases),
    ]
    lines += [
        f"| {row['step']} | {row['seconds']:.0f} | "
        + " | ".join(_s(row["phases"].get(p)) for p in phases)
        + " |"
        for row in rows
    ]
    return "\n".join(lines)


def _phase_order(name: str) -> int:
    order = ["preflight", "prepare", "execute", "validate", "recover", "rollback"]
    return order.index(name) if name in order else len(order)


def _s(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}" if value < 100 else f"{value:.0f}"  # noqa: PLR2004


def _ratio(slow: float | None, fast: float | None) -> str:
    if slow is None or not fast:
        return "-"
    return f"{slow / fast:.1f}x"


def plot(measures: Sequence[Measure], scaling: Sequence[dict[str, Any]], out: Path) -> Path | None:
    """rename.png: seconds against scripts per variant (log-log), and seconds against hosts."""
    try:
        import matplotlib as mpl  # noqa: PLC0415

        mpl.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError:
        print("matplotlib is not installed (make bench installs it); no plot written")
        return None
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    for variant in dict.fromkeys(m.variant for m in measures):
        points = [(m.scripts, m.seconds) for m in measures if m.variant == variant and m.seconds]
        if points:
            left.plot(*zip(*points, strict=True), marker="o", label=variant)
    left.set(xscale="log", yscale="log", xlabel="scripts renamed on one host", ylabel="seconds")
    left.set_title("Rename throughput")
    left.legend()
    left.grid(visible=True, which="both", alpha=0.3)
    if scaling:
        right.plot([r["hosts"] for r in scaling], [r["seconds"] for r in scaling], marker="o")
        right.set(
            xlabel="hosts in one task",
            ylabel="seconds",
            title=f"Module batch, {scaling[0]['scripts_per_host']} scripts per host",
            ylim=(0, None),
            xticks=[r["hosts"] for r in scaling],
        )
        right.grid(visible=True, alpha=0.3)
    fig.tight_layout()
    path = out / "rename.png"
    fig.savefig(path, dpi=100)
    return path


def _sizes(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        msg = f"expected a comma-separated list of positive numbers, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return values


def main(argv: Sequence[str] | None = None) -> int:
    """Run the parts asked for and print their figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=_sizes, default=[30, 300, 3000, 10000, 30000])
    parser.add_argument(
        "--naive-max",
        type=int,
        default=300,
        help="largest size the naive loop runs at (it costs a task item per script)",
    )
    parser.add_argument("--hosts", type=_sizes, default=[1, 2, 4, 8])
    parser.add_argument("--scaling-scripts", type=int, default=3000)
    parser.add_argument("--no-window", action="store_true", help="skip the whole-window part")
    parser.add_argument("--out", type=Path, default=Path(".cache/bench"))
    args = parser.parse_args(argv)

    project = Project.locate()
    if shutil.which("podman") is None:
        print("error: podman is not installed; run `make deps` first", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    results = Results(machine={"cpus": os.cpu_count(), "platform": sys.platform})
    with tempfile.TemporaryDirectory(prefix="mwbench-") as tmp:
        bench = Bench(project, Path(tmp))
        print("rename throughput, one host:", flush=True)
        results.rename = bench_rename(bench, args.sizes, args.naive_max)
        print("host scaling:", flush=True)
        results.scaling = bench_scaling(bench, args.hosts, args.scaling_scripts)
    if not args.no_window:
        print("whole window on the lab:", flush=True)
        results.window = bench_window(project)

    (args.out / "bench.json").write_text(
        json.dumps(asdict(results), indent=2) + "\n", encoding="utf-8"
    )
    print("\n" + rename_table(results.rename))
    print("\n| hosts | seconds |\n|--:|--:|")
    for row in results.scaling:
        print(f"| {row['hosts']} | {row['seconds']:.2f} |")
    if results.window:
        print("\n" + window_table(results.window))
    image = plot(results.rename, results.scaling, args.out)
    print(f"\nfigures: {args.out / 'bench.json'}" + (f", plot: {image}" if image else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
