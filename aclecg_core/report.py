"""The evaluation report of a federated run: ``report.md`` and a self-contained ``report.html``.

Reads ``RUN_DIR/metrics.json`` (required) and ``RUN_DIR/config.json`` (optional), writes the
figures to ``RUN_DIR/plots/`` and both reports to ``RUN_DIR``. The HTML embeds its figures as
base64 data URIs and carries its own CSS, so it can be mailed or archived on its own.
"""

from __future__ import annotations

import base64
import html
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from aclecg_core import plots

Interval = tuple[float, float]


class ReportError(ValueError):
    """A run folder whose files cannot be read into a report; the message names the file."""


# --------------------------------------------------------------------------- reading metrics.json


@dataclass(frozen=True)
class ProbeScores:
    """The server's linear probe of the global model after one round (``ProbeResult.to_dict()``)."""

    macro_auroc: float
    macro_auprc: float
    auroc_ci: Interval | None
    auprc_ci: Interval | None
    per_class_auroc: dict[str, float]
    per_class_auprc: dict[str, float]
    skipped: list[str]
    n_test: int | None


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
    label_counts: dict[str, int]


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


def _required(value: float | None) -> float:
    return math.nan if value is None else value


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


def _read_site(r: _Reader, raw: Any, where: str) -> SiteSummary:
    d = r.obj(raw, where)
    counts = r.obj(d.get("label_counts") or {}, f"{where}.label_counts")
    return SiteSummary(
        site=r.text(d, "site", where, "?"),
        records=r.count(d, "records", where),
        windows=r.count(d, "windows", where),
        fs=r.num(d, "fs", where),
        label_counts={str(k): r.count(counts, k, f"{where}.label_counts") or 0 for k in counts},
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


def load_config(run_dir: Path) -> dict[str, Any] | None:
    """``run_dir/config.json`` as a dict, ``None`` if absent; :class:`ReportError` if malformed."""
    path = Path(run_dir) / "config.json"
    if not path.exists():
        return None
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ReportError(f"{path}: cannot be read as JSON: {exc}") from exc
    return _Reader(path).obj(raw, "top level")


# --------------------------------------------------------------------------- formatting


def fmt_score(x: float | None) -> str:
    """AUROC/AUPRC with 3 decimals, ``–`` when missing."""
    return "–" if x is None or math.isnan(x) else f"{x:.3f}"


def fmt_ci(ci: Interval | None) -> str:
    return "–" if ci is None else f"{ci[0]:.3f}–{ci[1]:.3f}"


def fmt_score_ci(x: float | None, ci: Interval | None) -> str:
    return fmt_score(x) if ci is None else f"{fmt_score(x)} [{fmt_ci(ci)}]"


def fmt_seconds(s: float | None) -> str:
    if s is None or math.isnan(s):
        return "–"
    if s < 60:
        return f"{s:.1f} s"
    if s < 3600:
        return f"{int(s // 60)} min {int(s % 60):02d} s"
    return f"{int(s // 3600)} h {int(s % 3600 // 60):02d} min"


def _fmt_int(n: int | None) -> str:
    return "–" if n is None else f"{n:,}".replace(",", " ")


def _fmt_value(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        return f"{value:g}"
    return json.dumps(value)


def _parse_time(text: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(text) if text else None
    except ValueError:
        return None


def fmt_time(text: str | None) -> str:
    """An ISO timestamp as ``2025-01-01 12:05:30 UTC`` (other offsets kept); raw if unparsable."""
    t = _parse_time(text)
    if t is None:
        return text or "–"
    offset = t.utcoffset()
    zone = "" if offset is None else " UTC" if not offset else t.strftime(" UTC%z")
    return t.strftime("%Y-%m-%d %H:%M:%S") + zone


# --------------------------------------------------------------------------- document model


@dataclass
class Table:
    headers: list[str]
    rows: list[list[str]]
    right: set[int] = field(default_factory=set)  # right-aligned (numeric) column indices
    footer: list[str] | None = None  # a totals row


@dataclass
class Image:
    path: Path
    caption: str


@dataclass
class Tiles:
    """Headline numbers: (label, value, detail)."""

    items: list[tuple[str, str, str]]


@dataclass
class Section:
    title: str
    blocks: list[str | Table | Image | Tiles]


# --------------------------------------------------------------------------- content


def flatten_config(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts to ``{"a.b": value}``; lists and scalars are leaves."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten_config(value, f"{name}."))
        else:
            out[name] = value
    return out


def _config_value(flat: dict[str, Any], name: str) -> Any:
    """The first value whose last dotted component is ``name`` (``run.strategy``: ``strategy``)."""
    return next((v for k, v in flat.items() if k.rsplit(".", 1)[-1] == name), None)


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() not in ("", "off", "none", "false", "no", "0")
    return bool(value)


def dp_statement(flat: dict[str, Any] | None) -> str:
    """Whether the config's ``dp`` mode (``off`` | ``fixed`` | ``adaptive``) turns central
    differential privacy on, and with which ``dp-*`` settings."""
    if flat is None:
        return "Differential privacy: unknown (no config.json in the run folder)."
    mode = _config_value(flat, "dp")
    if mode is None:
        return "Differential privacy: off (the configuration sets no dp mode)."
    if not _truthy(mode):
        return f"Differential privacy: off (dp = {_fmt_value(mode)})."
    settings = [f"{k.rsplit('.', 1)[-1]} = {_fmt_value(v)}" for k, v in flat.items()
                if k.rsplit(".", 1)[-1].startswith("dp-")]
    listed = ", ".join(settings) or "default settings"
    return (f"Differential privacy: on (dp = {_fmt_value(mode)}; {listed})."
            " The server clips each site's update and adds Gaussian noise to the aggregate: this "
            "protects the released global model, while the server itself receives the sites' "
            "un-noised updates.")


def _final_probe(m: RunMetrics) -> RoundMetrics | None:
    probed = [rd for rd in m.rounds if rd.probe is not None]
    final = [rd for rd in probed if rd.round == m.final_round]
    return final[0] if final else (probed[-1] if probed else None)


def _best_probe(m: RunMetrics) -> RoundMetrics | None:
    probed = [rd for rd in m.rounds if rd.probe is not None]
    named = [rd for rd in probed if rd.round == m.best_round]
    if named:
        return named[0]
    scored = [rd for rd in probed if rd.probe and not math.isnan(rd.probe.macro_auroc)]
    return max(scored, key=lambda rd: rd.probe.macro_auroc if rd.probe else 0.0, default=None)


def _wall_time(m: RunMetrics) -> float:
    """Finished minus started when both are known, else the sum of the rounds' wall times."""
    start, end = _parse_time(m.started), _parse_time(m.finished)
    if start and end:
        try:
            return (end - start).total_seconds()
        except TypeError:  # one naive, one aware
            pass
    return sum(rd.wall_seconds for rd in m.rounds if not math.isnan(rd.wall_seconds))


def _method(flat: dict[str, Any] | None) -> str:
    if flat is None:
        return "not recorded (no config.json)"
    parts = [f"{name} {_fmt_value(v)}" for name in ("method", "strategy", "encoder", "aggregate")
             if (v := _config_value(flat, name)) is not None]
    return ", ".join(parts) or "not recorded in config.json"


def _headline(m: RunMetrics, flat: dict[str, Any] | None) -> Section:
    final, best = _final_probe(m), _best_probe(m)
    probed = [rd for rd in m.rounds if rd.probe is not None]
    tiles: list[tuple[str, str, str]] = []
    if final and final.probe:
        p = final.probe
        which = "Final" if m.status == "finished" and final.round == m.final_round else "Latest"
        tiles.append((f"{which} macro AUROC", fmt_score(p.macro_auroc),
                      f"95 % CI {fmt_ci(p.auroc_ci)} · round {final.round}"))
        tiles.append((f"{which} macro AUPRC", fmt_score(p.macro_auprc),
                      f"95 % CI {fmt_ci(p.auprc_ci)} · round {final.round}"))
    if best and best.probe:
        tiles.append(("Best macro AUROC", fmt_score(best.probe.macro_auroc),
                      f"round {best.round} · AUPRC {fmt_score(best.probe.macro_auprc)}"))
    if final and final.probe and probed[0] is not final and probed[0].probe:
        first = probed[0].probe
        delta = final.probe.macro_auroc - first.macro_auroc
        tiles.append((f"AUROC change, round {probed[0].round} → {final.round}",
                      "–" if math.isnan(delta) else f"{delta:+.3f}",
                      f"{fmt_score(first.macro_auroc)} → {fmt_score(final.probe.macro_auroc)}"))
    trained = [rd for rd in m.rounds if rd.round > 0]
    planned = _config_value(flat or {}, "num-server-rounds")
    tiles.append(("Wall time" if m.finished else "Wall time so far", fmt_seconds(_wall_time(m)),
                  f"{len(trained)} training round{'s' * (len(trained) != 1)}"
                  + (f" of {planned}" if isinstance(planned, int) else "")))
    tiles.append(("Status", m.status,
                  f"finished {fmt_time(m.finished)}" if m.finished else "not finished"))
    probe_data = "–"
    if final and final.probe:
        source = (flat or {}).get("probe.source")
        probe_data = f"{_fmt_int(final.probe.n_test)} test records" + (
            f" ({source}; server-held)" if source else "")

    facts = Table(["", ""], [
        ["Run", m.name],
        ["Method", _method(flat)],
        ["Sites", f"{len(m.sites)}: {', '.join(s.site for s in m.sites)}" if m.sites else "–"],
        ["Rounds recorded", f"{len(m.rounds)} (final round {m.final_round})"
         if m.final_round is not None else str(len(m.rounds))],
        ["Started", fmt_time(m.started)],
        ["Finished", fmt_time(m.finished)],
        ["Probe data", probe_data],
    ])
    blocks: list[str | Table | Image | Tiles] = []
    if m.status != "finished":
        blocks.append(f"This run's status is “{m.status}”: the report covers the {len(m.rounds)} "
                      "rounds recorded so far.")
    if not probed:
        blocks.append("No round has a probe result yet, so there are no AUROC/AUPRC numbers.")
    blocks += [Tiles(tiles), facts]
    return Section("Summary", blocks)


def _probe_section(m: RunMetrics, plots_dir: Path) -> Section | None:
    probed = [rd for rd in m.rounds if rd.probe is not None]
    if not probed:
        return None
    series = {
        "Macro AUROC": ([rd.probe.macro_auroc for rd in probed if rd.probe],
                        [rd.probe.auroc_ci for rd in probed if rd.probe]),
        "Macro AUPRC": ([rd.probe.macro_auprc for rd in probed if rd.probe],
                        [rd.probe.auprc_ci for rd in probed if rd.probe]),
    }
    best = _best_probe(m)
    path = plots.plot_probe_curves([rd.round for rd in probed], series,
                                   best.round if best else None, plots_dir / "probe.png")
    return Section("Server probe", [
        "Linear probe of the global encoder on the server's test split after each probed round "
        "(round 0: the initial, untrained encoder). Shaded: bootstrap 95 % confidence interval.",
        Image(path, "Probe macro AUROC and AUPRC vs round"),
    ])


def _training_section(m: RunMetrics, plots_dir: Path) -> Section | None:
    if not m.rounds:
        return None
    trained = [rd for rd in m.rounds if rd.clients or rd.failures]
    sites = sorted({c.site for rd in trained for c in rd.clients})
    losses = {  # nan where a site did not train, so its line breaks there
        site: ([rd.round for rd in trained],
               [next((c.loss for c in rd.clients if c.site == site), math.nan) for rd in trained])
        for site in sites
    }
    blocks: list[str | Table | Image | Tiles] = []
    if losses:
        blocks.append(Image(plots.plot_site_loss(losses, plots_dir / "site-loss.png"),
                            "Local training loss of each site vs round"))
    blocks.append(Image(plots.plot_round_time([rd.round for rd in m.rounds],
                                              [rd.wall_seconds for rd in m.rounds],
                                              [bool(rd.failures) for rd in m.rounds],
                                              plots_dir / "round-time.png"),
                        "Wall time of each round (training, aggregation, probe, checkpoint)"))
    return Section("Training", blocks)


def _per_class_section(m: RunMetrics, plots_dir: Path) -> Section | None:
    final = _final_probe(m)
    if final is None or final.probe is None or not final.probe.per_class_auroc:
        return None
    p = final.probe
    labels = sorted(p.per_class_auroc, key=lambda k: -p.per_class_auroc[k])
    path = plots.plot_per_class(labels, [p.per_class_auroc[k] for k in labels],
                                [None] * len(labels), "AUROC", plots_dir / "per-class-auroc.png")
    table = Table(["Class", "AUROC", "AUPRC"],
                  [[k, fmt_score(p.per_class_auroc[k]), fmt_score(p.per_class_auprc.get(k))]
                   for k in labels], right={1, 2})
    blocks: list[str | Table | Image | Tiles] = [
        f"Probe of the model after round {final.round} on {_fmt_int(p.n_test)} test records. "
        "Dashed line: chance (AUROC 0.5).",
        Image(path, f"Per-class AUROC, round {final.round}"),
        table,
    ]
    if p.skipped:
        blocks.append("Left out of the macro averages (no positives or no negatives in the test "
                      f"split): {', '.join(p.skipped)}.")
    return Section("Per-class results of the final model", blocks)


def _label_mix(site: SiteSummary, top: int = 5) -> str:
    counts = sorted(site.label_counts.items(), key=lambda kv: (-kv[1], kv[0]))
    if not counts:
        return "–"
    total = site.records or sum(site.label_counts.values())
    parts = [f"{k} {v} ({100 * v / total:.0f} %)" if total else f"{k} {v}"
             for k, v in counts[:top]]
    if len(counts) > top:
        parts.append(f"+{len(counts) - top} more")
    return ", ".join(parts)


def _sites_section(m: RunMetrics) -> Section:
    if not m.sites:
        return Section("Sites", ["No site summaries recorded."])
    rows = [[s.site, _fmt_int(s.records), _fmt_int(s.windows),
             "–" if s.fs is None else f"{s.fs:g} Hz", _label_mix(s)] for s in m.sites]
    footer = None
    if len(m.sites) > 1:
        records = [s.records for s in m.sites]
        windows = [s.windows for s in m.sites]
        footer = ["Total", _fmt_int(None if None in records else sum(r or 0 for r in records)),
                  _fmt_int(None if None in windows else sum(w or 0 for w in windows)), "", ""]
    return Section("Sites", [
        Table(["Site", "Records", "Windows", "Sampling rate", "Label mix (records)"], rows,
              right={1, 2, 3}, footer=footer),
    ])


def _rounds_section(m: RunMetrics) -> Section:
    rows = []
    for rd in m.rounds:
        examples = sum(c.num_examples for c in rd.clients)
        losses = [(c.loss, c.num_examples) for c in rd.clients if not math.isnan(c.loss)]
        weight = sum(n for _, n in losses)
        loss = (sum(x * n for x, n in losses) / weight if weight
                else sum(x for x, _ in losses) / len(losses) if losses else math.nan)
        p = rd.probe
        initial = rd.round == 0 and not rd.clients
        rows.append(["0 (initial)" if initial else str(rd.round),
                     "" if initial else str(len(rd.clients)),
                     str(len(rd.failures)) if rd.failures
                     else "", _fmt_int(examples) if rd.clients else "",
                     "" if math.isnan(loss) else f"{loss:.3f}", fmt_seconds(rd.wall_seconds),
                     fmt_score_ci(p.macro_auroc, p.auroc_ci) if p else "",
                     fmt_score_ci(p.macro_auprc, p.auprc_ci) if p else ""])
    return Section("Rounds", [
        "Loss: mean client training loss weighted by examples. Probe columns: macro score "
        "[bootstrap 95 % CI]; empty where the round was not probed.",
        Table(["Round", "Clients", "Failed", "Examples", "Loss", "Wall time",
               "Macro AUROC [95 % CI]", "Macro AUPRC [95 % CI]"], rows, right=set(range(8))),
    ] if rows else ["No rounds recorded yet."])


def _failures_section(m: RunMetrics) -> Section:
    rows = [[str(rd.round), site, error] for rd in m.rounds for site, error in rd.failures]
    if not rows:
        return Section("Failures", ["No client failures."])
    return Section("Failures", [
        f"{len(rows)} client failure{'s' * (len(rows) != 1)}; failed replies were left out of "
        "aggregation for that round.",
        Table(["Round", "Site", "Error"], rows, right={0}),
    ])


def _config_section(flat: dict[str, Any] | None) -> Section:
    if flat is None:
        return Section("Configuration", ["No config.json in the run folder."])
    return Section("Configuration", [
        "Snapshot of the validated run configuration (config.json).",
        Table(["Setting", "Value"], [[k, _fmt_value(v)] for k, v in flat.items()]),
    ])


def _privacy_section(flat: dict[str, Any] | None) -> Section:
    return Section("Privacy", [
        "What left the sites: the locally trained model weights after each round, per-round "
        "training metrics (loss, number of examples, time, throughput) and the aggregate counts "
        "in the sites table. No ECG signal, record identifier or patient metadata left a site.",
        dp_statement(flat),
    ])


# --------------------------------------------------------------------------- rendering


def _md_cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def render_markdown(title: str, sections: Sequence[Section], base: Path) -> str:
    """Markdown with images linked relative to ``base`` (the run folder)."""
    out = [f"# {title}", ""]
    for section in sections:
        out += [f"## {section.title}", ""]
        for block in section.blocks:
            if isinstance(block, str):
                out += [block, ""]
            elif isinstance(block, Tiles):
                out += [f"- **{k}**: {v} ({d})" for k, v, d in block.items]
                out.append("")
            elif isinstance(block, Image):
                out += [f"![{block.caption}]({block.path.relative_to(base).as_posix()})", ""]
            elif not any(block.headers):
                out += [f"- **{row[0]}**: {_md_cell(row[1])}" for row in block.rows]
                out.append("")
            else:
                def line(cells: list[str]) -> str:
                    return "| " + " | ".join(_md_cell(c) for c in cells) + " |"

                rule = ["---:" if i in block.right else "---" for i in range(len(block.headers))]
                out += [line(block.headers), "|" + "|".join(rule) + "|"]
                out += [line(row) for row in block.rows]
                if block.footer:
                    out.append(line([f"**{c}**" if c else "" for c in block.footer]))
                out.append("")
    return "\n".join(out)


CSS = """
body{margin:0;background:#f3f4f6;color:#1d2329;
 font:15px/1.55 -apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
main{max-width:980px;margin:0 auto;padding:32px 40px 64px;background:#fff}
h1{font-size:1.75rem;margin:0 0 .2em}
h2{font-size:1.25rem;margin:2.2em 0 .6em;padding-bottom:.25em;border-bottom:1px solid #e3e5e8}
p{margin:.6em 0}
.tiles{display:grid;grid-template-columns:repeat(auto-fill,minmax(210px,1fr));gap:12px;margin:1em 0}
.tile{border:1px solid #e3e5e8;border-radius:8px;padding:12px 14px;background:#fafbfc}
.tile .label{font-size:.78rem;color:#5b6470;text-transform:uppercase;letter-spacing:.04em}
.tile .value{font-size:1.65rem;font-weight:600;font-variant-numeric:tabular-nums}
.tile .detail{font-size:.83rem;color:#5b6470}
.table-wrap{overflow-x:auto}
table{border-collapse:collapse;min-width:60%;max-width:100%;font-size:.88rem;margin:.8em 0}
th,td{padding:6px 10px;border-bottom:1px solid #e3e5e8;text-align:left;vertical-align:top}
td{overflow-wrap:anywhere}
thead th{background:#f1f3f5;font-weight:600}
tfoot td{font-weight:600;border-top:2px solid #d5d9de}
tbody tr:nth-child(even){background:#fafbfc}
tbody th{font-weight:600;width:13em;background:none}
.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
figure{margin:1.4em 0}
img{max-width:100%;height:auto;display:block}
figcaption{color:#5b6470;font-size:.85rem;margin-top:.3em}
"""


def _html_table(table: Table) -> str:
    esc = html.escape
    if not any(table.headers):
        rows = "".join(f"<tr><th scope=row>{esc(r[0])}</th><td>{esc(r[1])}</td></tr>"
                       for r in table.rows)
        return f"<div class=table-wrap><table><tbody>{rows}</tbody></table></div>"

    def cls(i: int) -> str:
        return " class=num" if i in table.right else ""

    head = "".join(f"<th{cls(i)}>{esc(h)}</th>" for i, h in enumerate(table.headers))
    body = "".join("<tr>" + "".join(f"<td{cls(i)}>{esc(c)}</td>" for i, c in enumerate(row))
                   + "</tr>" for row in table.rows)
    foot = "" if not table.footer else "<tfoot><tr>" + "".join(
        f"<td{cls(i)}>{esc(c)}</td>" for i, c in enumerate(table.footer)) + "</tr></tfoot>"
    return (f"<div class=table-wrap><table><thead><tr>{head}</tr></thead>"
            f"<tbody>{body}</tbody>{foot}</table></div>")


def render_html(title: str, sections: Sequence[Section]) -> str:
    """Self-contained HTML: inline CSS, figures as base64 PNG data URIs, no external assets."""
    esc = html.escape
    out = ["<!DOCTYPE html>", "<html lang=en><head><meta charset=utf-8>",
           "<meta name=viewport content='width=device-width,initial-scale=1'>",
           f"<title>{esc(title)}</title><style>{CSS}</style></head><body><main>",
           f"<h1>{esc(title)}</h1>"]
    for section in sections:
        out.append(f"<section><h2>{esc(section.title)}</h2>")
        for block in section.blocks:
            if isinstance(block, str):
                out.append(f"<p>{esc(block)}</p>")
            elif isinstance(block, Tiles):
                out.append("<div class=tiles>" + "".join(
                    f"<div class=tile><div class=label>{esc(label)}</div>"
                    f"<div class=value>{esc(value)}</div>"
                    f"<div class=detail>{esc(detail)}</div></div>"
                    for label, value, detail in block.items) + "</div>")
            elif isinstance(block, Image):
                data = base64.b64encode(block.path.read_bytes()).decode("ascii")
                out.append(f"<figure><img alt='{esc(block.caption)}' "
                           f"src='data:image/png;base64,{data}'>"
                           f"<figcaption>{esc(block.caption)}</figcaption></figure>")
            else:
                out.append(_html_table(block))
        out.append("</section>")
    out.append("</main></body></html>")
    return "\n".join(out)


PLOT_NAMES = ("probe.png", "site-loss.png", "round-time.png", "per-class-auroc.png")


def build_sections(m: RunMetrics, config: dict[str, Any] | None, plots_dir: Path
                   ) -> list[Section]:
    """All report sections (writing their figures into ``plots_dir``), in reading order."""
    flat = None if config is None else flatten_config(config)
    builders: list[Callable[[], Section | None]] = [
        lambda: _headline(m, flat),
        lambda: _probe_section(m, plots_dir),
        lambda: _per_class_section(m, plots_dir),
        lambda: _training_section(m, plots_dir),
        lambda: _sites_section(m),
        lambda: _rounds_section(m),
        lambda: _failures_section(m),
        lambda: _privacy_section(flat),
        lambda: _config_section(flat),
    ]
    return [s for build in builders if (s := build()) is not None]


def write_report(run_dir: Path) -> tuple[Path, Path]:
    """Write ``report.md``, ``report.html`` and ``plots/*.png`` into ``run_dir``.

    Returns ``(markdown_path, html_path)``. Raises :class:`ReportError` naming the file when
    ``metrics.json`` is missing or malformed (or ``config.json`` is malformed).
    """
    run_dir = Path(run_dir)
    metrics = load_metrics(run_dir)
    config = load_config(run_dir)
    plots_dir = run_dir / "plots"
    for name in PLOT_NAMES:  # figures of an earlier report that may not apply any more
        (plots_dir / name).unlink(missing_ok=True)
    sections = build_sections(metrics, config, plots_dir)
    title = f"Federated run report: {metrics.name}"
    md_path, html_path = run_dir / "report.md", run_dir / "report.html"
    md_path.write_text(render_markdown(title, sections, run_dir), encoding="utf-8")
    html_path.write_text(render_html(title, sections), encoding="utf-8")
    return md_path, html_path
