"""Client side of opt-in secure aggregation: Flower's ``secaggplus_mod`` around the train handler.

:func:`secure_aggregation_mod` (a ClientApp mod) runs Flower's SecAgg+ client mod on the
messages of a SecAgg+ round (they carry its ``secaggplus_configs`` record) and passes every
other message through, so a site serves plain and secure runs alike. Flower's mod speaks the
legacy FitIns/FitRes layout; :func:`_legacy_train` translates between it and this app's
Message-API train handler. The site's arrays leave it only masked; its scalar metrics (and
``site-stats`` when asked) travel as in a plain round. A site whose update does not fit the
protocol's quantisation range fails the round with a clear error instead of being clipped.
"""

from __future__ import annotations

from typing import cast

import numpy as np
from flwr.app import (
    Array,
    ArrayRecord,
    ConfigRecord,
    Context,
    Error,
    Message,
    MetricRecord,
    RecordDict,
)
from flwr.client.mod import secaggplus_mod
from flwr.clientapp.typing import ClientAppCallable
from flwr.common import bytes_to_ndarray
from flwr.common.secure_aggregation.secaggplus_constants import (
    RECORD_KEY_CONFIGS,
    RECORD_KEY_STATE,
)

from aclecg_core.fed import protocol
from aclecg_core.fed.site import REQUIRE_SECAGG

RANGE_ERROR_CODE = 1003
REFUSED_CODE = 1004


class SiteFailed(Exception):
    """The train handler answered with an error: SecAgg+ cannot mask it, so it is re-raised
    and answered as that same error."""

    def __init__(self, error: Error) -> None:
        super().__init__(error.reason)
        self.error = error


def secure_aggregation_mod(msg: Message, context: Context,
                           call_next: ClientAppCallable) -> Message:
    """SecAgg+ for SecAgg+ rounds; plain messages go straight to ``call_next``, unless the
    site's node config sets ``require-secure-aggregation`` (then they are refused)."""
    if not msg.has_content() or RECORD_KEY_CONFIGS not in msg.content.config_records:
        if context.node_config.get(REQUIRE_SECAGG):
            site = context.node_config.get("site", f"node-{context.node_id}")
            return Message(Error(REFUSED_CODE, f"{site}: refused: this site trains only with "
                                 "secure aggregation (run config secure-aggregation = true)"),
                           reply_to=msg)
        return call_next(msg, context)
    try:
        return secaggplus_mod(msg, context, lambda m, c: _legacy_train(m, c, call_next))
    except SiteFailed as failed:
        return Message(failed.error, reply_to=msg)


def _legacy_train(msg: Message, context: Context, train: ClientAppCallable) -> Message:
    """FitIns-layout ``msg`` -> the Message-API handler ``train`` -> FitRes-layout reply."""
    fit_config = dict(msg.content.config_records["fitins.config"])
    keys = cast(list[str], fit_config.pop(protocol.ARRAY_NAMES_KEY))
    values = [bytes_to_ndarray(a.data) for a in msg.content.array_records["fitins.parameters"]
              .values()]
    msg.content = RecordDict({
        protocol.ARRAYS: ArrayRecord({k: Array(v) for k, v in zip(keys, values, strict=True)}),
        protocol.CONFIG: ConfigRecord(fit_config),
    })
    reply = train(msg, context)
    if reply.has_error():
        raise SiteFailed(reply.error)
    arrays = reply.content.array_records[protocol.ARRAYS]
    metrics = reply.content.metric_records[protocol.METRICS]
    num_examples = int(cast(int, metrics["num-examples"]))
    problem = _range_problem({k: v.numpy() for k, v in arrays.items()}, num_examples, context)
    if problem:
        site = int(cast(int, metrics["site-index"]))
        raise SiteFailed(Error(RANGE_ERROR_CODE, f"site{site}: SecureAggregationError: {problem}"))
    content = RecordDict({
        # float64: SecAgg+ scales values to up to 2**30 quantisation levels before rounding
        "fitres.parameters": ArrayRecord({k: Array(arrays[k].numpy().astype(np.float64))
                                          for k in keys}),
        "fitres.num_examples": MetricRecord({"num_examples": num_examples}),
        "fitres.metrics": ConfigRecord(),
        "fitres.status": ConfigRecord({"code": 0, "message": "Success"}),
        **{name: record for name, record in reply.content.items() if name != protocol.ARRAYS},
    })
    return Message(content, reply_to=msg)


def _range_problem(arrays: dict[str, np.ndarray], num_examples: int,
                   context: Context) -> str | None:
    """Why SecAgg+ would silently clip this update (weight above ``max_weight``, a weighted
    value outside ``±clipping_range``, as set up for this round), or None."""
    state = context.state.config_records[RECORD_KEY_STATE]
    max_weight = float(cast(float, state["max_weight"]))
    clip = float(cast(float, state["clipping_range"]))
    if num_examples > max_weight:
        return (f"{num_examples} examples exceed secagg-max-weight {max_weight:g}; "
                "raise secagg-max-weight")
    largest = max(float(np.abs(v).max(initial=0.0)) for v in arrays.values())
    if largest * num_examples / max_weight > clip:
        return (f"a weight of magnitude {largest:.3g} scaled by {num_examples}/{max_weight:g} "
                f"leaves secagg-clipping-range {clip:g}; raise secagg-clipping-range")
    return None
