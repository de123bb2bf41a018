"""Loss functions of MIDG, written with `keras.ops` so they run on every backend.

Every function casts its inputs to float32 first: under a `mixed_float16` or
`mixed_bfloat16` policy the layers produce half-precision tensors, and sums of
squares in half precision overflow or lose the small terms that matter.

Masks are boolean `(batch, time)` tensors (True = a real token). A masked mean
averages over the real tokens only and is 0 (not NaN) when there are none.

Decoupling terms (`gaussian_kl_standard_normal`, `masked_mse`) are averaged
over feature dimensions as well as tokens ("nats per dimension"), so that
their scale does not grow with `--hidden_dim` and the loss weights in docs/design.md §5
keep their meaning when the width changes.
"""

from keras import ops


def _float32(x):
    return ops.cast(x, "float32")


def masked_mean(values, mask=None):
    """Mean of `values` over the elements that `mask` marks as real.

    Args:
        values: tensor `(batch, time)` or `(batch, time, ...)`.
        mask: optional boolean `(batch, time)`; None means every token is real.

    Returns:
        float32 scalar; 0 when the mask selects nothing.
    """
    values = _float32(values)
    if mask is None:
        return ops.mean(values)
    weights = _float32(mask)
    for _ in range(len(values.shape) - len(weights.shape)):
        weights = ops.expand_dims(weights, -1)
    weights = weights * ops.ones_like(values)
    total = ops.sum(values * weights)
    count = ops.sum(weights)
    return total / ops.maximum(count, 1.0)


def gaussian_kl_standard_normal(mean, log_var, mask=None):
    """KL(N(mean, exp(log_var)) || N(0, I)) per dimension, averaged over real tokens.

    This is the prior term of the decoupling bound (paper Eq. 2 read with
    standard normal priors, docs/design.md §4.2). Per element it is
    `0.5 * (exp(log_var) + mean**2 - 1 - log_var)`.

    Args:
        mean: `(batch, time, dim)` (or `(batch, dim)`) posterior means.
        log_var: same shape, posterior log-variances.
        mask: optional boolean `(batch, time)`.

    Returns:
        float32 scalar.
    """
    mean = _float32(mean)
    log_var = _float32(log_var)
    kl = 0.5 * (ops.exp(log_var) + ops.square(mean) - 1.0 - log_var)
    return masked_mean(kl, mask)


def gaussian_kl(mean, log_var, prior_mean, prior_log_var, mask=None):
    """KL(N(mean, exp(log_var)) || N(prior_mean, exp(prior_log_var))) per dim, masked mean.

    The cross-stream prior term of paper Eq. 2 as printed (`decouple=cross_kl_*`):
    each stream's posterior is measured against the other stream's. Per element it is
    `0.5 * (log_var_p - log_var + (exp(log_var) + (mean - mean_p)**2) / exp(log_var_p) - 1)`.

    Args:
        mean, log_var: `(batch, time, dim)` posterior.
        prior_mean, prior_log_var: same shape, the prior.
        mask: optional boolean `(batch, time)`.

    Returns:
        float32 scalar.
    """
    mean, log_var = _float32(mean), _float32(log_var)
    prior_mean, prior_log_var = _float32(prior_mean), _float32(prior_log_var)
    kl = 0.5 * (
        prior_log_var
        - log_var
        + (ops.exp(log_var) + ops.square(mean - prior_mean)) / ops.exp(prior_log_var)
        - 1.0
    )
    return masked_mean(kl, mask)


def masked_mse(a, b, mask=None):
    """Mean squared error between `a` and `b` over real tokens and all dimensions.

    Used as the Gaussian reconstruction likelihood of paper Eq. 3 (up to a
    constant and scale).

    Args:
        a: `(batch, time, dim)` tensor.
        b: tensor of the same shape.
        mask: optional boolean `(batch, time)`.

    Returns:
        float32 scalar.
    """
    return masked_mean(ops.square(_float32(a) - _float32(b)), mask)


def gaussian_log_likelihood(y, mean, log_var, mask=None):
    """log N(y; mean, exp(log_var)) per dimension without the `log(2*pi)/2` constant.

    Args:
        y: `(batch, time, dim)` observed values.
        mean: same shape, predicted means.
        log_var: same shape, predicted log-variances.
        mask: optional boolean `(batch, time)`.

    Returns:
        float32 scalar: the average over real tokens and dimensions.
    """
    y, mean, log_var = _float32(y), _float32(mean), _float32(log_var)
    log_prob = -0.5 * (ops.square(y - mean) * ops.exp(-log_var) + log_var)
    return masked_mean(log_prob, mask)


def regression_loss(y_true, y_pred, kind="mse"):
    """Sentiment regression loss (paper Eq. 6) on flattened targets.

    Both tensors are flattened first, so `(batch,)` labels against
    `(batch, 1)` predictions never broadcast into a `(batch, batch)` matrix.

    Args:
        y_true: `(batch,)` or `(batch, 1)` labels.
        y_pred: `(batch,)` or `(batch, 1)` predictions.
        kind: "mse" (paper) or "l1".

    Returns:
        float32 scalar.
    """
    y_true = ops.reshape(_float32(y_true), (-1,))
    y_pred = ops.reshape(_float32(y_pred), (-1,))
    if kind == "mse":
        return ops.mean(ops.square(y_true - y_pred))
    if kind == "l1":
        return ops.mean(ops.abs(y_true - y_pred))
    raise ValueError(f"regression_loss: kind must be 'mse' or 'l1', got {kind!r}.")


def label_distribution_loss(y_true, logits, centers, sigma):
    """KL(soft target || softmax(logits)) of a distribution head, mean over the batch.

    The soft target of a label y puts mass exp(-(c - y)^2 / (2 sigma^2)) on each bin
    center c, normalized: neighbouring scores share the credit, so a label of 1.4 teaches
    the bins at 1.3 and 1.5 too (label distribution learning, Gao et al. 2017). It is 0
    when the predicted distribution equals the target.

    Args:
        y_true: `(batch,)` or `(batch, 1)` labels on the common scale.
        logits: `(batch, bins)`.
        centers: `(bins,)` bin centers.
        sigma: the target's spread, in label units (> 0).

    Returns:
        float32 scalar.
    """
    y_true = ops.reshape(_float32(y_true), (-1, 1))
    distance = (_float32(centers)[None, :] - y_true) / sigma
    log_target = ops.log_softmax(-0.5 * ops.square(distance), axis=-1)
    log_predicted = ops.log_softmax(_float32(logits), axis=-1)
    return ops.mean(ops.sum(ops.exp(log_target) * (log_target - log_predicted), axis=-1))


def domain_bce_with_logits(domain_labels, logits):
    """Domain classification loss of the discriminator (paper Eq. 4).

    With one logit per example (two domains) this is binary cross-entropy on
    the logit; with one logit per domain it is sparse categorical
    cross-entropy (several source datasets, `--domain_labels=source`).

    Args:
        domain_labels: `(batch,)` or `(batch, 1)` integer or float domain ids.
        logits: `(batch,)` or `(batch, 1)` for two domains, `(batch, num_domains)`
            otherwise.

    Returns:
        float32 scalar.
    """
    logits = _float32(logits)
    if len(logits.shape) == 1 or logits.shape[-1] == 1:
        labels = ops.reshape(_float32(domain_labels), (-1,))
        logits = ops.reshape(logits, (-1,))
        return ops.mean(ops.binary_crossentropy(labels, logits, from_logits=True))
    labels = ops.reshape(ops.cast(domain_labels, "int32"), (-1,))
    return ops.mean(ops.sparse_categorical_crossentropy(labels, logits, from_logits=True))


def load_balance_loss(router_probs, expert_mask):
    """Switch-Transformer load-balance loss `K * sum_i f_i * P_i`.

    `f_i` is the fraction of routing assignments that went to expert `i`,
    `P_i` the mean router probability of expert `i`. It equals 1 when the load
    is perfectly balanced and grows to `K` when one expert takes everything
    (Fedus et al. 2021, Eq. 4).

    Args:
        router_probs: `(batch, num_experts)` softmax router probabilities.
        expert_mask: `(batch, num_experts)`, 1 where an example was routed to
            an expert, 0 elsewhere.

    Returns:
        float32 scalar.
    """
    router_probs = _float32(router_probs)
    expert_mask = _float32(expert_mask)
    num_experts = router_probs.shape[-1]
    assignments = ops.sum(expert_mask, axis=-1, keepdims=True)
    fraction_routed = ops.mean(expert_mask / ops.maximum(assignments, 1.0), axis=0)
    mean_probs = ops.mean(router_probs, axis=0)
    return float(num_experts) * ops.sum(fraction_routed * mean_probs)
