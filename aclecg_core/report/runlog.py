"""A run folder's ``metrics.json`` and ``config.json`` read into typed records.

Every problem raises :class:`ReportError` naming the file and the field.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Interval = tuple[float, float]


class ReportError(ValueError):
    """A run folder whose files cannot be read into a report; the message names the file."""


@dataclass(frozen=True)
class ProbeDifference:
    """A round's probe minus round 0's (the random-init reference) on the same test records,
    with paired bootstrap 95 % intervals (a probe's ``vs_round0``)."""

    auroc_diff: float
    auroc_diff_ci: Interval | None
    auprc_diff: float
    auprc_diff_ci: Interval | None
    n_bootstrap: int | None


@dataclass(frozen=True)
class ProbeScores:
    """The server's linear probe of the global model after one round (``ProbeResult.to_dict()``
    plus ``vs_round0``); ``c``: the regularisation chosen on ``n_val`` validation records."""

    macro_auroc: float
    macro_auprc: float
    auroc_ci: Interval | None
    auprc_ci: Interval | None
    per_class_auroc: dict[str, float]
    per_class_auprc: dict[str, float]
    skipped: list[str]
    n_test: int | None
    n_val: int | None = None
    c: float | None = None
    val_auroc: float | None = None
    vs_round0: ProbeDifference | None = None


@dataclass(frozen=True)
class ClientFit:
    site: str
    loss: float
    num_examples: int
    seconds: float
    samples_per_second: float


@dataclass(frozen=True)
class RoundMetrics:
    round: int
    wall_seconds: float
    clients: list[ClientFit]
    failures: list[tuple[str, str]]
    probe: ProbeScores | None


@dataclass(frozen=True)
class SiteSummary:
    site: str
    records: int | None
    windows: int | None
    fs: float | None
    label_counts: dict[str, int | str]  # small counts suppressed by the site: "<5"
    name: str | None = None  # what the site calls itself (a hospital), when it said

    @property
    def title(self) -> str:
        """``site3 (Georgia)``; the label alone when the name is missing or the same."""
        return self.site if self.name in (None, self.site) else f"{self.site} ({self.name})"


@dataclass(frozen=True)
class RunMetrics:
    """Typed content of ``metrics.json``; optional parts that are absent are ``None`` or empty."""

    name: str
    started: str | None
    finished: str | None
    status: str
    sites: list[SiteSummary]
    rounds: list[RoundMetrics]
    best_round: int | None
    final_round: int | None


class _Reader:
    """Typed accessors over parsed JSON that raise :class:`ReportError` naming file and field."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, where: str, problem: str) -> ReportError:
        return ReportError(f"{self.path}: {where}: {problem}")

    def obj(self, value: Any, where: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(where, f"expected an object, got {type(value).__name__}")
        return value

    def items(self, parent: dict[str, Any], key: str, where: str) -> list[Any]:
        value = parent.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.fail(f"{where}.{key}", f"expected a list, got {type(value).__name__}")
        return value

    def num(self, parent: dict[str, Any], key: str, where: str, default: float | None = None
            ) -> float | None:
        value = parent.get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(f"{where}.{key}", f"expected a number, got {value!r}")
        return float(value)

    def count(self, parent: dict[str, Any], key: str, where: str) -> int | None:
        value = self.num(parent, key, where)
        if value is not None and (not value.is_integer() or value < 0):
            raise self.fail(f"{where}.{key}", f"expected a count, got {parent[key]!r}")
        return None if value is None else int(value)

    def text(self, parent: dict[str, Any], key: str, where: str, default: str) -> str:
        value = parent.get(key)
        if value is None:
            return default
        if not isinstance(value, str):
            raise self.fail(f"{where}.{key}", f"expected a string, got {value!r}")
        return value

    def interval(self, parent: dict[str, Any], key: str, where: str) -> Interval | None:
        value = parent.get(key)
        if value is None:
            return None
        if (not isinstance(value, list | tuple) or len(value) != 2
                or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)):
            raise self.fail(f"{where}.{key}", f"expected [low, high], got {value!r}")
        return float(value[0]), float(value[1])

    def scores(self, parent: dict[str, Any], key: str, where: str) -> dict[str, float]:
        value = self.obj(parent.get(key, {}), f"{where}.{key}")
        return {str(k): _required(self.num(value, k, f"{where}.{key}")) for k in value}


def _read_json_file(path: Path) -> tuple[_Reader, dict[str, Any]] | None:
    """``path``'s top-level JSON object and a reader naming ``path``; ``None`` when the file is
    absent; :class:`ReportError` when it is not a readable JSON object."""
    if not path.exists():
        return None
    r = _Reader(path)
    try:
        return r, r.obj(json.loads(path.read_text(encoding="utf-8")), "top level")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ReportError(f"{path}: cannot be read as JSON: {exc}") from exc


def _required(value: float | None) -> float:
    return math.nan if value is None else value


def _read_difference(r: _Reader, raw: Any, where: str) -> ProbeDifference | None:
    if raw is None:
        return None
    d = r.obj(raw, where)
    return ProbeDifference(
        auroc_diff=_required(r.num(d, "auroc_diff", where)),
        auroc_diff_ci=r.interval(d, "auroc_diff_ci", where),
        auprc_diff=_required(r.num(d, "auprc_diff", where)),
        auprc_diff_ci=r.interval(d, "auprc_diff_ci", where),
        n_bootstrap=r.count(d, "n_bootstrap", where),
    )


def _read_probe(r: _Reader, raw: Any, where: str) -> ProbeScores | None:
    if raw is None:
        return None
    d = r.obj(raw, where)
    n_test = r.count(d, "n_test", where)
    return ProbeScores(
        macro_auroc=_required(r.num(d, "macro_auroc", where)),
        macro_auprc=_required(r.num(d, "macro_auprc", where)),
        auroc_ci=r.interval(d, "auroc_ci", where),
        auprc_ci=r.interval(d, "auprc_ci", where),
        per_class_auroc=r.scores(d, "per_class_auroc", where),
        per_class_auprc=r.scores(d, "per_class_auprc", where),
        skipped=[str(s) for s in r.items(d, "skipped", where)],
        n_test=n_test,
        n_val=r.count(d, "n_val", where),
        c=r.num(d, "c", where),
        val_auroc=r.num(d, "val_auroc", where),
        vs_round0=_read_difference(r, d.get("vs_round0"), f"{where}.vs_round0"),
    )


def _read_round(r: _Reader, raw: Any, where: str) -> RoundMetrics:
    d = r.obj(raw, where)
    number = r.count(d, "round", where)
    if number is None:
        raise r.fail(where, "has no 'round' number")
    clients = []
    for i, c in enumerate(r.items(d, "clients", where)):
        cw = f"{where}.clients[{i}]"
        c = r.obj(c, cw)
        clients.append(ClientFit(
            site=r.text(c, "site", cw, "?"),
            loss=_required(r.num(c, "loss", cw)),
            num_examples=r.count(c, "num-examples", cw) or 0,
            seconds=_required(r.num(c, "seconds", cw)),
            samples_per_second=_required(r.num(c, "samples-per-second", cw)),
        ))
    failures = []
    for i, f in enumerate(r.items(d, "failures", where)):
        fw = f"{where}.failures[{i}]"
        f = r.obj(f, fw)
        failures.append((r.text(f, "site", fw, "?"), r.text(f, "error", fw, "")))
    return RoundMetrics(
        round=number,
        wall_seconds=_required(r.num(d, "wall_seconds", where)),
        clients=clients,
        failures=failures,
        probe=_read_probe(r, d.get("probe"), f"{where}.probe"),
    )


def _suppressed(value: Any) -> bool:
    """A count the site reported only as a bound, e.g. ``"<5"`` (small-count suppression)."""
    return isinstance(value, str) and value.startswith("<")


def _read_site(r: _Reader, raw: Any, where: str) -> SiteSummary:
    d = r.obj(raw, where)
    counts = r.obj(d.get("label_counts") or {}, f"{where}.label_counts")
    return SiteSummary(
        site=r.text(d, "site", where, "?"),
        name=r.text(d, "name", where, "") or None,
        records=r.count(d, "records", where),
        windows=r.count(d, "windows", where),
        fs=r.num(d, "fs", where),
        label_counts={str(k): v if _suppressed(v) else r.count(counts, k, f"{where}.label_counts")
                      or 0 for k, v in counts.items()},
    )


def load_metrics(run_dir: Path) -> RunMetrics:
    """Parse ``run_dir/metrics.json``; :class:`ReportError` naming the file if it is missing or
    malformed. Optional parts (probes, failures, ``finished``, ``best``) may be absent."""
    path = Path(run_dir) / "metrics.json"
    r = _Reader(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ReportError(f"{path}: not found; is {run_dir} a run folder?") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ReportError(f"{path}: cannot be read: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise ReportError(f"{path}: not valid JSON: {exc}") from exc
    top = r.obj(raw, "top level")
    if "rounds" not in top:
        raise r.fail("top level", "has no 'rounds' list")
    run = r.obj(top.get("run") or {}, "run")
    best = r.obj(top.get("best") or {}, "best")
    rounds = [_read_round(r, x, f"rounds[{i}]")
              for i, x in enumerate(r.items(top, "rounds", "top level"))]
    sites = [_read_site(r, x, f"sites[{i}]")
             for i, x in enumerate(r.items(top, "sites", "top level"))]
    final = r.count(top, "final_round", "top level")
    return RunMetrics(
        name=r.text(run, "name", "run", Path(run_dir).name),
        started=r.text(run, "started", "run", "") or None,
        finished=r.text(run, "finished", "run", "") or None,
        status=r.text(run, "status", "run", "unknown"),
        sites=sites,
        rounds=sorted(rounds, key=lambda x: x.round),
        best_round=r.count(best, "round", "best"),
        final_round=final,
    )


def read_run_config(run_dir: Path) -> dict[str, Any] | None:
    """``run_dir/config.json`` as a dict, ``None`` if absent; :class:`ReportError` if malformed."""
    path = Path(run_dir) / "config.json"
    if not path.exists():
        return None
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ReportError(f"{path}: cannot be read as JSON: {exc}") from exc
    return _Reader(path).obj(raw, "top level")
