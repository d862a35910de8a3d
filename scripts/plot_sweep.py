#!/usr/bin/env python3
"""Chart of `flashattn bench --sweep --json` runs.

Reads the JSON lines (file arguments, or stdin) and writes a PNG with two
panels against the sequence length (log2 axis): GFLOP/s, with the measured
peak dashed and the unfused baseline dotted, and the fraction of that peak.
One line per (head_dim, causal) series. Forward and backward rows
(`--mode bwd`) get a row of panels each, forward on top.

    flashattn bench --sweep --json > sweep.jsonl
    python3 scripts/plot_sweep.py sweep.jsonl -o sweep.png
    flashattn bench --sweep --json | python3 scripts/plot_sweep.py -o sweep.png
    flashattn bench --sweep --json --mode bwd > bwd.jsonl
    python3 scripts/plot_sweep.py sweep.jsonl bwd.jsonl -o both.png
"""
import argparse
import json
import sys

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)

REQUIRED_KEYS = ("isa", "dtype", "threads", "seqlen_q", "head_dim", "causal", "gflops", "peak_gflops",
                 "fraction_of_peak")
MODE_NAMES = {"fwd": "forward", "bwd": "backward"}  # in panel order


def mode_of(row):
    """"fwd" or "bwd"; rows from before `--mode` existed are forward rows."""
    return row.get("mode", "fwd")


def read_rows(stream, name):
    """The bench rows of `stream`; lines that are not JSON objects are an error."""
    rows = []
    for number, line in enumerate(stream, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise SystemExit(f"plot_sweep: {name}:{number}: not JSON ({e.msg})")
        missing = [key for key in REQUIRED_KEYS if key not in row]
        if missing:
            raise SystemExit(f"plot_sweep: {name}:{number}: missing {', '.join(missing)}"
                             " (expected `flashattn bench --sweep --json` output)")
        if mode_of(row) not in MODE_NAMES:
            raise SystemExit(f"plot_sweep: {name}:{number}: unknown mode {mode_of(row)!r}")
        rows.append(row)
    return rows


def series_of(rows):
    """{(head_dim, causal): rows sorted by seqlen}."""
    series = {}
    for row in rows:
        series.setdefault((row["head_dim"], row["causal"]), []).append(row)
    return {key: sorted(points, key=lambda r: r["seqlen_q"]) for key, points in sorted(series.items())}


def title_of(rows, modes):
    first = rows[0]
    parts = [f"isa {first['isa']}", f"dtype {first['dtype']}", f"{first['threads']} threads"]
    if "batch" in first and "heads" in first:
        parts.append(f"B{first['batch']} H{first['heads']}")
    return f"flashattn {' and '.join(MODE_NAMES[m] for m in modes)}: " + ", ".join(parts)


def plot_panels(speed, fraction, rows, mode):
    """One mode's rows: GFLOP/s on `speed`, fraction of peak on `fraction`."""
    for (head_dim, causal), points in series_of(rows).items():
        seqlens = [r["seqlen_q"] for r in points]
        label = f"d={head_dim} {'causal' if causal else 'non-causal'}"
        line, = speed.plot(seqlens, [r["gflops"] for r in points], marker="o", label=label)
        # The baseline's rate on the same FLOP count: gflops / speedup.
        baseline = [(s, r["gflops"] / r["speedup_vs_baseline"]) for s, r in zip(seqlens, points)
                    if r.get("speedup_vs_baseline")]
        if baseline:
            speed.plot(*zip(*baseline), linestyle=":", color=line.get_color(), label=f"{label}, unfused baseline")
        fraction.plot(seqlens, [r["fraction_of_peak"] for r in points], marker="o", label=label)
    peak = max(r["peak_gflops"] for r in rows)
    path = rows[0].get("path", "")
    speed.axhline(peak, linestyle="--", color="gray", label=f"measured {path} peak ({peak:.0f})")
    seqlens = sorted({r["seqlen_q"] for r in rows})
    flops = "GFLOP/s (kept pairs)" if mode == "fwd" else "GFLOP/s (kept pairs, 2.5x the forward's)"
    for axis, ylabel in ((speed, flops), (fraction, "fraction of peak")):
        axis.set_xscale("log", base=2)
        axis.set_xticks(seqlens, [str(s) for s in seqlens])
        axis.set_xlabel("seqlen (q = k)")
        axis.set_ylabel(ylabel)
        axis.set_ylim(bottom=0)
        axis.grid(True, alpha=0.3)
    fraction.set_ylim(0, max(1.0, max(r["fraction_of_peak"] for r in rows) * 1.05))
    for axis in (speed, fraction):  # below the panels, clear of the lines
        axis.legend(fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=2)


def plot(rows, output):
    modes = [mode for mode in MODE_NAMES if any(mode_of(r) == mode for r in rows)]
    figure, axes = plt.subplots(len(modes), 2, figsize=(13, 6.5 * len(modes)), squeeze=False)
    for (speed, fraction), mode in zip(axes, modes):
        plot_panels(speed, fraction, [r for r in rows if mode_of(r) == mode], mode)
        if len(modes) > 1:
            for axis in (speed, fraction):
                axis.set_title(MODE_NAMES[mode])
    figure.suptitle(title_of(rows, modes))
    figure.tight_layout()
    figure.savefig(output, dpi=110, format="png")


def main(argv=None):
    parser = argparse.ArgumentParser(description="Chart `flashattn bench --sweep --json` output as a PNG.")
    parser.add_argument("inputs", nargs="*", metavar="input",
                        help="files of JSON lines from the bench, e.g. a forward and a backward sweep "
                             "(default, or -: stdin)")
    parser.add_argument("-o", "--output", required=True, help="PNG file to write")
    args = parser.parse_args(argv)
    rows = []
    for name in args.inputs or ["-"]:
        if name == "-":
            rows += read_rows(sys.stdin, "stdin")
        else:
            with open(name, encoding="utf-8") as stream:
                rows += read_rows(stream, name)
    if not rows:
        raise SystemExit(f"plot_sweep: {', '.join(args.inputs) or 'stdin'}: no rows")
    plot(rows, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
