"""The registered detectors on the Numenta Anomaly Benchmark (NAB v1.1), scored by NAB's own code.

    python -m benchmarks.nab [--nab-dir DIR] [--detectors NAME[:k=v,...] ...] [--jobs 2] [--json]

NAB is not part of this repository. Get it once with::

    git clone https://github.com/numenta/NAB /work/nab     # or anywhere: --nab-dir / NAB_DIR

and install the benchmark extra (NAB's scorer reads its CSVs with pandas)::

    .venv/bin/pip install -e '.[bench]'

What it does, per detector (``detectors.make_detector(name, **params)``, default: ``default``
and every registered model):

- runs it over each of NAB's 58 data files, one value at a time, in file order, through
  ``update(ts, value)`` -- no look-ahead: no min/max of the file, no labels. The window length
  given to the detector is the spacing of the file's first two timestamps (the detector is
  built at the second point, then fed from the first). The verdict's ``score`` (``1 - p``,
  calibrated on the series' own history) is the anomaly score NAB gets;
- scores them with NAB's own code, imported from ``--nab-dir``: its ``Corpus`` and
  ``CorpusLabel`` read the data and ``labels/combined_windows.json``,
  ``nab.optimizer.optimizeThreshold`` finds one threshold per profile across all files (NAB's
  sweeper, as for NAB's own detectors), ``nab.scorer.scoreCorpus`` scores the corpus at it,
  and the result is normalised as ``nab.runner.Runner.normalize`` does:
  ``100 * (score - null) / (perfect - null)``, with ``null`` NAB's null detector (a constant
  0.5) scored the same way and ``perfect`` the number of labelled windows times the profile's
  true-positive weight.

Anchors in the table: a 1000-point rolling z-score computed here (two-sided: ``erf(|z|/√2)``
of the value against the mean and standard deviation of the 1000 points before it), and
NAB's published results from ``results/final_results.json`` of the checkout (windowed
Gaussian, Numenta HTM, ARTime).

NAB's series are not dollars: the money gate of the combiner (``min_excess_*``) decides
``is_anomaly``, which NAB does not read, and what the models learn does not depend on it, so
the scores -- and this table -- are the same with the gate on or off. The models' own money
floors (``min_scale``) only decide their flags (what they protect from learning).

Runs in ``--jobs`` processes (one file per task); about a minute per detector on 2 cores.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_NAB_DIR = "/work/nab"
PROBATIONARY_PERCENT = 0.15  # NAB's (nab.runner.Runner)
ROLLING_Z_WINDOW = 1000
PUBLISHED = (("windowedGaussian", "NAB windowed Gaussian"), ("numenta", "Numenta HTM"), ("ARTime", "ARTime"))
PROFILES = ("standard", "reward_low_FP_rate", "reward_low_FN_rate")


def how_to_get_nab(nab_dir: str) -> str:
    return (f"NAB not found at {nab_dir}. Get it with:\n"
            f"    git clone https://github.com/numenta/NAB {nab_dir}\n"
            "and pass --nab-dir DIR (or set NAB_DIR) if it lives elsewhere; NAB's scorer needs "
            "pandas: .venv/bin/pip install -e '.[bench]'")


def import_nab(nab_dir: str) -> Any:
    """NAB's package from the checkout (never vendored here), with what pandas 2+ broke shimmed."""
    if not (Path(nab_dir) / "nab" / "scorer.py").is_file():
        raise SystemExit(how_to_get_nab(nab_dir))
    try:
        import pandas
    except ImportError:
        raise SystemExit("NAB's scorer needs pandas: .venv/bin/pip install -e '.[bench]'") from None
    if not hasattr(pandas.io.parsers, "read_csv"):  # moved in pandas 2.x
        pandas.io.parsers.read_csv = pandas.read_csv  # type: ignore[attr-defined]
    if nab_dir not in sys.path:
        sys.path.insert(0, nab_dir)
    import nab.corpus
    import nab.labeler
    import nab.optimizer
    import nab.scorer

    # pandas 3 (copy-on-write) refuses CorpusLabel.getLabels' in-place write into a column's
    # values: the same labels (1 inside a window, 0 outside), built without it.
    def get_labels(self: Any) -> None:
        self.labels = {}
        for rel, data_file in self.corpus.dataFiles.items():
            if rel not in self.windows:
                continue
            stamps = data_file.data["timestamp"]
            label = np.zeros(len(stamps), dtype=np.int64)
            for t1, t2 in self.windows[rel]:
                label[((stamps >= t1) & (stamps <= t2)).to_numpy()] = 1
            self.labels[rel] = pandas.DataFrame({"timestamp": stamps, "label": label})

    nab.labeler.CorpusLabel.getLabels = get_labels
    return nab


# -- running detectors ----------------------------------------------------------------------


def _parse(spec: str) -> tuple[str, dict[str, Any]]:
    import yaml

    name, _, rest = spec.partition(":")
    params: dict[str, Any] = {}
    for part in filter(None, rest.split(",")):
        k, sep, v = part.partition("=")
        if not sep:
            raise SystemExit(f"detector {spec!r}: expected key=value, got {part!r}")
        params[k.strip()] = yaml.safe_load(v)
    return name.strip(), params


def _read(path: Path) -> tuple[list[float], list[float]]:
    from datetime import datetime

    ts, vals = [], []
    with open(path) as f:
        next(f)
        for line in f:
            t, _, v = line.strip().partition(",")
            ts.append(datetime.fromisoformat(t).replace(tzinfo=UTC).timestamp())
            vals.append(float(v))
    return ts, vals


def run_file(spec: str, path: str) -> list[float]:
    """Scores of one detector (``NAME[:k=v,...]`` or the ``rolling-z`` anchor) on one file."""
    ts, vals = _read(Path(path))
    if spec == "rolling-z":
        return rolling_z(vals)
    from detectors import make_detector
    from detectors.config import detector_kwargs

    name, params = _parse(spec)
    kwargs = detector_kwargs(name, params)
    # the window length the detector is told: the spacing of the first two points
    window = max(1.0, ts[1] - ts[0]) if len(ts) > 1 else 300.0
    try:
        det = make_detector(name, window_seconds=window, **kwargs)
    except ValueError:
        det = make_detector(name, **kwargs)  # a model without windows
    out = []
    for t, v in zip(ts, vals, strict=True):
        verdict = det.update(t, v)
        out.append(nab_score(verdict.score if verdict.p is None else 1.0 - verdict.p, verdict.p))
    return out


def nab_score(score: float, p: float | None) -> float:
    """The score NAB reads: ``1 - p``, except where a double's ``1 - p`` runs out of digits
    (p < 1e-12, all of it 1.0 by p ~ 1e-16): there ``log10 p`` from -12 to -300 is spread over
    the last 1e-12 below 1, so that the tail still ranks. NAB's result depends only on the
    order of the scores (its threshold is swept over them), so this is scoring by p itself."""
    if p is None or p >= 1e-12:
        return score
    lg = math.log10(p) if p > 0.0 else -324.0
    return 1.0 - 1e-12 * (1.0 - (-12.0 - max(lg, -324.0)) / 312.0)


def rolling_z(vals: list[float]) -> list[float]:
    """Two-sided rolling z-score of each value against the previous ROLLING_Z_WINDOW values."""
    x = np.asarray(vals, dtype=float)
    out = np.zeros(x.size)
    for i in range(2, x.size):
        past = x[max(0, i - ROLLING_Z_WINDOW) : i]
        sd = past.std()
        z = abs(x[i] - past.mean()) / sd if sd > 0 else (0.0 if x[i] == past.mean() else 1e9)
        out[i] = math.erf(z / math.sqrt(2.0))
    return out.tolist()


# -- scoring with NAB's code -----------------------------------------------------------------


class _SerialPool:
    """What ``nab.scorer.scoreCorpus`` needs of a multiprocessing pool, in this process."""

    def map_async(self, f: Any, args: list[Any]) -> Any:
        results = [f(a) for a in args]

        class _Done:
            def get(self, timeout: float | None = None) -> list[Any]:
                return results

        return _Done()


class _ResultFile:
    def __init__(self, data: Any) -> None:
        self.data = data


class _ResultCorpus:
    """A results directory as ``nab.corpus.Corpus`` would read it, held in memory."""

    def __init__(self, label: str, scores: dict[str, list[float]], corpus: Any) -> None:
        import pandas

        self.dataFiles = {}
        for rel, s in scores.items():
            folder, fname = rel.split("/")
            frame = pandas.DataFrame({"timestamp": corpus.dataFiles[rel].data["timestamp"],
                                      "anomaly_score": s})
            self.dataFiles[f"{folder}/{label}_{fname}"] = _ResultFile(frame)


def raw_scores(nab: Any, label: str, scores: dict[str, list[float]], corpus: Any, corpus_label: Any,
               profiles: dict[str, Any]) -> dict[str, tuple[float, float]]:
    """Per profile: the threshold NAB's optimiser picks across all files, and NAB's score there."""
    results = _ResultCorpus(label, scores, corpus)
    out = {}
    for profile in PROFILES:
        cost = profiles[profile]["CostMatrix"]
        with contextlib.redirect_stdout(io.StringIO()):  # the optimiser prints its finding
            best = nab.optimizer.optimizeThreshold((label, cost, results, corpus_label, PROBATIONARY_PERCENT))
        frame = nab.scorer.scoreCorpus(best["threshold"], (
            _SerialPool(), label, profile, cost, "", results, corpus_label, PROBATIONARY_PERCENT, False))
        out[profile] = (float(best["threshold"]), float(frame["Score"].iloc[-1]))
    return out


def normalised(raw: dict[str, tuple[float, float]], null: dict[str, tuple[float, float]],
               profiles: dict[str, Any], tp_count: int) -> dict[str, dict[str, float]]:
    """``nab.runner.Runner.normalize``'s formula: 100 (score - null) / (perfect - null)."""
    out = {}
    for profile, (threshold, score) in raw.items():
        perfect = tp_count * profiles[profile]["CostMatrix"]["tpWeight"]
        base = null[profile][1]
        out[profile] = {"threshold": threshold, "raw": score, "score": 100.0 * (score - base) / (perfect - base)}
    return out


# -- the table -------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nab-dir", default=os.environ.get("NAB_DIR", DEFAULT_NAB_DIR),
                    help="NAB checkout (default: $NAB_DIR or /work/nab)")
    ap.add_argument("--detectors", nargs="*", default=None,
                    help="NAME[:k=v,...]; default: 'default' and every registered model")
    ap.add_argument("--no-anchor", action="store_true", help="skip the rolling z-score anchor")
    ap.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    a = ap.parse_args(argv)

    nab = import_nab(a.nab_dir)
    from detectors import DETECTORS

    specs = a.detectors if a.detectors else ["default", *sorted(n for n in DETECTORS if n != "combined")]
    if not a.no_anchor:
        specs = [*specs, "rolling-z"]
    root = Path(a.nab_dir)
    t0 = time.perf_counter()
    corpus = nab.corpus.Corpus(str(root / "data"))
    labels_path = root / "labels" / "combined_windows.json"
    corpus_label = nab.labeler.CorpusLabel(path=str(labels_path), corpus=corpus)
    with open(root / "config" / "profiles.json") as f:
        profiles = json.load(f)
    files = sorted(rel for rel in corpus.dataFiles if rel in corpus_label.labels)
    print(f"NAB at {root}: {len(files)} files, {sum(len(corpus.dataFiles[r].data) for r in files):,} points",
          file=sys.stderr)

    with open(labels_path) as f:
        tp_count = sum(len(w) for w in json.load(f).values())
    lengths = {rel: len(corpus.dataFiles[rel].data) for rel in files}
    null = raw_scores(nab, "null", {rel: [0.5] * n for rel, n in lengths.items()}, corpus, corpus_label, profiles)
    rows: dict[str, Any] = {}
    with ProcessPoolExecutor(max_workers=max(1, a.jobs)) as pool:
        for i, spec in enumerate(specs):
            t = time.perf_counter()
            futs = {rel: pool.submit(run_file, spec, str(root / "data" / rel)) for rel in files}
            scores = {rel: fut.result() for rel, fut in futs.items()}
            run_s = time.perf_counter() - t
            rows[spec] = normalised(raw_scores(nab, f"d{i}", scores, corpus, corpus_label, profiles),
                                    null, profiles, tp_count)
            rows[spec]["seconds"] = {"run": round(run_s, 1), "total": round(time.perf_counter() - t, 1)}
            print(f"{spec}: standard {rows[spec]['standard']['score']:.1f} "
                  f"({time.perf_counter() - t:.0f}s)", file=sys.stderr, flush=True)
    published = {}
    final = root / "results" / "final_results.json"
    if final.is_file():
        with open(final) as f:
            res = json.load(f)
        published = {label: res[key] for key, label in PUBLISHED if key in res}
    summary = {"nab_dir": str(root), "files": len(files), "seconds": round(time.perf_counter() - t0, 1),
               "detectors": rows, "published": published}
    if a.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(format_table(rows, published))
    return 0


def format_table(rows: dict[str, Any], published: dict[str, Any]) -> str:
    head = f"{'detector':44s} {'standard':>9s} {'low FP':>8s} {'low FN':>8s}  threshold (standard)"
    lines = ["NAB v1.1, normalised scores (NAB's own scorer; one threshold per profile across all files)",
             head, "-" * len(head)]
    for spec, r in rows.items():
        name = "rolling z-score, 1000 points (anchor)" if spec == "rolling-z" else spec
        lines.append(f"{name:44s} {r['standard']['score']:9.1f} {r['reward_low_FP_rate']['score']:8.1f} "
                     f"{r['reward_low_FN_rate']['score']:8.1f}  {r['standard']['threshold']:.10g}")
    for label, r in published.items():
        lines.append(f"{label + ' (published)':44s} {r['standard']:9.1f} {r['reward_low_FP_rate']:8.1f} "
                     f"{r['reward_low_FN_rate']:8.1f}")
    lines.append("The money gate does not change scores (nor what the models learn): NAB's numbers "
                 "are the same with it on or off.")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
