"""The sites' training replies on the server: refused when they cannot be aggregated, put in
site order, and read into the run folder's client, site and failure entries."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any, cast

import numpy as np
from flwr.app import ArrayRecord, Error, Message, MessageType, RecordDict

from aclecg_core.fed import protocol
from aclecg_core.fed.disclosure import read_label_counts
from aclecg_core.fed.updates import check_arrays, check_metrics

REFUSED_CODE = 1003  # the error code of a reply the server refused to aggregate
NAME_CHARS = 64  # a site's name in the run folder and reports
_SITE_ERROR = re.compile(r"^(site\S*|node-\d+): (.*)$", re.S)


def site_name(index: int) -> str:
    return f"site{index}"


def arrays_of(record: ArrayRecord) -> dict[str, np.ndarray]:
    return {k: v.numpy() for k, v in record.items()}


def check_reply(msg: Message, template: Mapping[str, np.ndarray],
                reference: Mapping[str, np.ndarray] | None, max_ratio: float,
                same_dtypes: bool) -> Message:
    """``msg``, or when its training reply cannot be aggregated
    (:mod:`aclecg_core.fed.updates`) an error reply from the same node naming the site and why:
    its arrays never reach the aggregation. An accepted reply's arrays are put in the key order
    of ``template`` (Flower's FedAvgM pairs them with the global arrays by position)."""
    if msg.has_error():
        return msg
    metrics = msg.content.metric_records.get(protocol.METRICS)
    record = msg.content.array_records.get(protocol.ARRAYS)
    records = sorted([*msg.content.array_records, *msg.content.metric_records])
    if metrics is None or record is None or len(records) != 2:
        problem: str | None = f"the reply holds records {records}, expected " \
            f"'{protocol.ARRAYS}' and '{protocol.METRICS}' (one each)"
    else:
        problem = check_metrics(dict(metrics)) or check_arrays(
            arrays_of(record), template, reference, max_ratio, same_dtypes)
    if problem is None and record is not None:
        msg.content[protocol.ARRAYS] = ArrayRecord({k: record[k] for k in template})
        return msg
    node = msg.metadata.src_node_id
    index = None if metrics is None else metrics.get("site-index")
    site = site_name(int(index)) if isinstance(index, int | float) and math.isfinite(index) \
        else f"node-{node}"
    instruction = Message(RecordDict(), dst_node_id=node, message_type=MessageType.TRAIN)
    return Message(Error(code=REFUSED_CODE, reason=f"{site}: update refused: {problem}"),
                   reply_to=instruction)


def reply_order(msg: Message) -> tuple[int, float]:
    """Sort key: answers by site index, then errors by node."""
    if msg.has_error():
        return (1, msg.metadata.src_node_id)
    metrics = next(iter(msg.content.metric_records.values()))
    return (0, float(cast(float, metrics.get("site-index", msg.metadata.src_node_id))))


def client_entry(msg: Message) -> tuple[dict[str, Any], dict[str, Any]]:
    """(client entry of metrics.json, site entry) from a valid reply; the site's records,
    sampling rate and label counts only if it sent ``site-stats`` (``share-site-stats``)."""
    report = protocol.TrainReport.decode(msg.content.metric_records[protocol.METRICS])
    site = site_name(report.site_index)
    client = {"site": site, "loss": report.loss, "num-examples": report.num_examples,
              "seconds": report.seconds, "samples-per-second": report.samples_per_second}
    stats = cast(dict[str, int | float | str],
                 dict(msg.content.config_records.get(protocol.SITE_STATS, {})))
    info = {"site": site, "name": _site_name_of(msg), "records": stats.get("records"),
            "windows": report.num_examples, "fs": stats.get("fs"),
            "label_counts": read_label_counts(stats)}
    return client, info


def _site_name_of(msg: Message) -> str | None:
    """The name the site gave in its reply (at most :data:`NAME_CHARS` characters), if any."""
    record = msg.content.config_records.get(protocol.SITE)
    name = None if record is None else record.get(protocol.SITE_NAME_KEY)
    return name[:NAME_CHARS] if isinstance(name, str) and name else None


def failure_entry(msg: Message) -> dict[str, str]:
    """(site, error) of an error reply: the site its reason names, else its node."""
    reason = msg.error.reason or f"error code {msg.error.code}"
    match = _SITE_ERROR.match(reason)
    if match:
        return {"site": match.group(1), "error": match.group(2)}
    return {"site": f"node-{msg.metadata.src_node_id}", "error": reason}
