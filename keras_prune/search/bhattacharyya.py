"""The Bhattacharyya distance between diagonal Gaussians: NCS's measure of (negative) correlation."""

import numpy as np

__all__ = ["bhattacharyya_min"]

_CAP = 1e300


def bhattacharyya_min(means, others, sigma):
    """For each row i: min over j != i of the Bhattacharyya distance D_B(p_i, q_j).

    `p_i = N(means_i, diag sigma_i^2)`, `q_j = N(others_j, diag sigma_j^2)`. In closed
    form for diagonal covariances, with `s2 = (sigma_i^2 + sigma_j^2) / 2`:
    `1/8 sum (m_i - o_j)^2 / s2 + 1/2 sum log(s2 / (sigma_i sigma_j))`; the log term is
    computed from log step sizes, so tiny or very unequal sigmas stay finite.

    Args:
        means: shape `(N, D)`.
        others: shape `(N, D)`.
        sigma: shape `(N, D)`, the step sizes of process i (used for both row i of
            `means` and row i of `others`).

    Returns:
        Shape `(N,)`.
    """
    log_var = 2 * np.log(sigma)
    log_mean_var = np.logaddexp(log_var[:, None, :], log_var[None, :, :]) - np.log(2.0)
    log_ratio = log_mean_var - 0.5 * (log_var[:, None, :] + log_var[None, :, :])
    log_term = 0.5 * np.sum(log_ratio, axis=-1)
    diff = means[:, None, :] - others[None, :, :]
    with np.errstate(divide="ignore", over="ignore"):  # log(0) = -inf, exp(-inf) = 0: no 0 * inf
        scaled = np.exp(2 * np.log(np.abs(diff)) - log_mean_var)
    distance = 0.125 * np.sum(scaled, axis=-1) + log_term
    np.fill_diagonal(distance, np.inf)
    # Capped like the reference code's 1e300 sentinel: ratios of two distances stay defined
    # even when a vanishing step size overflows one of them.
    return np.minimum(distance.min(axis=1), _CAP)
