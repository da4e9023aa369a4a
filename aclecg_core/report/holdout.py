"""The whole hold-out's evidence: ``RUN_DIR/holdout.json`` (the server's probe of round 0's
random-init encoder, the best round's and the final one on all of its probe data, each paired
with round 0) as a table, with the test and validation positives of every class."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from aclecg_core.report.blocks import Section, Table
from aclecg_core.report.fmt import comparison_words, fmt_diff_ci, fmt_int, fmt_score, fmt_score_ci
from aclecg_core.report.runlog import (
    ProbeScores,
    _read_json_file,
    _read_probe,
)

HOLDOUT_FILE = "holdout.json"
ENOUGH_POSITIVES = 30  # a class's test AUROC on fewer positives is weak evidence


@dataclass(frozen=True)
class ProbedEncoder:
    """One probed encoder: its names (``round 0``, ``best``, ``final``; one encoder may be
    several), its round and its probe (``vs_round0``: paired with round 0)."""

    names: list[str]
    round: int
    probe: ProbeScores


@dataclass(frozen=True)
class HoldoutEvidence:
    """Content of ``holdout.json``."""

    classes: list[str]
    n_train: int
    n_val: int
    n_test: int
    positives: dict[str, int]
    val_positives: dict[str, int]
    round_records: dict[str, int]
    encoders: list[ProbedEncoder]

    def named(self, name: str) -> ProbedEncoder | None:
        return next((e for e in self.encoders if name in e.names), None)


def load_holdout_evidence(run_dir: Path) -> HoldoutEvidence | None:
    """``run_dir/holdout.json``, ``None`` when absent; :class:`ReportError` if malformed."""
    read = _read_json_file(Path(run_dir) / HOLDOUT_FILE)
    if read is None:
        return None
    r, d = read
    encoders = []
    for i, raw in enumerate(r.items(d, "encoders", "top level")):
        where = f"encoders[{i}]"
        entry = r.obj(raw, where)
        probe = _read_probe(r, entry, where)
        number = r.count(entry, "round", where)
        if probe is None or number is None:
            raise r.fail(where, "has no round or probe")
        encoders.append(ProbedEncoder([str(n) for n in r.items(entry, "names", where)], number,
                                      probe))

    def counts(key: str) -> dict[str, int]:
        raw = r.obj(d.get(key) or {}, key)
        return {str(k): r.count(raw, k, key) or 0 for k in raw}

    return HoldoutEvidence(
        classes=[str(c) for c in r.items(d, "classes", "top level")],
        n_train=r.count(d, "n_train", "top level") or 0,
        n_val=r.count(d, "n_val", "top level") or 0,
        n_test=r.count(d, "n_test", "top level") or 0,
        positives=counts("positives"), val_positives=counts("val_positives"),
        round_records=counts("round_records"), encoders=encoders)


def _label(e: ProbedEncoder) -> str:
    names = {"round 0": "round 0 (random init)", "best": "best round", "final": "final"}
    return " = ".join(names.get(n, n) for n in e.names)


def verdict(e: HoldoutEvidence) -> str | None:
    """Whether the final encoder beats round 0's on the whole hold-out (paired interval)."""
    final = e.named("final")
    if final is None or final.round == 0 or final.probe.vs_round0 is None:
        return None
    d = final.probe.vs_round0
    if d.auroc_diff_ci is None:
        return None
    return (f"On the whole hold-out the final encoder (round {final.round}) "
            f"{comparison_words(d.auroc_diff_ci)} the random-init encoder of round 0: macro "
            f"AUROC {fmt_diff_ci(d.auroc_diff, d.auroc_diff_ci)}, macro AUPRC "
            f"{fmt_diff_ci(d.auprc_diff, d.auprc_diff_ci)} (paired bootstrap 95 % interval on "
            f"the same {fmt_int(e.n_test)} test records).")


def holdout_section(e: HoldoutEvidence | None) -> Section | None:
    """The section: the encoders' probes on the whole hold-out and every class's positives."""
    if e is None or not e.encoders:
        return None
    rr = e.round_records
    subset = (f"The rounds were probed on a fixed share of it ({fmt_int(rr.get('n_train'))} "
              f"train, {fmt_int(rr.get('n_val'))} validation, {fmt_int(rr.get('n_test'))} test "
              "records; the curve above); the best round is the one with the highest validation "
              "macro AUROC there, never chosen on test."
              if rr and rr.get("n_test") != e.n_test else
              "The best round is the one with the highest validation macro AUROC in the "
              "per-round probe, never chosen on test.")
    rows = []
    for enc in e.encoders:
        p, d = enc.probe, enc.probe.vs_round0
        rows.append([_label(enc), str(enc.round), fmt_score_ci(p.macro_auroc, p.auroc_ci),
                     fmt_score_ci(p.macro_auprc, p.auprc_ci),
                     "–" if d is None else fmt_diff_ci(d.auroc_diff, d.auroc_diff_ci),
                     "–" if p.c is None else f"{p.c:g}"])
    table = Table(["Encoder", "Round", "Macro AUROC [95 % CI]", "Macro AUPRC [95 % CI]",
                   "AUROC − round 0 [paired 95 % CI]", "C"], rows, right={1, 2, 3, 4, 5})
    per_class = Table(
        ["Class", "Test positives", "Validation positives",
         *(f"AUROC {_label(enc)}" for enc in e.encoders)],
        [[c, fmt_int(e.positives.get(c)), fmt_int(e.val_positives.get(c)),
          *(fmt_score(enc.probe.per_class_auroc.get(c)) for enc in e.encoders)]
         for c in e.classes], right=set(range(1, 3 + len(e.encoders))))
    few = [f"{c} ({e.positives.get(c, 0)})" for c in e.classes
           if e.positives.get(c, 0) < ENOUGH_POSITIVES]
    blocks: list[str | Table] = [
        f"The server's linear probe on all of its labeled hold-out: {fmt_int(e.n_train)} train, "
        f"{fmt_int(e.n_val)} validation (chooses C), {fmt_int(e.n_test)} test records, patient-"
        f"disjoint. {subset}",
        table,
    ]
    if (v := verdict(e)) is not None:
        blocks.append(v)
    blocks.append(per_class)
    blocks.append(f"Classes with fewer than {ENOUGH_POSITIVES} positive test records (their AUROC "
                  f"is weak evidence): {', '.join(few)}." if few else
                  f"Every class has at least {ENOUGH_POSITIVES} positive test records.")
    return Section("Evidence on the whole hold-out", blocks)
