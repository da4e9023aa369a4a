"""The fine-tuning recipe choice of benchmarks/tune_finetune.py (fold-9 scores in, choice out)."""

from __future__ import annotations

from typing import Any

from benchmarks.tune_finetune import CAP, SHORT_CAP, choose, table


def _row(arm: str, variant: str, seed: int, short: float, long: float) -> dict[str, Any]:
    return {"arm": arm, "variant": variant, "seed": seed, "options": {"lr": float(seed + 1)},
            "val_auroc_cap40": short, "val_auroc": long, "best_epoch": 30, "seconds": 1.0}


def test_each_arm_takes_its_best_mean_and_the_shorter_cap_on_a_tie() -> None:
    rows = [_row("a", "slow", 0, 0.80, 0.84), _row("a", "slow", 1, 0.80, 0.80),
            _row("a", "fast", 0, 0.81, 0.81), _row("a", "fast", 1, 0.81, 0.81),
            _row("b", "slow", 0, 0.70, 0.70), _row("b", "fast", 0, 0.72, 0.75)]
    chosen = choose(rows)
    assert chosen["a"] == {"variant": "slow", "epochs": CAP, "options": {"lr": 1.0},
                           "val_auroc": 0.82}
    assert chosen["b"]["variant"] == "fast" and chosen["b"]["epochs"] == CAP
    tie = choose([_row("c", "only", 0, 0.9, 0.9)])
    assert tie["c"]["epochs"] == SHORT_CAP
    text = table(rows)
    assert "| a | slow | 2 | 0.8000 ± 0.000 | 0.8200 ± 0.028 |" in text
    assert "| b | fast | 1 | 0.7200 | 0.7500 |" in text
