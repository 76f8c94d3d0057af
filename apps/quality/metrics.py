"""The quality figures of METRICS.md, computed from plain arrays: agreement, consensus, gold accuracy, task
difficulty, speed, outlier flags and review rates.

No ORM here: a Celery task reads the rows (`values_list`), calls these functions and stores what they return.
Conventions:

- Classification labels come as a units × coders matrix (`label_matrix` builds it from one row per current
  annotation): rows are tasks, columns annotators, cells the index of the label, NaN where the annotator did not
  label the task. Label indices follow the sorted label values, so the smallest index is the smallest value.
- The other functions take parallel sequences, one item per current annotation (task id, annotator id, result, …).
- A figure is `{"value": float | None, "n": int}`: None when there is no data or the figure is undefined, never 0.
  Per-task figures are numpy arrays aligned with the rows or task ids they come with (NaN or -1 for none);
  per-annotator figures are dicts keyed by annotator id.
"""

import krippendorff
import numpy as np
from scipy import sparse

from .scores import SCORES

# The krippendorff package holds units × values × values arrays (about 3 GB for 333,000 units and 20 labels);
# past this many cells the same coincidence sums are taken over units × values (tests check both agree).
ALPHA_PACKAGE_MAX_CELLS = 20_000_000
COHEN_MIN_SHARED = 10
OUTLIER_Z = 3.0
OUTLIER_MIN_OBSERVATIONS = 20
# Scales that make the median absolute deviation, and the mean absolute deviation when the MAD is 0, estimate a
# normal distribution's standard deviation (Iglewicz & Hoaglin 1993).
MAD_TO_SD = 1.482602218505602
MEAN_AD_TO_SD = 1.2533141373155003


def _figure(value, n):
    return {"value": None if value is None or not np.isfinite(value) else float(value), "n": int(n)}


# --- building the arrays --------------------------------------------------------------------------------------------

def label_matrix(task_ids, annotator_ids, labels, label_values=None):
    """The units × coders matrix of classification labels, from one row per current annotation.

    Returns `{"matrix", "task_ids", "annotator_ids", "label_values"}`: rows follow the sorted task ids, columns the
    sorted annotator ids, cells hold the index of the label in the sorted `label_values` (default: the labels seen).
    Two annotations of one annotator on one task, or a label outside `label_values`, raise ValueError.
    """
    task_ids, annotator_ids, labels = np.asarray(task_ids), np.asarray(annotator_ids), np.asarray(labels)
    if not len(task_ids) == len(annotator_ids) == len(labels):
        raise ValueError("task_ids, annotator_ids and labels must have one item per annotation.")
    values = np.unique(labels if label_values is None else np.asarray(label_values))
    codes = np.searchsorted(values, labels)
    if len(labels) and (codes.max() >= len(values) or not np.array_equal(values[codes], labels)):
        raise ValueError("A label is not among the label values.")
    tasks, rows = np.unique(task_ids, return_inverse=True)
    coders, cols = np.unique(annotator_ids, return_inverse=True)
    if len(np.unique(rows.astype(np.int64) * len(coders) + cols)) < len(rows):
        raise ValueError("An annotator has two current annotations on one task.")
    matrix = np.full((len(tasks), len(coders)), np.nan)
    matrix[rows, cols] = codes
    return {"matrix": matrix, "task_ids": tasks, "annotator_ids": coders, "label_values": values.tolist()}


def _observations(labels):
    """(unit, coder, label index) of every labelled cell of a units × coders matrix."""
    labels = np.asarray(labels, dtype=float)
    if labels.ndim != 2:
        raise ValueError("Labels must be a units × coders matrix.")
    units, coders = np.nonzero(~np.isnan(labels))
    values = labels[units, coders]
    codes = values.astype(np.intp)
    if len(values) and (codes.min() < 0 or not np.array_equal(codes, values)):
        raise ValueError("Labels must be label indices (whole numbers ≥ 0) or NaN.")
    return units, coders, codes


def category_counts(labels, n_categories=None):
    """Units × categories matrix: how many coders gave each label to each unit (Fleiss' n_ij)."""
    units, _coders, codes = _observations(labels)
    k = int(n_categories if n_categories is not None else (codes.max() + 1 if len(codes) else 0))
    if len(codes) and codes.max() >= k:
        raise ValueError("A label index is not below n_categories.")
    n_units = np.shape(labels)[0]
    return np.bincount(units * k + codes, minlength=n_units * k).reshape(n_units, k)


def _group_median(groups, values, n_groups):
    """Median of `values` per group index (NaN for an empty group), with one sort instead of a loop over groups."""
    groups, values = np.asarray(groups, dtype=np.intp), np.asarray(values, dtype=float)
    order = np.lexsort((values, groups))
    ordered = values[order]
    counts = np.bincount(groups, minlength=n_groups)
    starts = np.cumsum(counts) - counts
    medians = np.full(n_groups, np.nan)
    some = counts > 0
    low = starts[some] + (counts[some] - 1) // 2
    high = starts[some] + counts[some] // 2
    medians[some] = (ordered[low] + ordered[high]) / 2
    return medians


# --- agreement, classification --------------------------------------------------------------------------------------

def _alpha_nominal(counts):
    """Nominal alpha from units × values counts of pairable units (each with ≥ 2 values and ≥ 2 values in use)."""
    if counts.shape[0] * counts.shape[1] ** 2 <= ALPHA_PACKAGE_MAX_CELLS:
        return float(krippendorff.alpha(value_counts=counts, level_of_measurement="nominal"))
    # Krippendorff (2011): alpha = 1 - (n - 1) · (off-diagonal coincidences) / (n² - Σ n_c²), where a unit with m
    # values adds Σ_c n_uc (n_uc - 1) / (m - 1) to the diagonal and n = Σ m pairable values.
    counts = counts.astype(float)
    m = counts.sum(axis=1)
    n = m.sum()
    diagonal = ((counts * (counts - 1)).sum(axis=1) / (m - 1)).sum()
    return float(1 - (n - 1) * (n - diagonal) / (n * n - (counts.sum(axis=0) ** 2).sum()))


def _alpha_from_counts(counts):
    pairable = counts[counts.sum(axis=1) >= 2]
    in_use = pairable.sum(axis=0) > 0
    if in_use.sum() < 2:  # one value only: no expected disagreement, alpha is undefined
        return _figure(None, len(pairable))
    return _figure(_alpha_nominal(pairable[:, in_use]), len(pairable))


def agreement_krippendorff_alpha(labels):
    """Krippendorff's alpha, nominal, of a units × coders label matrix (NaN: missing); `n` = units with ≥ 2 labels.

    None when fewer than two different labels occur in those units (alpha is undefined there).
    """
    return _alpha_from_counts(category_counts(labels))


def agreement_per_label_alpha(labels, label_values=None):
    """Alpha of the label-vs-rest binary coding, per label: `{label: {"value", "n"}}` keyed by label index, or by
    `label_values[index]` when given (as `label_matrix` returns them)."""
    counts = category_counts(labels, len(label_values) if label_values is not None else None)
    totals = counts.sum(axis=1, keepdims=True)
    keys = label_values if label_values is not None else range(counts.shape[1])
    return {key: _alpha_from_counts(np.hstack([totals - counts[:, [k]], counts[:, [k]]]))
            for k, key in enumerate(keys)}


def agreement_fleiss_kappa(counts, *, overlap):
    """Fleiss' kappa over the tasks rated exactly `overlap` times.

    `counts` is a tasks × categories matrix of how many annotators chose each category (`category_counts`); rows
    with another total are left out. `n` = tasks used. None when no task qualifies or every rating falls in one
    category (chance agreement is 1 and kappa undefined).
    """
    if overlap < 2:
        raise ValueError("Fleiss' kappa needs at least two ratings per task.")
    counts = np.asarray(counts, dtype=float)
    if counts.ndim != 2:
        raise ValueError("Counts must be a tasks × categories matrix.")
    rated = counts[counts.sum(axis=1) == overlap]
    n_tasks = len(rated)
    if n_tasks == 0:
        return _figure(None, 0)
    shares = rated.sum(axis=0) / (n_tasks * overlap)
    observed = (((rated ** 2).sum(axis=1) - overlap) / (overlap * (overlap - 1))).mean()
    chance = (shares ** 2).sum()
    if chance >= 1 - 1e-12:
        return _figure(None, n_tasks)
    return _figure((observed - chance) / (1 - chance), n_tasks)


def agreement_cohen_kappa_matrix(annotator_ids, labels, *, min_shared=COHEN_MIN_SHARED):
    """Cohen's kappa of every pair of annotators on the tasks both labelled.

    `labels` is the units × coders matrix whose columns follow `annotator_ids`. Returns `{"annotator_ids", "kappa",
    "n"}` with C × C lists: `n[i][j]` shared tasks, `kappa[i][j]` None when they share fewer than `min_shared`
    (default 10: below that, one task moves the observed agreement by more than 0.1) or both gave one and the same
    label throughout (kappa undefined). The diagonal is not a pair: kappa None, n 0.
    """
    annotator_ids = list(annotator_ids)
    units, coders, codes = _observations(labels)
    n_units, n_coders = np.shape(labels)
    if n_coders != len(annotator_ids):
        raise ValueError("One annotator id per column of labels.")
    kappa = np.full((n_coders, n_coders), np.nan)
    shared = np.zeros((n_coders, n_coders), dtype=np.int64)
    if len(codes):
        k = int(codes.max()) + 1
        # One-hot units × (coder, label); its Gram matrix holds every pair's confusion matrix in one sparse product.
        onehot = sparse.csr_matrix((np.ones(len(codes)), (units, coders * k + codes)), shape=(n_units, n_coders * k))
        gram = (onehot.T @ onehot).tocoo()
        first, label_first = np.divmod(gram.row, k)
        second, label_second = np.divmod(gram.col, k)
        keep = first != second
        first, second, label_first, label_second, weight = (
            first[keep], second[keep], label_first[keep], label_second[keep], gram.data[keep])
        pairs, pair = np.unique(first.astype(np.int64) * n_coders + second, return_inverse=True)
        total = np.bincount(pair, weights=weight, minlength=len(pairs))
        same = label_first == label_second
        agreed = np.bincount(pair[same], weights=weight[same], minlength=len(pairs))
        marginal_first = np.bincount(pair * k + label_first, weights=weight, minlength=len(pairs) * k)
        marginal_second = np.bincount(pair * k + label_second, weights=weight, minlength=len(pairs) * k)
        chance = (marginal_first * marginal_second).reshape(-1, k).sum(axis=1) / total ** 2
        observed = agreed / total
        defined = (total >= min_shared) & (chance < 1 - 1e-12)
        values = np.full(len(pairs), np.nan)
        values[defined] = (observed[defined] - chance[defined]) / (1 - chance[defined])
        rows, cols = np.divmod(pairs, n_coders)
        kappa[rows, cols] = values
        shared[rows, cols] = np.rint(total).astype(np.int64)
    return {
        "annotator_ids": annotator_ids,
        "kappa": [[None if np.isnan(v) else float(v) for v in row] for row in kappa],
        "n": shared.tolist(),
    }


# --- agreement, any task type ---------------------------------------------------------------------------------------

def _pairs_within_tasks(task_index):
    """Row indices (i, j) of every pair of annotations on the same task, without a loop over tasks."""
    order = np.argsort(task_index, kind="stable")
    ordered = task_index[order]
    first, second = [], []
    step = 1
    while step < len(ordered):
        same = ordered[step:] == ordered[:-step]
        if not same.any():
            break
        first.append(order[:-step][same])
        second.append(order[step:][same])
        step += 1
    if not first:
        return np.empty(0, dtype=np.intp), np.empty(0, dtype=np.intp)
    return np.concatenate(first), np.concatenate(second)


def _pair_scores(task_type, results, first, second):
    """The score of results[first[i]] against results[second[i]] (METRICS.md); classification compares label
    codes in numpy instead of calling the score a million times."""
    if task_type == "classification":
        codes = {}
        labels = np.array([codes.setdefault((r or {}).get("label"), len(codes)) for r in results], dtype=np.intp)
        return (labels[first] == labels[second]).astype(float)
    score = SCORES[task_type]
    return np.array([score(results[i] or {}, results[j] or {}) for i, j in zip(first.tolist(), second.tolist())],
                    dtype=float)


def agreement_mean_pairwise(task_type, task_ids, results):
    """Mean pairwise score over all pairs of current annotations on the same task (METRICS.md, types without alpha).

    `task_ids` and `results` have one item per current annotation. The project value pools every pair (a task with
    more annotators has more pairs); `n` = tasks with ≥ 2 annotations. Also `task_ids` (sorted) with `per_task`,
    each task's mean pair score (NaN with fewer than two annotations).
    """
    if task_type not in SCORES:
        raise ValueError(f"Unknown task type {task_type!r}.")
    results = list(results)
    tasks, task_index = np.unique(np.asarray(task_ids), return_inverse=True)
    if len(task_index) != len(results):
        raise ValueError("One task id per result.")
    first, second = _pairs_within_tasks(task_index)
    scores = _pair_scores(task_type, results, first, second)
    pair_task = task_index[first]
    pairs = np.bincount(pair_task, minlength=len(tasks))
    summed = np.bincount(pair_task, weights=scores, minlength=len(tasks))
    per_task = np.full(len(tasks), np.nan)
    np.divide(summed, pairs, out=per_task, where=pairs > 0)
    value = scores.sum() / len(scores) if len(scores) else None
    return {**_figure(value, np.count_nonzero(pairs)), "task_ids": tasks, "per_task": per_task}


def annotator_agreement(task_type, task_ids, annotator_ids, results):
    """Per annotator: the mean pairwise score of their current annotations with other annotators' on shared tasks.

    One item per current annotation in each sequence. Returns `{annotator_id: {"value", "n"}}` with n = tasks the
    annotator shares with someone; value pools every pair the annotator is in.
    """
    if task_type not in SCORES:
        raise ValueError(f"Unknown task type {task_type!r}.")
    results = list(results)
    _tasks, task_index = np.unique(np.asarray(task_ids), return_inverse=True)
    annotators, annotator_index = np.unique(np.asarray(annotator_ids), return_inverse=True)
    if not len(task_index) == len(annotator_index) == len(results):
        raise ValueError("task_ids, annotator_ids and results must have one item per annotation.")
    first, second = _pairs_within_tasks(task_index)
    scores = _pair_scores(task_type, results, first, second)
    both = np.concatenate([annotator_index[first], annotator_index[second]])
    summed = np.bincount(both, weights=np.concatenate([scores, scores]), minlength=len(annotators))
    pairs = np.bincount(both, minlength=len(annotators))
    annotations_per_task = np.bincount(task_index)
    shared = np.bincount(annotator_index, weights=annotations_per_task[task_index] >= 2, minlength=len(annotators))
    return {annotator: _figure(summed[i] / pairs[i] if pairs[i] else None, shared[i])
            for i, annotator in enumerate(annotators.tolist())}


# --- consensus ------------------------------------------------------------------------------------------------------

def consensus_majority_vote(labels, gold_accuracy=None):
    """Majority vote per unit of a units × coders label matrix.

    Ties go to the label of the most accurate annotator on gold among those who voted a tied label
    (`gold_accuracy`: one value per column, None or NaN when unknown), then to the smallest label index.
    Returns arrays aligned with the rows: `labels` (-1 without votes), `votes` for it, `n_votes`, `support`
    (votes / n_votes, NaN without votes) and `tied` (the vote alone did not decide).
    """
    matrix = np.asarray(labels, dtype=float)
    counts = category_counts(matrix)
    n_units, n_coders = matrix.shape
    if gold_accuracy is not None:
        accuracy = np.array([np.nan if a is None else a for a in gold_accuracy], dtype=float)
        if accuracy.shape != (n_coders,):
            raise ValueError("One gold accuracy per column of labels.")
    n_votes = counts.sum(axis=1)
    winner = np.full(n_units, -1, dtype=np.intp)
    voted = n_votes > 0
    if not voted.any():
        return {"labels": winner, "votes": n_votes, "n_votes": n_votes, "support": np.full(n_units, np.nan),
                "tied": np.zeros(n_units, dtype=bool)}
    top = counts.max(axis=1)
    winner[voted] = counts[voted].argmax(axis=1)  # first maximum: the smallest tied label
    is_top = (counts == top[:, None]) & voted[:, None]
    tied = is_top.sum(axis=1) > 1
    if gold_accuracy is not None and tied.any():
        cells = matrix[tied]
        present = ~np.isnan(cells)
        codes = np.where(present, cells, 0).astype(np.intp)
        votes_tied_label = present & np.take_along_axis(is_top[tied], codes, axis=1)
        ranked = np.where(votes_tied_label & ~np.isnan(accuracy)[None, :], accuracy[None, :], -np.inf)
        best = ranked.max(axis=1)
        known = np.isfinite(best)
        choice = np.where((ranked == best[:, None]) & known[:, None], codes, np.iinfo(np.intp).max).min(axis=1)
        tied_rows = np.flatnonzero(tied)
        winner[tied_rows[known]] = choice[known]
    votes = np.where(voted, counts[np.arange(n_units), np.maximum(winner, 0)], 0)
    support = np.full(n_units, np.nan)
    np.divide(votes, n_votes, out=support, where=voted)
    return {"labels": winner, "votes": votes, "n_votes": n_votes, "support": support, "tied": tied}


def _given_labels(labels, k):
    """Sparse units × (coder, given label) one-hot matrix of a units × coders label matrix with k labels."""
    units, coders, codes = _observations(labels)
    if len(codes) and codes.max() >= k:
        raise ValueError("A label index is not below the number of labels.")
    n_units, n_coders = np.shape(labels)
    return sparse.csr_matrix((np.ones(len(codes)), (units, coders * k + codes)), shape=(n_units, n_coders * k))


def _posterior(given, log_confusion, log_priors):
    # log P(true k | labels of the unit) = log prior_k + Σ over its labels l by coder c of log confusion[c, k, l].
    n_coders, k, _k = log_confusion.shape
    log_likelihood = given @ log_confusion.transpose(0, 2, 1).reshape(n_coders * k, k)
    # Labels × units: numpy works across a few long rows several times faster than along many rows of a few labels.
    by_label = np.ascontiguousarray(log_likelihood.T)
    by_label += log_priors[:, None]
    by_label -= by_label.max(axis=0)
    np.exp(by_label, out=by_label)
    by_label /= by_label.sum(axis=0)
    return np.ascontiguousarray(by_label.T)


def dawid_skene_posterior(labels, confusion, priors):
    """Posterior label distribution per unit given annotator confusion matrices and label priors (Bayes' rule).

    `confusion[c, k, l]` = P(coder c says l | true label k); `priors[k]` = P(true label k). Units without labels
    get the priors. This is the E-step of `consensus_dawid_skene`, and scores new tasks against the matrices a full
    run estimated.
    """
    confusion, priors = np.asarray(confusion, dtype=float), np.asarray(priors, dtype=float)
    if confusion.shape != (np.shape(labels)[1], len(priors), len(priors)):
        raise ValueError("One labels × labels confusion matrix per column of labels, and one prior per label.")
    return _posterior(_given_labels(labels, len(priors)), np.log(confusion), np.log(priors))


def consensus_dawid_skene(labels, n_categories=None, *, max_iter=200, tol=1e-5, smoothing=0.01):
    """Dawid–Skene consensus: EM over per-annotator confusion matrices, started from the vote shares.

    `labels` is a units × coders label matrix. `smoothing` is a pseudo-count added to every confusion cell and
    prior, so that a label an annotator never used has a small probability instead of zero. Returns `posterior`
    (units × labels), `labels` (argmax, -1 for a unit nobody labelled), `confidence` (its posterior, NaN there),
    `confusion` (coders × true × given), `priors`, `iterations` and `converged` (the largest posterior change of
    the last iteration was below `tol`).
    """
    matrix = np.asarray(labels, dtype=float)
    counts = category_counts(matrix, n_categories)
    n_units, n_coders = matrix.shape
    k = counts.shape[1]
    if k == 0:
        raise ValueError("Dawid–Skene needs at least one label (pass n_categories).")
    n_votes = counts.sum(axis=1)
    seen = n_votes > 0
    # Units with the same labels from the same coders have the same posterior: EM runs once per distinct pattern,
    # each weighted by how many units share it (the same sums, far fewer rows when coders and labels are few).
    patterns, pattern_of, weight = _label_patterns(matrix[seen])
    given = _given_labels(patterns, k)
    pattern_counts = category_counts(patterns, k)
    posterior = pattern_counts / pattern_counts.sum(axis=1, keepdims=True)
    weighted_by_coder = given.T.tocsr()
    converged, iteration = False, 0
    for iteration in range(1, max_iter + 1):
        # M-step: expected counts of (coder, given label, true label), then per coder P(given | true).
        weighted = posterior * weight[:, None]
        confusion = (weighted_by_coder @ weighted).reshape(n_coders, k, k).transpose(0, 2, 1) + smoothing
        confusion /= confusion.sum(axis=2, keepdims=True)
        priors = weighted.sum(axis=0) + smoothing
        priors /= priors.sum()
        updated = _posterior(given, np.log(confusion), np.log(priors))  # E-step
        change = np.abs(updated - posterior).max() if len(updated) else 0.0
        posterior = updated
        if change < tol:
            converged = True
            break
    full = np.tile(priors, (n_units, 1))
    full[seen] = posterior[pattern_of]
    return {"posterior": full, "labels": np.where(seen, full.argmax(axis=1), -1),
            "confidence": np.where(seen, full.max(axis=1), np.nan), "confusion": confusion, "priors": priors,
            "iterations": iteration, "converged": converged}


def _label_patterns(matrix):
    """The distinct rows of a units × coders label matrix (NaN: missing), which row each unit has, and how many
    units have each."""
    if not len(matrix):
        return matrix, np.zeros(0, dtype=np.intp), np.zeros(0)
    codes = np.where(np.isnan(matrix), -1, matrix).astype(np.int64)
    base = int(codes.max()) + 2
    if base ** codes.shape[1] < 2 ** 62:  # each row as one integer (base-k digits): one sort of integers
        rows = codes @ (base ** np.arange(codes.shape[1], dtype=np.int64)) + (base ** codes.shape[1] - 1) // (base - 1)
    else:
        rows = codes
    _patterns, first, pattern_of, weight = np.unique(rows, axis=0 if rows.ndim == 2 else None, return_index=True,
                                                     return_inverse=True, return_counts=True)
    return matrix[first], pattern_of.reshape(-1), weight.astype(float)


# --- annotators -----------------------------------------------------------------------------------------------------

def gold_accuracy(task_type, annotator_ids, results, gold_answers):
    """Per annotator: the mean score of their current annotations on gold tasks against the gold answer.

    One item per current annotation on a gold task in each sequence. Returns `{annotator_id: {"value", "n"}}`.
    """
    if task_type not in SCORES:
        raise ValueError(f"Unknown task type {task_type!r}.")
    results, gold_answers = list(results), list(gold_answers)
    annotators, annotator_index = np.unique(np.asarray(annotator_ids), return_inverse=True)
    if not len(annotator_index) == len(results) == len(gold_answers):
        raise ValueError("annotator_ids, results and gold_answers must have one item per annotation.")
    if task_type == "classification":
        scores = _pair_scores(task_type, results + gold_answers, np.arange(len(results)),
                              np.arange(len(results), 2 * len(results)))
    else:
        score = SCORES[task_type]
        scores = np.array([score(r or {}, g or {}) for r, g in zip(results, gold_answers)], dtype=float)
    summed = np.bincount(annotator_index, weights=scores, minlength=len(annotators))
    counted = np.bincount(annotator_index, minlength=len(annotators))
    return {annotator: _figure(summed[i] / counted[i], counted[i]) for i, annotator in enumerate(annotators.tolist())}


def _timed(lead_times, *others):
    """Lead times as floats and which of them count: a missing or zero lead time says nothing about speed (and a
    ratio to zero is infinite)."""
    lead_times = np.asarray(lead_times, dtype=float)  # None becomes NaN
    if any(len(other) != len(lead_times) for other in others):
        raise ValueError("One lead time per annotation.")
    return lead_times, np.isfinite(lead_times) & (lead_times > 0)


def difficulty_adjusted_speed(task_ids, annotator_ids, lead_times):
    """Per annotator (METRICS.md): for each task they did, the task's median lead time over all annotators ÷ their
    own lead time; the median of that ratio (> 1 = faster than others on the same tasks).

    One item per current annotation. Annotations without a positive lead time are left out of both medians.
    Returns `{annotator_id: {"value", "n"}}` with n = timed tasks.
    """
    task_ids, annotator_ids = np.asarray(task_ids), np.asarray(annotator_ids)
    lead_times, timed = _timed(lead_times, task_ids, annotator_ids)
    annotators, annotator_index = np.unique(annotator_ids, return_inverse=True)
    tasks, task_index = np.unique(task_ids[timed], return_inverse=True)
    task_median = _group_median(task_index, lead_times[timed], len(tasks))
    ratio = task_median[task_index] / lead_times[timed]
    speed = _group_median(annotator_index[timed], ratio, len(annotators))
    counted = np.bincount(annotator_index[timed], minlength=len(annotators))
    return {annotator: _figure(speed[i], counted[i]) for i, annotator in enumerate(annotators.tolist())}


def task_difficulty(task_ids, lead_times, *, agreement_task_ids=None, agreement=None):
    """Each task's difficulty in [0, 1] from disagreement and time.

    difficulty = ½ · (1 − agreement) + ½ · r / (1 + r), where agreement is the task's mean pairwise score
    (`agreement_mean_pairwise(...)["per_task"]`, with its `task_ids`) and r the task's median lead time ÷ the
    project's median lead time (all timed annotations). r / (1 + r) is ½ at the project's median, ⅔ at twice it and
    ⅓ at half, so a task on which everybody agreed at the usual pace scores 0.25, one on which nobody agreed and
    that took twice as long 0.83. With one part unknown (a single annotation, no lead time), the other alone.

    `task_ids` and `lead_times` have one item per current annotation. Returns arrays over the sorted union of task
    ids: `task_ids`, `difficulty`, `disagreement` (1 − agreement) and `relative_time` (r); NaN when unknown.
    """
    task_ids = np.asarray(task_ids)
    lead_times, timed = _timed(lead_times, task_ids)
    if agreement_task_ids is None:
        agreement_task_ids, agreement = task_ids[:0], []
    agreement_task_ids, agreement = np.asarray(agreement_task_ids), np.asarray(agreement, dtype=float)
    if len(agreement_task_ids) != len(agreement):
        raise ValueError("One agreement value per agreement task id.")
    tasks = np.union1d(task_ids, agreement_task_ids)
    disagreement = np.full(len(tasks), np.nan)
    disagreement[np.searchsorted(tasks, agreement_task_ids)] = 1 - agreement
    relative_time = np.full(len(tasks), np.nan)
    if timed.any():
        task_index = np.searchsorted(tasks, task_ids[timed])
        relative_time = _group_median(task_index, lead_times[timed], len(tasks)) / np.median(lead_times[timed])
    parts = np.vstack([disagreement, relative_time / (1 + relative_time)])
    known = (~np.isnan(parts)).sum(axis=0)
    difficulty = np.full(len(tasks), np.nan)
    np.divide(np.nansum(parts, axis=0), known, out=difficulty, where=known > 0)
    return {"task_ids": tasks, "difficulty": difficulty, "disagreement": disagreement, "relative_time": relative_time}


# --- outliers -------------------------------------------------------------------------------------------------------

def robust_z(values):
    """Robust z-scores: (x − median) / (1.4826 · MAD); with a MAD of 0, the mean absolute deviation · 1.2533
    (Iglewicz & Hoaglin); all 0 when every value is the same. NaN stays NaN and is left out of the median."""
    values = np.asarray(values, dtype=float)
    z = np.full(values.shape, np.nan)
    known = ~np.isnan(values)
    if not known.any():
        return z
    deviation = np.abs(values[known] - np.median(values[known]))
    scale = MAD_TO_SD * np.median(deviation)
    if scale == 0:
        scale = MEAN_AD_TO_SD * deviation.mean()
    z[known] = 0.0 if scale == 0 else (values[known] - np.median(values[known])) / scale
    return z


def _team_z(figures, min_observations, transform=None):
    """{annotator_id: z} over the annotators whose figure rests on at least `min_observations`."""
    eligible = [(a, f["value"]) for a, f in (figures or {}).items()
                if f["value"] is not None and f["n"] >= min_observations]
    if not eligible:
        return {}
    values = np.array([v for _a, v in eligible], dtype=float)
    z = robust_z(transform(values) if transform else values)
    return {a: float(score) for (a, _v), score in zip(eligible, z)}


def annotator_outlier_flags(*, speed=None, gold_accuracy=None, agreement=None,
                            min_observations=OUTLIER_MIN_OBSERVATIONS, threshold=OUTLIER_Z):
    """The outlier flags of METRICS.md per annotator, each annotator compared with the team's distribution.

    Inputs are `{annotator_id: {"value", "n"}}` as `difficulty_adjusted_speed`, `gold_accuracy` and
    `annotator_agreement` return them. A figure counts when it rests on at least `min_observations` (20) tasks,
    and its robust z-score is taken among the annotators whose figure counts:
    - `slow`: z of log(speed) < −3 (speed is a ratio: half as fast is as far as twice as fast);
    - `fast_and_inaccurate`: z of log(speed) > 3 and quality below the team's median (gold accuracy z < 0, or
      agreement z < 0 when gold accuracy does not count for them);
    - `low_gold`: gold accuracy z < −3; `low_agreement`: agreement z < −3.
    Returns `{annotator_id: {"flags": [...], "z": {"speed", "gold_accuracy", "agreement"}}}` (a z None when that
    figure does not count) for every annotator in any input.
    """
    z_speed = _team_z(speed, min_observations, np.log)
    z_gold = _team_z(gold_accuracy, min_observations)
    z_agreement = _team_z(agreement, min_observations)
    annotators = set(speed or {}) | set(gold_accuracy or {}) | set(agreement or {})
    flagged = {}
    for annotator in annotators:
        s, g, a = z_speed.get(annotator), z_gold.get(annotator), z_agreement.get(annotator)
        quality = g if g is not None else a
        flags = []
        if s is not None and s < -threshold:
            flags.append("slow")
        if s is not None and s > threshold and quality is not None and quality < 0:
            flags.append("fast_and_inaccurate")
        if g is not None and g < -threshold:
            flags.append("low_gold")
        if a is not None and a < -threshold:
            flags.append("low_agreement")
        flagged[annotator] = {"flags": flags, "z": {"speed": s, "gold_accuracy": g, "agreement": a}}
    return flagged


# --- reviews --------------------------------------------------------------------------------------------------------

def _count(value, name):
    if isinstance(value, bool) or int(value) != value or value < 0:
        raise ValueError(f"{name} must be a whole number ≥ 0.")
    return int(value)


def acceptance_rate(approved, rejected, fixed):
    """approve ÷ (approve + reject + fix) over decided reviews; None without any (METRICS.md "Annotator")."""
    approved, rejected, fixed = (_count(v, n) for v, n in ((approved, "approved"), (rejected, "rejected"),
                                                           (fixed, "fixed")))
    decided = approved + rejected + fixed
    return approved / decided if decided else None


def rework_rate(resubmitted, submitted):
    """Assignments resubmitted at least once ÷ assignments submitted; None when none was submitted."""
    resubmitted, submitted = _count(resubmitted, "resubmitted"), _count(submitted, "submitted")
    if resubmitted > submitted:
        raise ValueError("More assignments resubmitted than submitted.")
    return resubmitted / submitted if submitted else None
