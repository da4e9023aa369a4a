"""The report's sections, built from a run's metrics and config (figures written on the way)."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aclecg_core.report import plots
from aclecg_core.report.blocks import Image, Link, Section, Table, Tiles
from aclecg_core.report.fmt import (
    comparison_words,
    fmt_ci,
    fmt_diff_ci,
    fmt_int,
    fmt_score,
    fmt_score_ci,
    fmt_seconds,
    fmt_signed_interval,
    fmt_time,
    fmt_value,
    parse_time,
)
from aclecg_core.report.holdout import HoldoutEvidence, holdout_section
from aclecg_core.report.holdout import verdict as holdout_verdict
from aclecg_core.report.pooled import PooledEvidence, pooled_section
from aclecg_core.report.regions import PLOT_NAME as REGION_PLOT
from aclecg_core.report.regions import RegionEvidence, region_section
from aclecg_core.report.runlog import RoundMetrics, RunMetrics, SiteSummary
from aclecg_core.settings import DP_MODE_KEYS, DP_MODES

PLOT_NAMES = ("probe.png", "site-loss.png", "round-time.png", "per-class-auroc.png", REGION_PLOT)


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


def dp_statement(flat: dict[str, Any] | None) -> str:
    """What the run config's ``dp`` mode (``run.dp`` in config.json, or a top-level ``dp``)
    says: ``off``, or ``fixed`` | ``adaptive`` central differential privacy with that mode's
    ``dp-*`` settings. Other ``dp``-named keys never turn it on."""
    if flat is None:
        return "Differential privacy: unknown (no config.json in the run folder)."
    prefix = next((p for p in ("run.", "") if f"{p}dp" in flat), None)
    if prefix is None:
        return "Differential privacy: off (the configuration sets no dp mode)."
    mode = flat[f"{prefix}dp"]
    if mode == "off":
        return "Differential privacy: off (dp = off)."
    if mode not in DP_MODE_KEYS:
        return (f"Differential privacy: unknown (dp = {fmt_value(mode)} is not one of "
                f"{', '.join(DP_MODES)}).")
    settings = [f"{k} = {fmt_value(flat[prefix + k])}" for k in DP_MODE_KEYS[mode]
                if prefix + k in flat]
    listed = ", ".join(settings) or "default settings"
    return (f"Differential privacy: on (dp = {mode}; {listed})."
            " The server clips each site's update and adds Gaussian noise to the aggregate: this "
            "protects the released global model, while the server itself receives the sites' "
            "un-noised updates.")


ROBUST_AGGREGATIONS = {  # robust-aggregation (run config) -> what Flower's strategy computes
    "median": "the coordinate-wise median of the sites' models",
    "trimmed-mean": "the coordinate-wise trimmed mean of the sites' models (robust-trim-fraction "
                    "= {robust-trim-fraction} cut at each end)",
    "krum": "Krum: the one site model closest to the others (robust-byzantine-sites = "
            "{robust-byzantine-sites})",
    "multi-krum": "Multi-Krum: the weighted mean of the site models closest to the others "
                  "(robust-byzantine-sites = {robust-byzantine-sites})",
    "bulyan": "Bulyan: Multi-Krum selection, then a trimmed mean around the median "
              "(robust-byzantine-sites = {robust-byzantine-sites})",
}


SERVER_STEPS = {  # strategy -> the server's step from the weighted mean to the new model
    "fedavgm": "a server step with momentum (server-lr = {server-lr}, server-momentum = "
               "{server-momentum})",
    "fedadam": "an Adam server step (server-eta = {server-eta})",
}
SERVER_STEP_KEYS = ("server-lr", "server-momentum", "server-eta")


def aggregation_statement(flat: dict[str, Any] | None) -> str:
    """How the sites' models were combined (``robust-aggregation``, else the strategy's
    weighted mean and its server step) and the ``max-update-ratio`` bound that refused updates
    before it."""
    if flat is None:
        return "not recorded (no config.json)"
    robust = _config_value(flat, "robust-aggregation")
    if robust in ROBUST_AGGREGATIONS:
        settings = {k: fmt_value(_config_value(flat, k))
                    for k in ("robust-trim-fraction", "robust-byzantine-sites")}
        how = ROBUST_AGGREGATIONS[robust].format_map(settings)
    elif _config_value(flat, "strategy") == "cyclic":
        how = ("cyclic weight transfer (strategy cyclic): each round the sites trained one after "
               "another in a seeded order, each from the previous site's model; the round's "
               "model is the last site's, nothing averaged")
    else:
        strategy = _config_value(flat, "strategy")
        how = "weighted mean of the sites' models (examples as weights" + (
            f", strategy {fmt_value(strategy)})" if strategy is not None else ")")
        if _config_value(flat, "secure-aggregation") is True:
            how += " under secure aggregation"
        if strategy in SERVER_STEPS:
            how += ", then " + SERVER_STEPS[strategy].format_map(
                {k: fmt_value(_config_value(flat, k)) for k in SERVER_STEP_KEYS})
    bound = _config_value(flat, "max-update-ratio")
    if bound is not None:
        how += (f"; updates that were not finite, did not fit the model or moved it more than "
                f"{fmt_value(bound)} × its size (max-update-ratio) were refused")
    return how


def _final_probe(m: RunMetrics) -> RoundMetrics | None:
    probed = [rd for rd in m.rounds if rd.probe is not None]
    final = [rd for rd in probed if rd.round == m.final_round]
    return final[0] if final else (probed[-1] if probed else None)


def _best_probe(m: RunMetrics) -> RoundMetrics | None:
    probed = [rd for rd in m.rounds if rd.probe is not None]
    named = [rd for rd in probed if rd.round == m.best_round]
    if named:
        return named[0]
    def selection_score(rd: RoundMetrics) -> float:  # validation, where the probe has one
        p = rd.probe
        return math.nan if p is None else p.macro_auroc if p.val_auroc is None else p.val_auroc

    scored = [rd for rd in probed if not math.isnan(selection_score(rd))]
    return max(scored, key=selection_score, default=None)


def _wall_time(m: RunMetrics) -> float:
    """Finished minus started when both are known, else the sum of the rounds' wall times."""
    start, end = parse_time(m.started), parse_time(m.finished)
    if start and end:
        try:
            return (end - start).total_seconds()
        except TypeError:  # one naive, one aware
            pass
    return sum(rd.wall_seconds for rd in m.rounds if not math.isnan(rd.wall_seconds))


def _method(flat: dict[str, Any] | None) -> str:
    if flat is None:
        return "not recorded (no config.json)"
    parts = [f"{name} {fmt_value(v)}" for name in ("method", "strategy", "encoder", "aggregate")
             if (v := _config_value(flat, name)) is not None]
    return ", ".join(parts) or "not recorded in config.json"


def _headline(m: RunMetrics, flat: dict[str, Any] | None,
              holdout: HoldoutEvidence | None = None) -> Section:
    final, best = _final_probe(m), _best_probe(m)
    probed = [rd for rd in m.rounds if rd.probe is not None]
    tiles: list[tuple[str, str, str]] = []
    # the final and best encoders' probes: on the whole hold-out where the run has it
    shown = {name: (rd.round, rd.probe) for name, rd in (("final", final), ("best", best))
             if rd is not None and rd.probe is not None}
    where = ""
    if holdout is not None and holdout.named("final") is not None:
        shown.update({name: (e.round, e.probe) for name in ("final", "best")
                      if (e := holdout.named(name)) is not None})
        where = " · whole hold-out"
    which = "Final"
    if "final" in shown:
        number, p = shown["final"]
        which = "Final" if m.status == "finished" and number == m.final_round else "Latest"
        tiles.append((f"{which} macro AUROC", fmt_score(p.macro_auroc),
                      f"95 % CI {fmt_ci(p.auroc_ci)} · round {number}{where}"))
        tiles.append((f"{which} macro AUPRC", fmt_score(p.macro_auprc),
                      f"95 % CI {fmt_ci(p.auprc_ci)} · round {number}{where}"))
    if "best" in shown and best is not None and best.probe is not None:
        number, p = shown["best"]
        chosen = (f"chosen on {fmt_int(best.probe.n_val)} validation records · "
                  if best.probe.val_auroc is not None else "")
        tiles.append(("Best round's macro AUROC", fmt_score(p.macro_auroc),
                      f"round {number} ({chosen}AUPRC {fmt_score(p.macro_auprc)}){where}"))
    d = shown["final"][1].vs_round0 if "final" in shown else None
    if d is not None:
        tiles.append((f"{which} − round 0 (random init)", fmt_diff_ci(d.auroc_diff, None),
                      f"macro AUROC · paired 95 % CI {fmt_signed_interval(d.auroc_diff_ci)}"
                      f"{where}"))
    elif final and final.probe and probed[0] is not final and probed[0].probe:
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
        probe_data = f"{fmt_int(final.probe.n_test)} test records" + (
            f" ({source}; server-held)" if source else "")
        if final.probe.c is not None:
            probe_data += (f"; C chosen each round on {fmt_int(final.probe.n_val)} validation "
                           f"records (round {final.round}: C = {final.probe.c:g})")
        if holdout is not None and holdout.n_test != final.probe.n_test:
            probe_data += (f"; round 0, the best and the final encoder also on the whole "
                           f"hold-out ({fmt_int(holdout.n_test)} test records)")

    facts = Table(["", ""], [
        ["Run", m.name],
        ["Method", _method(flat)],
        ["Aggregation", aggregation_statement(flat)],
        ["Sites", f"{len(m.sites)}: {', '.join(s.title for s in m.sites)}" if m.sites else "–"],
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
    verdict = (holdout and holdout_verdict(holdout)) or reference_statement(m)
    blocks += [Tiles(tiles)] + ([verdict] if verdict else []) + [facts]
    return Section("Summary", blocks)


def reference_statement(m: RunMetrics) -> str | None:
    """Whether the final (or latest) probed encoder beats round 0's random-init encoder, from
    the paired difference the server stored (``vs_round0``); ``None`` before any trained
    round was probed."""
    final = _final_probe(m)
    if final is None or final.probe is None or final.round == 0:
        return None
    which = "final" if m.status == "finished" and final.round == m.final_round else "latest"
    d = final.probe.vs_round0
    if d is None or d.auroc_diff_ci is None:
        return (f"The probe of the {which} encoder (round {final.round}) has no paired "
                "comparison with round 0 in metrics.json, so this report cannot say whether it "
                "beats the random-init encoder.")
    return (f"The {which} encoder (round {final.round}) {comparison_words(d.auroc_diff_ci)} the "
            f"random-init encoder of round 0 on the server's probe: macro AUROC "
            f"{fmt_diff_ci(d.auroc_diff, d.auroc_diff_ci)}, macro AUPRC "
            f"{fmt_diff_ci(d.auprc_diff, d.auprc_diff_ci)} (difference [paired bootstrap 95 % "
            f"interval] on the same {fmt_int(final.probe.n_test)} test records).")


def _probe_section(m: RunMetrics, plots_dir: Path, holdout: HoldoutEvidence | None = None
                   ) -> Section | None:
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
        "(round 0: the initial, untrained encoder, the random-init reference). Each round the "
        "probe's regularisation C is chosen on the server's validation split and the test "
        "split is scored once. Shaded: bootstrap 95 % confidence interval." + (
            f" The rounds use a fixed share of the hold-out ({fmt_int(probed[-1].probe.n_test)} "
            f"of its {fmt_int(holdout.n_test)} test records); round 0, the best and the final "
            "encoder on all of it: next section."
            if holdout is not None and probed[-1].probe
            and probed[-1].probe.n_test != holdout.n_test else ""),
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
        f"Probe of the model after round {final.round} on {fmt_int(p.n_test)} test records. "
        "Dashed line: chance (AUROC 0.5).",
        Image(path, f"Per-class AUROC, round {final.round}"),
        table,
    ]
    if p.skipped:
        blocks.append("Left out of the macro averages (no positives or no negatives in the test "
                      f"split): {', '.join(p.skipped)}.")
    return Section("Per-class results of the final model", blocks)


def _label_mix(site: SiteSummary, top: int = 5) -> str:
    """The most frequent classes; counts the site suppressed stay as sent (e.g. ``<5``)."""
    exact = {k: v for k, v in site.label_counts.items() if isinstance(v, int)}
    counts = sorted(site.label_counts.items(),
                    key=lambda kv: (-exact.get(kv[0], 0), kv[0]))
    if not counts:
        return "–"
    total = site.records or sum(exact.values())
    parts = [f"{k} {v} ({100 * v / total:.0f} %)" if total and isinstance(v, int) else f"{k} {v}"
             for k, v in counts[:top]]
    if len(counts) > top:
        parts.append(f"+{len(counts) - top} more")
    return ", ".join(parts)


def _sites_section(m: RunMetrics) -> Section:
    if not m.sites:
        return Section("Sites", ["No site summaries recorded."])
    rows = [[s.title, fmt_int(s.records), fmt_int(s.windows),
             "–" if s.fs is None else f"{s.fs:g} Hz", _label_mix(s)] for s in m.sites]
    footer = None
    if len(m.sites) > 1:
        records = [s.records for s in m.sites]
        windows = [s.windows for s in m.sites]
        footer = ["Total", fmt_int(None if None in records else sum(r or 0 for r in records)),
                  fmt_int(None if None in windows else sum(w or 0 for w in windows)), "", ""]
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
                     else "", fmt_int(examples) if rd.clients else "",
                     "" if math.isnan(loss) else f"{loss:.3f}", fmt_seconds(rd.wall_seconds),
                     fmt_score_ci(p.macro_auroc, p.auroc_ci) if p else "",
                     fmt_score_ci(p.macro_auprc, p.auprc_ci) if p else "",
                     "" if p is None or p.c is None else f"{p.c:g}"])
    return Section("Rounds", [
        "Loss: mean client training loss weighted by examples. Probe columns: macro score "
        "[bootstrap 95 % CI] and the C chosen on the validation split; empty where the round "
        "was not probed.",
        Table(["Round", "Clients", "Failed", "Examples", "Loss", "Wall time",
               "Macro AUROC [95 % CI]", "Macro AUPRC [95 % CI]", "C"], rows,
              right=set(range(9))),
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
        Table(["Setting", "Value"], [[k, fmt_value(v)] for k, v in flat.items()]),
    ])


def _privacy_section(flat: dict[str, Any] | None, audit_trail: str | None) -> Section:
    shared = flat is not None and _config_value(flat, "share-site-stats") is True
    stats = ("the record counts, sampling rates and per-class record counts in the sites table "
             "(share-site-stats on; counts below 5 sent as <5)" if shared else
             "no record counts, sampling rates or label counts (share-site-stats off)")
    secure = flat is not None and _config_value(flat, "secure-aggregation") is True
    weights = ("the locally trained model weights after each round, masked by secure "
               "aggregation (SecAgg+): the server learned only their weighted mean, no single "
               "site's weights" if secure else
               "the locally trained model weights after each round (secure aggregation off: the "
               "server saw each site's weights)")
    blocks: list[str | Table | Image | Tiles | Link] = [
        f"What left the sites: {weights}; per-round training metrics (loss, number of examples, "
        f"time, throughput) and {stats}. No ECG signal, record identifier or patient metadata "
        "left a site.",
        dp_statement(flat),
    ]
    if audit_trail:
        blocks.append(Link(audit_trail, audit_trail, "is the run's audit trail: a SHA-256 hash "
                           "chain with one line per round (sites asked, answered and failed; "
                           "digests of the weights sent and received, of the aggregate and of "
                           "the checkpoint). Check it with `aclecg audit RUN_DIR`."))
    return Section("Privacy", blocks)


def build_sections(m: RunMetrics, config: dict[str, Any] | None, plots_dir: Path,
                   audit_trail: str | None = None, regions: RegionEvidence | None = None,
                   holdout: HoldoutEvidence | None = None,
                   pooled: PooledEvidence | None = None) -> list[Section]:
    """All report sections (writing their figures into ``plots_dir``), in reading order;
    ``audit_trail``: the run folder's audit file to link, if it has one; ``regions``: the
    per-region evidence of the final encoder, ``holdout``: the probes on the whole hold-out,
    ``pooled``: the pooled reference of a simulation, if the run has them."""
    flat = None if config is None else flatten_config(config)
    builders: list[Callable[[], Section | None]] = [
        lambda: _headline(m, flat, holdout),
        lambda: _probe_section(m, plots_dir, holdout),
        lambda: holdout_section(holdout),
        lambda: pooled_section(pooled),
        lambda: _per_class_section(m, plots_dir),
        lambda: region_section(regions, plots_dir),
        lambda: _training_section(m, plots_dir),
        lambda: _sites_section(m),
        lambda: _rounds_section(m),
        lambda: _failures_section(m),
        lambda: _privacy_section(flat, audit_trail),
        lambda: _config_section(flat),
    ]
    return [s for build in builders if (s := build()) is not None]
