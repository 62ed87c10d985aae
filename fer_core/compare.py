"""Paired comparison of two evaluation reports on the same images (McNemar's exact test); CLI `python -m fer_core.compare`."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from .audit import seen_mask
from .config import cli_main, cli_prog, load_json_file
from .metrics import paired

SIGNIFICANCE = 0.05


class ReportError(ValueError):
    """A report file cannot be read, or two reports do not score the same images; the message says which and why."""


def read_report(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The report in a *.report.json file; `FILE#i` picks the i-th of a file holding a list (as the dashboard lists them)."""
    name, _, index = str(path).partition("#")
    data = load_json_file(name, ReportError)
    items = data if isinstance(data, list) else [data]
    try:
        report = items[int(index or 0)]
    except (ValueError, IndexError):
        raise ReportError(f"{path}: the file holds {len(items)} report(s); pick one as {name}#0 to #{len(items) - 1}") from None
    if not isinstance(report, dict) or not {"split", "n", "accuracy"} <= set(report):
        raise ReportError(f"{path}: not an evaluation report (fer-evaluate --out writes them)")
    return report


def describe(report: dict[str, Any]) -> str:
    """One line naming what a report scored: checkpoint, split and size, TTA, precision, corruption."""
    corrupted = f", corruption {report['corruption']}" if "corruption" in report else ""
    return (f"{Path(str(report.get('checkpoint', '?'))).name} on {report['split']} ({report['n']:,} images), "
            f"TTA {report.get('tta', 'none')}, {report.get('precision', 'fp32')}{corrupted}")


def compare_reports(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """metrics.paired over two reports' per-image answers, once they are known to score the same images (the same
    split, size and true labels in the same order); ReportError otherwise."""
    for name, r in (("A", a), ("B", b)):
        if not isinstance(r.get("predictions"), dict) or not {"y_true", "y_pred"} <= set(r["predictions"]):
            raise ReportError(f"report {name} ({describe(r)}) has no per-image answers; evaluate it again with fer-evaluate")
    ya, yb = a["predictions"]["y_true"], b["predictions"]["y_true"]
    if a["split"] != b["split"] or len(ya) != len(yb) or ya != yb:
        raise ReportError(f"the reports do not score the same images (A: {describe(a)}; B: {describe(b)}), "
                          "so they cannot be compared image by image")
    try:
        result = paired(ya, a["predictions"]["y_pred"], b["predictions"]["y_pred"])
    except ValueError as e:  # a hand-edited report: answers and labels of different lengths
        raise ReportError(str(e)) from None
    return {**result, "split": a["split"], "a": describe(a), "b": describe(b)}


def compare_unseen(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any] | None:
    """compare_reports on the faces Training lacks (the reports' `unseen` blocks, fer_core.audit), or None where either
    report has no such block; ReportError as compare_reports."""
    pair = compare_reports(a, b)  # the same images, or ReportError
    seen_a, seen_b = seen_mask(a), seen_mask(b)
    if seen_a is None or seen_b is None or (seen_a != seen_b).any():
        return None
    rest = np.flatnonzero(~seen_a)
    if not len(rest):
        return None
    def pick(r: dict[str, Any], key: str) -> list[int]:
        return np.asarray(r["predictions"][key])[rest].tolist()

    result = paired(pick(a, "y_true"), pick(a, "y_pred"), pick(b, "y_pred"))
    return {**result, "split": f"{a['split']}'s {len(rest):,} faces that Training lacks", "a": pair["a"], "b": pair["b"]}


def _model_key(r: dict[str, Any]) -> tuple[Any, ...]:
    """What makes two reports evaluations of one model on the same images, bar the inference precision."""
    return r.get("checkpoint"), r["split"], r["n"], r.get("tta", "none")


def same_model_reports(report: dict[str, Any], reports: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Among `reports`, those of report's checkpoint, split, TTA and precision on the same images, one per corruption
    (the newest where a corruption was scored twice), clean first: what `robustness` reads."""
    def key(r: dict[str, Any]) -> tuple[Any, ...]:
        return *_model_key(r), r.get("precision", "fp32")

    truth = (report.get("predictions") or {}).get("y_true")
    newest: dict[str, dict[str, Any]] = {}
    for r in sorted(reports, key=lambda r: str(r.get("created", ""))):
        if key(r) == key(report) and truth is not None and (r.get("predictions") or {}).get("y_true") == truth:
            newest[r.get("corruption", "none")] = r
    return sorted(newest.values(), key=lambda r: r.get("corruption", "none") != "none")


def robustness_sets(reports: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """`reports` gathered into robustness sets, newest first: each one model's clean report and its corrupted ones on
    the same images at one precision (same_model_reports); corrupted reports without a clean one are left out."""
    sets: list[list[dict[str, Any]]] = []
    seen: set[tuple[Any, ...]] = set()
    for r in sorted(reports, key=lambda r: str(r.get("created", "")), reverse=True):
        key = *_model_key(r), r.get("precision", "fp32")
        if r.get("corruption", "none") != "none" and key not in seen:
            seen.add(key)
            family = same_model_reports(r, reports)
            if family[0].get("corruption", "none") == "none":
                sets.append(family)
    return sets


def robustness_set(report: dict[str, Any], reports: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The robustness set `report` belongs to (same_model_reports); where its precision has no corrupted evaluation,
    the newest set of the same model and images at another one (onnx evaluates corruptions about 3x faster)."""
    family = same_model_reports(report, reports)
    if len(family) > 1:
        return family
    truth = (report.get("predictions") or {}).get("y_true")
    for other in robustness_sets(reports):
        if _model_key(other[0]) == _model_key(report) and (other[0].get("predictions") or {}).get("y_true") == truth:
            return other
    return family


def robustness(reports: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows for one model's reports on the same images under several corruptions (fer-evaluate --corruption all): the
    clean report's first, then each corruption's accuracy, macro-F1, drop from clean in points and McNemar's p for it;
    ReportError without a clean report or with reports of other images."""
    clean = [r for r in reports if r.get("corruption", "none") == "none"]
    if not clean:
        raise ReportError("no report of the clean faces among these: evaluate without a corruption first")
    rows = [{"corruption": "none", "accuracy": clean[0]["accuracy"], "macro_f1": clean[0]["macro_f1"], "drop": 0.0,
             "p_value": 1.0}]
    for r in reports:
        if r.get("corruption", "none") != "none":
            pair = compare_reports(clean[0], r)
            rows.append({"corruption": r["corruption"], "accuracy": r["accuracy"], "macro_f1": r["macro_f1"],
                         "drop": 100 * pair["difference"], "p_value": pair["p_value"]})
    return rows


def verdict(result: dict[str, Any], names: tuple[str, str] = ("A", "B")) -> str:
    """The comparison in one sentence: the difference, its interval, the discordant images and what p says."""
    a, b = names
    lo, hi = result["ci95"]
    diff = result["difference"]
    head = (f"{b} is {abs(diff) * 100:.2f} points {'above' if diff >= 0 else 'below'} {a}" if diff
            else f"{a} and {b} score the same")
    meaning = (f"a difference this large would be unlikely if the two were equally accurate (p < {SIGNIFICANCE:g})"
               if result["p_value"] < SIGNIFICANCE else "within the noise of this many images: no evidence either is better")
    return (f"{head} on {result['split']} (95% interval {lo * 100:+.2f} to {hi * 100:+.2f}); {result['only_b']} images "
            f"only {b} gets right, {result['only_a']} only {a}; McNemar's exact p = {result['p_value']:.3g}: {meaning}.")


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=cli_prog("fer_core.compare"),
                                description=__doc__ + " Exits 0 whichever model is better (2: unreadable or unmatched reports).")
    p.add_argument("a", help="report A (*.report.json; FILE#i for the i-th of a file holding several)")
    p.add_argument("b", help="report B, of the same split and data")
    p.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    return p


@cli_main
def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    try:
        a, b = read_report(args.a), read_report(args.b)
        result, unseen = compare_reports(a, b), compare_unseen(a, b)
    except ReportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result | ({"unseen": unseen} if unseen else {})))
        return 0
    print(f"A: {result['a']}\nB: {result['b']}")
    print(f"accuracy A {result['accuracy_a']:.2%}, B {result['accuracy_b']:.2%}; both right {result['both_right']}, "
          f"both wrong {result['both_wrong']}")
    print(verdict(result))
    if unseen:
        print(verdict(unseen))
    return 0


if __name__ == "__main__":
    sys.exit(main())
