"""The score between two results (METRICS.md "Score between two results"), per task type, with hand-worked answers."""

import itertools

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from apps.quality.scores import box_iou_matrix, result_score, task_agreement


def box(x, y, w, h, label="car"):
    return {"x": x, "y": y, "w": w, "h": h, "label": label}


# --- classification -------------------------------------------------------------------------------------------------

def test_classification_is_one_for_the_same_label_and_zero_otherwise():
    assert result_score("classification", {"label": "cat"}, {"label": "cat"}) == 1.0
    assert result_score("classification", {"label": "cat"}, {"label": "dog"}) == 0.0


# --- multilabel -----------------------------------------------------------------------------------------------------

def test_multilabel_is_the_jaccard_index_of_the_label_sets():
    # {a, b, c} and {b, c, d}: 2 shared of 4 in the union.
    assert result_score("multilabel", {"labels": ["a", "b", "c"]}, {"labels": ["d", "c", "b"]}) == 0.5
    assert result_score("multilabel", {"labels": ["a"]}, {"labels": ["b"]}) == 0.0
    assert result_score("multilabel", {"labels": ["b", "a"]}, {"labels": ["a", "b"]}) == 1.0


def test_multilabel_is_one_when_both_sets_are_empty_and_zero_against_an_empty_set():
    assert result_score("multilabel", {"labels": []}, {"labels": []}) == 1.0
    assert result_score("multilabel", {"labels": []}, {"labels": ["a"]}) == 0.0


# --- text spans -----------------------------------------------------------------------------------------------------

def test_span_f1_counts_only_exact_start_end_label_matches():
    a = {"spans": [{"start": 0, "end": 5, "label": "PER"}, {"start": 10, "end": 15, "label": "ORG"},
                   {"start": 20, "end": 25, "label": "LOC"}]}
    b = {"spans": [{"start": 0, "end": 5, "label": "PER"},    # exact: a match
                   {"start": 10, "end": 16, "label": "ORG"},  # one character longer: no match
                   {"start": 20, "end": 25, "label": "PER"}]}  # same place, other label: no match
    # 1 match, 3 + 3 spans: F1 = 2·1 / 6.
    assert result_score("text_spans", a, b) == pytest.approx(1 / 3)
    assert result_score("text_spans", a, a) == 1.0


def test_span_f1_is_one_when_both_are_empty_and_zero_against_an_empty_result():
    one = {"spans": [{"start": 0, "end": 5, "label": "PER"}]}
    assert result_score("text_spans", {"spans": []}, {"spans": []}) == 1.0
    assert result_score("text_spans", one, {"spans": []}) == 0.0


# --- bounding boxes -------------------------------------------------------------------------------------------------

def test_box_iou_matrix_by_hand():
    # Unit squares shifted by half a side: intersection 1/2, union 3/2, IoU 1/3; disjoint boxes: 0.
    iou = box_iou_matrix([[0, 0, 0.2, 0.2]], [[0.1, 0, 0.2, 0.2], [0.5, 0.5, 0.1, 0.1], [0, 0, 0.2, 0.2]])
    assert iou == pytest.approx(np.array([[1 / 3, 0.0, 1.0]]))
    assert box_iou_matrix([], [[0, 0, 1, 1]]).shape == (0, 1)


def test_box_f1_matches_at_an_iou_of_exactly_one_half():
    # Intersection 0.0125, union 0.025 in binary-exact fractions: IoU is 0.5 to the last bit.
    assert result_score("bounding_boxes", {"boxes": [box(0, 0, 0.5, 0.5)]},
                        {"boxes": [box(0, 0, 0.25, 0.5)]}) == 1.0


def test_box_f1_matches_at_one_half_when_decimal_coordinates_round_below_it():
    # Half the width of the same box: IoU 0.5 exactly, which floating point computes as 0.4999999999999998.
    a, b = box(0.3, 0.3, 0.3, 0.3), box(0.3, 0.3, 0.15, 0.3)
    assert box_iou_matrix([[0.3, 0.3, 0.3, 0.3]], [[0.3, 0.3, 0.15, 0.3]])[0, 0] < 0.5
    assert result_score("bounding_boxes", {"boxes": [a]}, {"boxes": [b]}) == 1.0


def test_box_f1_does_not_match_just_below_one_half():
    # Width 0.24 of 0.5: IoU 0.48.
    assert result_score("bounding_boxes", {"boxes": [box(0, 0, 0.5, 0.5)]},
                        {"boxes": [box(0, 0, 0.24, 0.5)]}) == 0.0


def test_box_f1_needs_the_same_label():
    assert result_score("bounding_boxes", {"boxes": [box(0.1, 0.1, 0.2, 0.2, "car")]},
                        {"boxes": [box(0.1, 0.1, 0.2, 0.2, "bus")]}) == 0.0


def test_box_f1_is_one_when_both_are_empty_and_zero_against_no_boxes():
    assert result_score("bounding_boxes", {"boxes": []}, {"boxes": []}) == 1.0
    assert result_score("bounding_boxes", {"boxes": [box(0, 0, 0.1, 0.1)]}, {"boxes": []}) == 0.0


def _greedy_matches(iou):
    """The matching a naive scorer does: best remaining pair first."""
    taken_rows, taken_cols, matched = set(), set(), 0
    for r, c in sorted(itertools.product(range(iou.shape[0]), range(iou.shape[1])), key=lambda rc: -iou[rc]):
        if iou[r, c] >= 0.5 and r not in taken_rows and c not in taken_cols:
            taken_rows.add(r), taken_cols.add(c)
            matched += 1
    return matched


def test_box_f1_matches_one_to_one_where_greedy_matching_fails():
    # Equal boxes along a line (one dimension of IoU): a1 overlaps b1 best (0.905) but a2 only overlaps b1 (0.538);
    # a1 can also take b2 (0.600). Greedy pairs a1-b1 and leaves a2 alone; one-to-one matching finds both.
    a = [box(0.175, 0.1, 0.5, 0.5), box(0.0, 0.1, 0.5, 0.5)]
    b = [box(0.15, 0.1, 0.5, 0.5), box(0.3, 0.1, 0.5, 0.5)]
    iou = box_iou_matrix([[x["x"], x["y"], x["w"], x["h"]] for x in a], [[x["x"], x["y"], x["w"], x["h"]] for x in b])
    assert iou.round(3).tolist() == [[0.905, 0.6], [0.538, 0.25]]
    assert _greedy_matches(iou) == 1
    assert result_score("bounding_boxes", {"boxes": a}, {"boxes": b}) == 1.0


def test_box_f1_maximises_the_number_of_matches_not_the_summed_iou():
    # A chain: a1-b1 and a2-b2 are near-perfect (0.905 each, sum 1.81), but a perfect one-to-one matching of three
    # good-enough pairs exists (a3-b1 0.538, a1-b2 0.563, a2-b3 0.563; sum 1.66). F1 counts matches: 1.0, not 2/3.
    a = [box(0.175, 0.1, 0.5, 0.5), box(0.34, 0.1, 0.5, 0.5), box(0.0, 0.1, 0.5, 0.5)]
    b = [box(0.15, 0.1, 0.5, 0.5), box(0.315, 0.1, 0.5, 0.5), box(0.48, 0.1, 0.5, 0.5)]
    iou = box_iou_matrix([[x["x"], x["y"], x["w"], x["h"]] for x in a], [[x["x"], x["y"], x["w"], x["h"]] for x in b])
    eligible = np.where(iou >= 0.5, iou, 0.0)
    rows, cols = linear_sum_assignment(eligible, maximize=True)
    assert np.count_nonzero(eligible[rows, cols]) == 2  # what a summed-IoU matching would count
    assert _greedy_matches(iou) == 2
    assert result_score("bounding_boxes", {"boxes": a}, {"boxes": b}) == 1.0


def test_box_f1_with_unmatched_boxes_on_both_sides():
    # 2 matches of 3 boxes against 4 boxes: F1 = 2·2 / 7.
    a = [box(0.0, 0.0, 0.2, 0.2), box(0.5, 0.5, 0.2, 0.2), box(0.8, 0.0, 0.1, 0.1)]
    b = [box(0.01, 0.0, 0.2, 0.2), box(0.5, 0.51, 0.2, 0.2), box(0.0, 0.8, 0.1, 0.1), box(0.3, 0.3, 0.1, 0.1)]
    assert result_score("bounding_boxes", {"boxes": a}, {"boxes": b}) == pytest.approx(4 / 7)


# --- one task -------------------------------------------------------------------------------------------------------

def test_task_agreement_is_the_mean_over_all_pairs_and_none_below_two_results():
    results = [{"label": "a"}, {"label": "a"}, {"label": "b"}]
    # Pairs: (a, a) 1, (a, b) 0, (a, b) 0.
    assert task_agreement("classification", results) == pytest.approx(1 / 3)
    assert task_agreement("classification", results[:1]) is None
