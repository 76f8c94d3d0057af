"""Known-answer tests of the quality metrics: published worked examples, hand-worked cases, and independent
libraries (krippendorff, statsmodels, scikit-learn, scipy) or plain-Python definitions computing the same value."""

import statistics
from collections import Counter

import krippendorff
import numpy as np
import pytest
from scipy.stats import median_abs_deviation
from sklearn.metrics import accuracy_score, cohen_kappa_score
from statsmodels.stats.inter_rater import fleiss_kappa as statsmodels_fleiss_kappa

from apps.quality import metrics
from apps.quality.metrics import (
    acceptance_rate,
    agreement_cohen_kappa_matrix,
    agreement_fleiss_kappa,
    agreement_krippendorff_alpha,
    agreement_mean_pairwise,
    agreement_per_label_alpha,
    annotator_agreement,
    annotator_outlier_flags,
    category_counts,
    consensus_dawid_skene,
    consensus_majority_vote,
    dawid_skene_posterior,
    difficulty_adjusted_speed,
    gold_accuracy,
    label_matrix,
    rework_rate,
    robust_z,
    task_difficulty,
)
from apps.quality.scores import task_agreement

NAN = np.nan

# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", section C: 4 observers (rows), 12 units,
# values 1-5, missing values; nominal alpha = 0.743.
KRIPPENDORFF_2011 = np.array([
    [1, 2, 3, 3, 2, 1, 4, 1, 2, NAN, NAN, NAN],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, NAN, 3],
    [NAN, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, NAN],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, NAN],
]).T  # units × coders

# Fleiss (1971) as worked in Wikipedia's "Fleiss' kappa": 10 subjects, 14 raters, 5 categories.
FLEISS_1971 = np.array([
    [0, 0, 0, 0, 14],
    [0, 2, 6, 4, 2],
    [0, 0, 3, 5, 6],
    [0, 3, 9, 2, 0],
    [2, 2, 8, 1, 1],
    [7, 7, 0, 0, 0],
    [3, 2, 6, 3, 0],
    [2, 5, 3, 2, 2],
    [6, 5, 2, 1, 0],
    [0, 2, 2, 3, 7],
])


def random_labels(rng, n_units, n_coders, n_labels, missing=0.4, agreement=0.6):
    """A units × coders matrix: each coder copies the unit's true label with probability `agreement`."""
    truth = rng.integers(0, n_labels, n_units)
    labels = np.where(rng.random((n_units, n_coders)) < agreement, truth[:, None],
                      rng.integers(0, n_labels, (n_units, n_coders))).astype(float)
    labels[rng.random((n_units, n_coders)) < missing] = NAN
    return labels


def reference_alpha(labels):
    """Nominal alpha straight from Krippendorff's (2011) coincidence-matrix definitions, in plain Python."""
    coincidences = Counter()
    for unit in labels:
        values = [v for v in unit if not np.isnan(v)]
        for i, a in enumerate(values):
            for j, b in enumerate(values):
                if i != j:
                    coincidences[a, b] += 1 / (len(values) - 1)
    n_value = Counter()
    for (a, _b), weight in coincidences.items():
        n_value[a] += weight
    n = sum(n_value.values())
    observed = sum(weight for (a, b), weight in coincidences.items() if a != b)
    expected = sum(n_value[a] * n_value[b] for a in n_value for b in n_value if a != b) / (n - 1)
    return 1 - observed / expected


@pytest.fixture
def numpy_alpha(monkeypatch):
    """Force the coincidence sums in numpy that large data takes instead of the krippendorff package."""
    monkeypatch.setattr(metrics, "ALPHA_PACKAGE_MAX_CELLS", 0)


# --- label_matrix ---------------------------------------------------------------------------------------------------

def test_label_matrix_puts_tasks_in_rows_annotators_in_columns_and_sorted_label_indices_in_cells():
    built = label_matrix([20, 10, 10, 20], ["bo", "al", "bo", "al"], ["dog", "cat", "cat", "bird"],
                         label_values=["dog", "cat", "bird", "fox"])
    assert built["task_ids"].tolist() == [10, 20]
    assert built["annotator_ids"].tolist() == ["al", "bo"]
    assert built["label_values"] == ["bird", "cat", "dog", "fox"]
    np.testing.assert_array_equal(built["matrix"], [[1, 1], [0, 2]])


def test_label_matrix_marks_missing_cells_nan():
    built = label_matrix([1, 2], ["a", "b"], ["x", "y"])
    np.testing.assert_array_equal(np.isnan(built["matrix"]), [[False, True], [True, False]])


def test_label_matrix_refuses_two_annotations_of_one_annotator_on_one_task_and_unknown_labels():
    with pytest.raises(ValueError, match="two current annotations"):
        label_matrix([1, 1], ["a", "a"], ["x", "y"])
    with pytest.raises(ValueError, match="not among the label values"):
        label_matrix([1], ["a"], ["zebra"], label_values=["x", "y"])


# --- Krippendorff's alpha -------------------------------------------------------------------------------------------

def test_alpha_of_the_krippendorff_2011_example_is_0_743_over_11_units():
    # Unit 12 has a single value: it is not pairable and is not counted.
    figure = agreement_krippendorff_alpha(KRIPPENDORFF_2011)
    assert figure["value"] == pytest.approx(0.743, abs=5e-4)
    assert figure["n"] == 11


def test_alpha_of_the_krippendorff_2011_example_in_numpy_too(numpy_alpha):
    assert agreement_krippendorff_alpha(KRIPPENDORFF_2011)["value"] == pytest.approx(0.743, abs=5e-4)


@pytest.mark.parametrize("seed", range(5))
def test_alpha_on_random_data_matches_the_definition_and_the_package_on_raw_data(seed, monkeypatch):
    rng = np.random.default_rng(seed)
    labels = random_labels(rng, n_units=60, n_coders=5, n_labels=4)
    expected = reference_alpha(labels)
    assert agreement_krippendorff_alpha(labels)["value"] == pytest.approx(expected, rel=1e-9)
    assert krippendorff.alpha(reliability_data=labels.T, level_of_measurement="nominal") == pytest.approx(expected)
    monkeypatch.setattr(metrics, "ALPHA_PACKAGE_MAX_CELLS", 0)
    assert agreement_krippendorff_alpha(labels)["value"] == pytest.approx(expected, rel=1e-9)
    assert agreement_krippendorff_alpha(labels)["n"] == int(((~np.isnan(labels)).sum(axis=1) >= 2).sum())


def test_alpha_is_none_when_only_one_label_occurs_or_no_unit_has_two_labels():
    assert agreement_krippendorff_alpha([[1, 1], [1, 1], [1, NAN]]) == {"value": None, "n": 2}
    assert agreement_krippendorff_alpha([[0, NAN], [NAN, 1]]) == {"value": None, "n": 0}
    assert agreement_krippendorff_alpha(np.empty((0, 3))) == {"value": None, "n": 0}


def test_alpha_is_one_for_perfect_agreement():
    assert agreement_krippendorff_alpha([[0, 0, NAN], [1, 1, 1], [2, NAN, 2]]) == {"value": 1.0, "n": 3}


def test_labels_must_be_label_indices():
    with pytest.raises(ValueError, match="label indices"):
        agreement_krippendorff_alpha([[0.5, 1]])


# --- per-label alpha ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(3))
def test_per_label_alpha_is_the_alpha_of_each_label_vs_rest_coding(seed):
    rng = np.random.default_rng(seed)
    labels = random_labels(rng, n_units=80, n_coders=4, n_labels=3)
    figures = agreement_per_label_alpha(labels, label_values=["a", "b", "c"])
    for k, value in enumerate("abc"):
        binary = np.where(np.isnan(labels), NAN, labels == k)
        assert figures[value]["value"] == pytest.approx(reference_alpha(binary), rel=1e-9)
        assert figures[value]["n"] == agreement_krippendorff_alpha(labels)["n"]


def test_per_label_alpha_with_two_labels_equals_the_overall_alpha():
    labels = random_labels(np.random.default_rng(7), n_units=50, n_coders=3, n_labels=2)
    overall = agreement_krippendorff_alpha(labels)["value"]
    assert [f["value"] for f in agreement_per_label_alpha(labels).values()] == pytest.approx([overall, overall])


def test_per_label_alpha_of_the_krippendorff_example_by_hand():
    # Value 5 is in units 10 (three times) and nowhere else; every pairable unit agrees on 5-vs-rest: alpha 1.
    # Label 0 is never used: one value only in the binary coding, so alpha is undefined.
    figures = agreement_per_label_alpha(KRIPPENDORFF_2011)
    assert figures[5] == {"value": 1.0, "n": 11}
    assert figures[0] == {"value": None, "n": 11}


# --- Fleiss' kappa --------------------------------------------------------------------------------------------------

def test_fleiss_kappa_of_the_fleiss_1971_example_is_0_210():
    figure = agreement_fleiss_kappa(FLEISS_1971, overlap=14)
    assert figure["value"] == pytest.approx(0.210, abs=5e-4)
    assert figure["n"] == 10


@pytest.mark.parametrize("seed", range(5))
def test_fleiss_kappa_on_random_data_matches_statsmodels(seed):
    rng = np.random.default_rng(seed)
    labels = random_labels(rng, n_units=200, n_coders=5, n_labels=4, missing=0.0)
    counts = category_counts(labels, 4)
    assert agreement_fleiss_kappa(counts, overlap=5)["value"] == pytest.approx(statsmodels_fleiss_kappa(counts))


def test_fleiss_kappa_leaves_out_tasks_without_exactly_the_overlap():
    extra = np.array([[3, 0, 0, 0, 0], [0, 0, 0, 0, 20]])  # 3 and 20 ratings: not the overlap of 14
    figure = agreement_fleiss_kappa(np.vstack([FLEISS_1971, extra]), overlap=14)
    assert figure["n"] == 10
    assert figure["value"] == pytest.approx(statsmodels_fleiss_kappa(FLEISS_1971))


def test_fleiss_kappa_is_none_without_qualifying_tasks_or_with_a_single_category():
    assert agreement_fleiss_kappa(FLEISS_1971, overlap=3) == {"value": None, "n": 0}
    assert agreement_fleiss_kappa([[3, 0], [3, 0]], overlap=3) == {"value": None, "n": 2}
    with pytest.raises(ValueError):
        agreement_fleiss_kappa(FLEISS_1971, overlap=1)


# --- Cohen's kappa matrix -------------------------------------------------------------------------------------------

def test_cohen_kappa_of_the_wikipedia_example_is_0_4():
    # Wikipedia "Cohen's kappa": 50 proposals; yes/yes 20, yes/no 5, no/yes 10, no/no 15: p_o 0.7, p_e 0.5.
    pairs = [(1, 1)] * 20 + [(1, 0)] * 5 + [(0, 1)] * 10 + [(0, 0)] * 15
    figure = agreement_cohen_kappa_matrix(["a", "b"], np.array(pairs, dtype=float))
    assert figure["kappa"][0][1] == pytest.approx(0.4)
    assert figure["kappa"][1][0] == pytest.approx(0.4)
    assert figure["n"] == [[0, 50], [50, 0]]
    assert figure["kappa"][0][0] is None


@pytest.mark.parametrize("seed", range(3))
def test_cohen_kappa_matrix_on_random_data_matches_scikit_learn_on_the_shared_tasks(seed):
    rng = np.random.default_rng(seed)
    labels = random_labels(rng, n_units=150, n_coders=6, n_labels=4, missing=0.5)
    figure = agreement_cohen_kappa_matrix(list("abcdef"), labels)
    assert figure["annotator_ids"] == list("abcdef")
    for i in range(6):
        for j in range(6):
            if i == j:
                continue
            shared = ~np.isnan(labels[:, i]) & ~np.isnan(labels[:, j])
            assert figure["n"][i][j] == shared.sum() >= 10
            expected = cohen_kappa_score(labels[shared, i], labels[shared, j])
            assert figure["kappa"][i][j] == pytest.approx(expected)


def test_cohen_kappa_is_none_below_the_minimum_of_shared_tasks_and_when_undefined():
    labels = np.array([[0, 0, 1], [1, 1, NAN], [0, 0, NAN], [NAN, 1, 1]], dtype=float)
    figure = agreement_cohen_kappa_matrix([1, 2, 3], labels, min_shared=3)
    assert figure["kappa"][0][1] == 1.0  # 3 shared tasks, perfect agreement
    assert figure["kappa"][0][2] is None and figure["n"][0][2] == 1  # 1 shared task
    both_constant = np.array([[1, 1]] * 12, dtype=float)  # chance agreement is 1: kappa undefined
    assert agreement_cohen_kappa_matrix(["a", "b"], both_constant)["kappa"][0][1] is None
    assert agreement_cohen_kappa_matrix(["a", "b"], np.full((3, 2), NAN))["n"] == [[0, 0], [0, 0]]


# --- mean pairwise score (any task type) ----------------------------------------------------------------------------

def test_mean_pairwise_multilabel_by_hand():
    task_ids = [1, 1, 1, 2, 2, 3]
    results = [{"labels": ["a", "b"]}, {"labels": ["b"]}, {"labels": ["a", "b"]},
               {"labels": []}, {"labels": []}, {"labels": ["c"]}]
    figure = agreement_mean_pairwise("multilabel", task_ids, results)
    # Task 1 pairs: 0.5, 1, 0.5; task 2: 1 (both empty); task 3 has one result. Pooled: 3 / 4.
    assert figure["value"] == pytest.approx(0.75)
    assert figure["n"] == 2
    assert figure["task_ids"].tolist() == [1, 2, 3]
    np.testing.assert_allclose(figure["per_task"], [2 / 3, 1.0, NAN])


@pytest.mark.parametrize("task_type", ["classification", "multilabel"])
def test_mean_pairwise_per_task_equals_task_agreement_of_scores_py(task_type):
    rng = np.random.default_rng(3)
    task_ids = rng.integers(0, 40, 150)
    labels = rng.integers(0, 3, 150)
    results = ([{"label": str(x)} for x in labels] if task_type == "classification"
               else [{"labels": sorted({str(x), str((x * 7) % 3)})} for x in labels])
    figure = agreement_mean_pairwise(task_type, task_ids, results)
    for task, value in zip(figure["task_ids"], figure["per_task"]):
        expected = task_agreement(task_type, [r for t, r in zip(task_ids, results) if t == task])
        assert (np.isnan(value) and expected is None) or value == pytest.approx(expected)


def test_mean_pairwise_is_none_without_pairs():
    assert agreement_mean_pairwise("text_spans", [1, 2], [{"spans": []}, {"spans": []}])["value"] is None
    assert agreement_mean_pairwise("bounding_boxes", [], [])["n"] == 0


# --- agreement per annotator ----------------------------------------------------------------------------------------

def test_annotator_agreement_by_hand():
    task_ids = [1, 1, 1, 2, 2, 3]
    annotators = ["a", "b", "c", "a", "b", "c"]
    labels = ["x", "x", "y", "x", "y", "x"]
    figures = annotator_agreement("classification", task_ids, annotators, [{"label": x} for x in labels])
    # a: with b on 1 (1), with c on 1 (0), with b on 2 (0); c: with a and b on 1 (0, 0); task 3 is c's alone.
    assert figures == {"a": {"value": pytest.approx(1 / 3), "n": 2}, "b": {"value": pytest.approx(1 / 3), "n": 2},
                       "c": {"value": 0.0, "n": 1}}


def test_annotator_agreement_numpy_path_for_classification_equals_the_score_path():
    # Multilabel singletons score 1 when equal and 0 otherwise, through scores.py: the same pairs as classification.
    rng = np.random.default_rng(5)
    task_ids, annotators, labels = rng.integers(0, 50, 300), rng.integers(0, 8, 300), rng.integers(0, 3, 300)
    keep = np.unique(task_ids * 8 + annotators, return_index=True)[1]
    task_ids, annotators, labels = task_ids[keep], annotators[keep], labels[keep]
    by_label = annotator_agreement("classification", task_ids, annotators, [{"label": str(x)} for x in labels])
    by_set = annotator_agreement("multilabel", task_ids, annotators, [{"labels": [str(x)]} for x in labels])
    assert by_label.keys() == by_set.keys()
    for annotator, figure in by_label.items():
        assert figure == {"value": pytest.approx(by_set[annotator]["value"]), "n": by_set[annotator]["n"]}


def test_annotator_agreement_of_someone_who_shares_no_task_is_none():
    assert annotator_agreement("classification", [1], ["a"], [{"label": "x"}]) == {"a": {"value": None, "n": 0}}


# --- majority vote --------------------------------------------------------------------------------------------------

def test_majority_vote_takes_the_most_votes_with_its_support():
    vote = consensus_majority_vote(np.array([[0, 0, 1], [2, 2, 2], [NAN, 1, NAN]]))
    assert vote["labels"].tolist() == [0, 2, 1]
    assert vote["votes"].tolist() == [2, 3, 1]
    np.testing.assert_allclose(vote["support"], [2 / 3, 1, 1])
    assert not vote["tied"].any()


def test_majority_vote_ties_go_to_the_most_accurate_annotator_on_gold_then_to_the_smallest_label():
    labels = np.array([
        [1, 0, NAN, NAN, NAN],  # coder 0 (0.99) said 1
        [NAN, 2, 1, NAN, NAN],  # coder 1 (0.60) said 2, coder 2 (0.70) said 1
        [0, 1, 1, 2, 2],        # 1 and 2 tie; coder 0 voted neither; best behind 2 is 0.80, behind 1 is 0.70
        [NAN, NAN, NAN, 2, 1],  # coder 3 (0.80) said 2, coder 4 (no gold) said 1
        [NAN, NAN, NAN, NAN, NAN],
    ])
    vote = consensus_majority_vote(labels, gold_accuracy=[0.99, 0.6, 0.7, 0.8, None])
    assert vote["labels"].tolist() == [1, 1, 2, 2, -1]
    assert vote["tied"].tolist() == [True, True, True, True, False]
    assert vote["n_votes"].tolist() == [2, 2, 5, 2, 0]
    assert np.isnan(vote["support"][4])


def test_majority_vote_ties_without_gold_or_with_equally_accurate_annotators_go_to_the_smallest_label():
    labels = np.array([[2, 1], [1, 2]], dtype=float)
    assert consensus_majority_vote(labels)["labels"].tolist() == [1, 1]
    assert consensus_majority_vote(labels, gold_accuracy=[0.9, 0.9])["labels"].tolist() == [1, 1]
    assert consensus_majority_vote(labels, gold_accuracy=[None, NAN])["labels"].tolist() == [1, 1]


# --- Dawid–Skene ----------------------------------------------------------------------------------------------------

def test_dawid_skene_posterior_by_bayes_rule_by_hand():
    confusion = np.array([[[0.9, 0.1], [0.2, 0.8]],   # a: reliable
                          [[0.6, 0.4], [0.4, 0.6]]])  # b: barely better than chance
    labels = np.array([[0, 1], [NAN, 0], [NAN, NAN]])
    posterior = dawid_skene_posterior(labels, confusion, [0.5, 0.5])
    # Unit 1: 0.5·0.9·0.4 = 0.18 against 0.5·0.2·0.6 = 0.06. Unit 2: 0.5·0.6 against 0.5·0.4. Unit 3: the priors.
    np.testing.assert_allclose(posterior, [[0.75, 0.25], [0.6, 0.4], [0.5, 0.5]])


def test_dawid_skene_on_unanimous_labels_returns_them_with_high_confidence():
    labels = np.array([[0, 0, 0], [1, 1, 1], [2, 2, NAN], [1, NAN, 1], [NAN, NAN, NAN]])
    result = consensus_dawid_skene(labels)
    assert result["labels"].tolist() == [0, 1, 2, 1, -1]
    assert (result["confidence"][:4] > 0.99).all()
    assert np.isnan(result["confidence"][4])
    assert result["converged"]


def synthetic_crowd(seed, n_tasks=6000, per_task=3):
    """Labels drawn from known confusion matrices: good, fair, biased to 0, swapping 1 and 2, noisy, fair."""
    rng = np.random.default_rng(seed)
    priors = np.array([0.5, 0.3, 0.2])
    good = [[.9, .05, .05], [.05, .9, .05], [.05, .05, .9]]
    fair = [[.7, .15, .15], [.15, .7, .15], [.15, .15, .7]]
    biased = [[.9, .05, .05], [.5, .45, .05], [.5, .05, .45]]
    swapped = [[.8, .1, .1], [.1, .1, .8], [.1, .8, .1]]
    noisy = [[.4, .3, .3], [.3, .4, .3], [.3, .3, .4]]
    confusion = np.array([good, fair, biased, swapped, noisy, fair])
    truth = rng.choice(3, n_tasks, p=priors)
    coders = np.argsort(rng.random((n_tasks, len(confusion))), axis=1)[:, :per_task].ravel()
    units = np.repeat(np.arange(n_tasks), per_task)
    given = (rng.random(len(units))[:, None] > confusion[coders, truth[units]].cumsum(axis=1)).sum(axis=1)
    labels = np.full((n_tasks, len(confusion)), NAN)
    labels[units, coders] = given
    return labels, truth, confusion, priors


@pytest.mark.parametrize("seed", range(3))
def test_dawid_skene_recovers_the_truth_better_than_majority_vote_and_the_confusion_matrices(seed):
    labels, truth, confusion, priors = synthetic_crowd(seed)
    result = consensus_dawid_skene(labels)
    vote = consensus_majority_vote(labels)
    ds_accuracy = (result["labels"] == truth).mean()
    assert ds_accuracy > (vote["labels"] == truth).mean() + 0.08
    # As good as Bayes' rule with the true matrices (the best any method can do).
    oracle = dawid_skene_posterior(labels, confusion, priors).argmax(axis=1)
    assert ds_accuracy > (oracle == truth).mean() - 0.01
    assert np.abs(result["confusion"] - confusion).max() < 0.1
    assert np.abs(result["confusion"] - confusion).mean() < 0.03
    np.testing.assert_allclose(result["priors"], priors, atol=0.04)
    assert result["converged"]


def test_dawid_skene_result_is_a_fixed_point_of_its_e_step():
    labels, *_ = synthetic_crowd(0, n_tasks=500)
    result = consensus_dawid_skene(labels)
    again = dawid_skene_posterior(labels, result["confusion"], result["priors"])
    np.testing.assert_allclose(again, result["posterior"], atol=1e-4)
    np.testing.assert_allclose(result["confidence"], result["posterior"].max(axis=1))


# --- gold accuracy --------------------------------------------------------------------------------------------------

def test_gold_accuracy_for_classification_matches_scikit_learn_per_annotator():
    rng = np.random.default_rng(11)
    annotators, given, gold = rng.integers(0, 5, 400), rng.integers(0, 3, 400), rng.integers(0, 3, 400)
    figures = gold_accuracy("classification", annotators, [{"label": int(x)} for x in given],
                            [{"label": int(x)} for x in gold])
    for annotator in range(5):
        mine = annotators == annotator
        assert figures[annotator] == {"value": pytest.approx(accuracy_score(gold[mine], given[mine])),
                                      "n": mine.sum()}


def test_gold_accuracy_for_text_spans_by_hand():
    gold = {"spans": [{"start": 0, "end": 4, "label": "PER"}, {"start": 9, "end": 14, "label": "LOC"}]}
    half = {"spans": [{"start": 0, "end": 4, "label": "PER"}]}  # F1 = 2·1 / 3
    figures = gold_accuracy("text_spans", ["a", "a", "b"], [gold, half, {"spans": []}], [gold, gold, gold])
    assert figures == {"a": {"value": pytest.approx((1 + 2 / 3) / 2), "n": 2}, "b": {"value": 0.0, "n": 1}}


# --- speed and difficulty -------------------------------------------------------------------------------------------

def test_difficulty_adjusted_speed_by_hand():
    # Task 1: 10 s and 20 s, median 15: a 1.5, b 0.75. Task 2: 30 s each: 1 and 1. Task 3: a alone, 1.
    figures = difficulty_adjusted_speed([1, 1, 2, 2, 3], ["a", "b", "a", "b", "a"], [10, 20, 30, 30, 7])
    assert figures == {"a": {"value": 1.0, "n": 3}, "b": {"value": 0.875, "n": 2}}


def test_difficulty_adjusted_speed_leaves_out_missing_and_zero_lead_times():
    figures = difficulty_adjusted_speed([1, 1, 1, 2], ["a", "b", "c", "c"], [10, 30, None, 0])
    # Task 1 median of the timed 10 and 30 is 20; c has no timed task.
    assert figures == {"a": {"value": 2.0, "n": 1}, "b": {"value": pytest.approx(2 / 3), "n": 1},
                       "c": {"value": None, "n": 0}}


def test_difficulty_adjusted_speed_on_random_data_matches_the_definition_in_plain_python():
    rng = np.random.default_rng(2)
    task_ids, annotators = rng.integers(0, 60, 500), rng.integers(0, 9, 500)
    lead_times = rng.lognormal(3, 0.7, 500)
    figures = difficulty_adjusted_speed(task_ids, annotators, lead_times)
    by_task = {}
    for task, seconds in zip(task_ids, lead_times):
        by_task.setdefault(task, []).append(seconds)
    for annotator in range(9):
        ratios = [statistics.median(by_task[t]) / s for t, a, s in zip(task_ids, annotators, lead_times)
                  if a == annotator]
        assert figures[annotator] == {"value": pytest.approx(statistics.median(ratios)), "n": len(ratios)}


def test_task_difficulty_by_hand():
    # Lead times: task 1 10 and 30 (median 20), task 2 20 and 20, task 3 40, task 4 untimed; project median 20.
    # Agreement: task 1 1.0, task 2 0.0, task 4 0.5, task 3 unknown (one annotation).
    figure = task_difficulty([1, 1, 2, 2, 3, 4], [10, 30, 20, 20, 40, None],
                             agreement_task_ids=[1, 2, 4], agreement=[1.0, 0.0, 0.5])
    assert figure["task_ids"].tolist() == [1, 2, 3, 4]
    np.testing.assert_allclose(figure["relative_time"], [1, 1, 2, NAN])
    np.testing.assert_allclose(figure["disagreement"], [0, 1, NAN, 0.5])
    # ½·0 + ½·½; ½·1 + ½·½; time alone: 2/3; disagreement alone: 0.5.
    np.testing.assert_allclose(figure["difficulty"], [0.25, 0.75, 2 / 3, 0.5])


def test_task_difficulty_from_lead_times_alone():
    figure = task_difficulty(["t1", "t2"], [5, 15])
    assert figure["task_ids"].tolist() == ["t1", "t2"]
    np.testing.assert_allclose(figure["relative_time"], [0.5, 1.5])
    np.testing.assert_allclose(figure["difficulty"], [1 / 3, 0.6])


# --- outliers -------------------------------------------------------------------------------------------------------

def test_robust_z_matches_scipy_median_absolute_deviation():
    values = np.random.default_rng(4).normal(size=101)
    expected = (values - np.median(values)) / median_abs_deviation(values, scale="normal")
    np.testing.assert_allclose(robust_z(values), expected)
    np.testing.assert_allclose(robust_z([1, 2, 3, 4, 100]), np.array([-2, -1, 0, 1, 97]) / 1.482602218505602)


def test_robust_z_falls_back_to_the_mean_absolute_deviation_when_the_mad_is_zero():
    # Median 1, MAD 0; mean absolute deviation 0.8: z of 5 = 4 / (1.2533 · 0.8).
    np.testing.assert_allclose(robust_z([1, 1, 1, 1, 5]), [0, 0, 0, 0, 4 / (1.2533141373155003 * 0.8)])
    np.testing.assert_array_equal(robust_z([2, 2, 2]), [0, 0, 0])
    assert np.isnan(robust_z([NAN, 1, 2])[0])


def team(values, n=50):
    return {f"p{i}": {"value": v, "n": n} for i, v in enumerate(values)}


def test_outlier_flags_for_a_team_of_thirty():
    normal_speed = list(np.geomspace(0.8, 1.25, 26))
    normal_gold = list(np.linspace(0.85, 0.95, 26))
    normal_agreement = list(np.linspace(0.75, 0.85, 26))
    speed = team(normal_speed + [0.2, 5.0, 5.0, 1.0])
    gold = team(normal_gold + [0.9, 0.86, 0.94, 0.5])
    agreement = team(normal_agreement + [0.8, 0.8, 0.8, 0.3])
    # p26 is slow; p27 fast with gold below the median; p28 fast with gold above it; p29 low on gold and agreement.
    flags = annotator_outlier_flags(speed=speed, gold_accuracy=gold, agreement=agreement)
    assert {a: f["flags"] for a, f in flags.items() if f["flags"]} == {
        "p26": ["slow"], "p27": ["fast_and_inaccurate"], "p29": ["low_gold", "low_agreement"]}
    assert flags["p26"]["z"]["speed"] < -3 and flags["p0"]["z"]["speed"] == pytest.approx(-0.75, abs=0.5)


def test_outlier_flags_need_20_observations():
    speed = team(list(np.geomspace(0.8, 1.25, 26)))
    speed["slowpoke"] = {"value": 0.1, "n": 19}
    speed["newcomer"] = {"value": None, "n": 0}
    flags = annotator_outlier_flags(speed=speed)
    assert flags["slowpoke"] == {"flags": [], "z": {"speed": None, "gold_accuracy": None, "agreement": None}}
    assert flags["newcomer"]["flags"] == []
    speed["slowpoke"]["n"] = 20
    assert annotator_outlier_flags(speed=speed)["slowpoke"]["flags"] == ["slow"]


def test_fast_and_inaccurate_falls_back_to_agreement_without_enough_gold():
    speed = team(list(np.geomspace(0.8, 1.25, 26)) + [5.0])
    agreement = team(list(np.linspace(0.75, 0.85, 26)) + [0.7])
    gold = {"p26": {"value": 0.99, "n": 5}}  # too few gold tasks to count
    flags = annotator_outlier_flags(speed=speed, gold_accuracy=gold, agreement=agreement)
    assert flags["p26"]["flags"] == ["fast_and_inaccurate"]
    assert annotator_outlier_flags(speed=speed)["p26"]["flags"] == []  # fast, but nothing says inaccurate


# --- review rates ---------------------------------------------------------------------------------------------------

def test_acceptance_rate_is_approvals_over_decisions_and_none_without_decisions():
    assert acceptance_rate(6, 3, 1) == 0.6
    assert acceptance_rate(0, 2, 0) == 0.0
    assert acceptance_rate(0, 0, 0) is None


def test_rework_rate_is_resubmitted_over_submitted_and_none_without_submissions():
    assert rework_rate(2, 8) == 0.25
    assert rework_rate(0, 5) == 0.0
    assert rework_rate(0, 0) is None


def test_review_rates_refuse_impossible_counts():
    for call in (lambda: rework_rate(3, 2), lambda: rework_rate(-1, 2), lambda: acceptance_rate(1.5, 0, 0),
                 lambda: acceptance_rate(True, 0, 0)):
        with pytest.raises(ValueError):
            call()


# --- scale ----------------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_a_million_annotations_333k_tasks_by_20_annotators(monkeypatch):
    # No timing asserted (bench/ is for timings); this runs in a few seconds because nothing loops over rows.
    rng = np.random.default_rng(0)
    n_tasks, n_coders = 333_334, 20
    truth = rng.integers(0, 5, n_tasks)
    coders = np.argsort(rng.random((n_tasks, n_coders)), axis=1)[:, :3].ravel()
    units = np.repeat(np.arange(n_tasks), 3)
    accuracy = np.linspace(0.3, 0.95, n_coders)  # annotators from poor to excellent: Dawid–Skene weighs them
    given = np.where(rng.random(len(units)) < accuracy[coders], truth[units], rng.integers(0, 5, len(units)))
    labels = np.full((n_tasks, n_coders), NAN)
    labels[units, coders] = given

    alpha = agreement_krippendorff_alpha(labels)
    assert alpha["n"] == n_tasks
    monkeypatch.setattr(metrics, "ALPHA_PACKAGE_MAX_CELLS", 0)
    assert agreement_krippendorff_alpha(labels)["value"] == pytest.approx(alpha["value"], rel=1e-9)
    counts = category_counts(labels)
    assert agreement_fleiss_kappa(counts, overlap=3)["value"] == pytest.approx(statsmodels_fleiss_kappa(counts))
    assert len(agreement_per_label_alpha(labels)) == 5
    kappa = agreement_cohen_kappa_matrix(list(range(n_coders)), labels)
    assert kappa["kappa"][18][19] > kappa["kappa"][0][1]
    vote = consensus_majority_vote(labels, gold_accuracy=accuracy)
    result = consensus_dawid_skene(labels)
    # Even against a vote whose ties go to the truly better annotator, Dawid–Skene weighs every vote by its author.
    assert (result["labels"] == truth).mean() > (vote["labels"] == truth).mean()
    pairwise = agreement_mean_pairwise("classification", units, [{"label": int(x)} for x in given])
    assert pairwise["n"] == n_tasks
    speed = difficulty_adjusted_speed(units, coders, rng.lognormal(3, 0.5, len(units)))
    assert all(figure["n"] > 0 for figure in speed.values())
