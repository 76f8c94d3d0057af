"""The score between two results of one task (METRICS.md "Score between two results"), per task type.

1 means identical; used for agreement between annotators and for accuracy against a gold answer.
"""

import itertools

import numpy as np
from scipy.optimize import linear_sum_assignment

IOU_THRESHOLD = 0.5
# Box coordinates are decimal fractions: (0.3, 0.3, 0.3, 0.3) against (0.3, 0.3, 0.15, 0.3) has an IoU of exactly
# 0.5 but computes as 0.4999999999999998. A pair at the threshold matches, so compare with this much slack.
IOU_TOLERANCE = 1e-9


def _f1(matched, n_a, n_b):
    if n_a == 0 and n_b == 0:
        return 1.0
    return 2.0 * matched / (n_a + n_b)


def score_classification(a, b):
    return 1.0 if a.get("label") == b.get("label") else 0.0


def score_multilabel(a, b):
    left, right = set(a.get("labels") or []), set(b.get("labels") or [])
    if not left and not right:
        return 1.0
    return len(left & right) / len(left | right)


def score_text_spans(a, b):
    left = {(s["start"], s["end"], s["label"]) for s in a.get("spans") or []}
    right = {(s["start"], s["end"], s["label"]) for s in b.get("spans") or []}
    return _f1(len(left & right), len(left), len(right))


def box_iou_matrix(left, right):
    """IoU of every box in `left` with every box in `right` (arrays of x, y, w, h rows)."""
    if len(left) == 0 or len(right) == 0:
        return np.zeros((len(left), len(right)))
    a, b = np.asarray(left, dtype=float)[:, None, :], np.asarray(right, dtype=float)[None, :, :]
    ix = np.clip(np.minimum(a[..., 0] + a[..., 2], b[..., 0] + b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    iy = np.clip(np.minimum(a[..., 1] + a[..., 3], b[..., 1] + b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = ix * iy
    union = a[..., 2] * a[..., 3] + b[..., 2] * b[..., 3] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def score_bounding_boxes(a, b):
    """F1 of a one-to-one (Hungarian) matching of boxes with IoU ≥ 0.5 and the same label.

    F1 counts matches, so the matching maximises their number: a matching that maximised the summed IoU could
    keep two near-perfect pairs where three good-enough pairs exist (tests/quality/test_scores.py has one).
    """
    left, right = a.get("boxes") or [], b.get("boxes") or []
    if not left or not right:
        return _f1(0, len(left), len(right))
    iou = box_iou_matrix([[x["x"], x["y"], x["w"], x["h"]] for x in left],
                         [[x["x"], x["y"], x["w"], x["h"]] for x in right])
    same_label = np.array([[x["label"] == y["label"] for y in right] for x in left])
    eligible = same_label & (iou >= IOU_THRESHOLD - IOU_TOLERANCE)
    rows, cols = linear_sum_assignment(eligible, maximize=True)
    matched = int(np.count_nonzero(eligible[rows, cols]))
    return _f1(matched, len(left), len(right))


SCORES = {
    "classification": score_classification,
    "multilabel": score_multilabel,
    "text_spans": score_text_spans,
    "bounding_boxes": score_bounding_boxes,
}


def result_score(task_type, a, b):
    return SCORES[task_type](a or {}, b or {})


def task_agreement(task_type, results):
    """Mean pairwise score over all pairs of results on one task; None with fewer than two."""
    if len(results) < 2:
        return None
    score = SCORES[task_type]
    pairs = [score(a or {}, b or {}) for a, b in itertools.combinations(results, 2)]
    return float(sum(pairs) / len(pairs))
