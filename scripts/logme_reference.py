"""Reference values for tests/select_logme.rs: LogME and the H-score computed
independently of src/select/logme.rs.

Where the Rust code works in the eigenbasis of one Gram matrix, this script
follows the paper's formulas (with the authors' epsilon in the updates) with full matrices: A = alpha I + beta F^T F,
m = beta A^-1 F^T y, evidence with log det A, and MacKay's updates
gamma = sum beta s / (alpha + beta s), alpha = gamma / m^T m,
beta = (n - gamma) / |F m - y|^2, iterated to convergence. The H-score is
tr(inv(LW(Cov f)) Cov(E[f|y])) with the Ledoit-Wolf shrinkage estimate.

    python3 scripts/logme_reference.py     (needs numpy)

Prints the values the test asserts; the features are the same closed-form
matrices the test builds.
"""
import math

import numpy as np


def features(n, d, shift):
    f = np.empty((n, d))
    for i in range(n):
        for j in range(d):
            f[i, j] = math.sin(0.37 * i * (j + 1) + shift) + 0.25 * math.cos(1.3 * j - 0.11 * i)
    return f


def evidence(f, y):
    n, d = f.shape
    ftf = f.T @ f
    s = np.linalg.eigvalsh(ftf)
    alpha, beta = 1.0, 1.0
    for _ in range(10000):
        a = alpha * np.eye(d) + beta * ftf
        m = beta * np.linalg.solve(a, f.T @ y)
        gamma = np.sum(beta * s / (alpha + beta * s))
        # The authors' epsilon (1e-5) keeps the updates finite where the
        # evidence peaks at w = 0 or at an exact fit.
        new_alpha = gamma / (m @ m + 1e-5)
        new_beta = max(n - gamma, 1e-5) / (np.sum((f @ m - y) ** 2) + 1e-5)
        done = abs(new_alpha / new_beta - alpha / beta) / (alpha / beta) < 1e-12
        alpha, beta = new_alpha, new_beta
        if done:
            break
    a = alpha * np.eye(d) + beta * ftf
    m = beta * np.linalg.solve(a, f.T @ y)
    _, logdet = np.linalg.slogdet(a)
    ev = (d / 2 * math.log(alpha) + n / 2 * math.log(beta) - n / 2 * math.log(2 * math.pi)
          - beta / 2 * np.sum((f @ m - y) ** 2) - alpha / 2 * (m @ m) - 0.5 * logdet)
    return ev / n


def logme_classes(f, labels, classes):
    return float(np.mean([evidence(f, (labels == k).astype(float)) for k in range(classes)]))


def ledoit_wolf(fc):
    """Ledoit-Wolf shrinkage towards mu*I, written from the paper's formulas
    (sum over rows of the Frobenius distance of x x^T to S, explicitly)."""
    n, d = fc.shape
    s = fc.T @ fc / n
    mu = np.trace(s) / d
    delta2 = np.sum((s - mu * np.eye(d)) ** 2)
    beta2 = sum(np.sum((np.outer(x, x) - s) ** 2) for x in fc) / n ** 2
    shrink = min(beta2, delta2) / delta2
    return shrink * mu * np.eye(d) + (1 - shrink) * s


def h_score(f, labels, classes):
    fc = f - f.mean(axis=0)
    g = np.zeros_like(fc)
    for k in range(classes):
        g[labels == k] = fc[labels == k].mean(axis=0)
    n = f.shape[0]
    cov_g = g.T @ g / n
    return float(np.trace(np.linalg.inv(ledoit_wolf(fc)) @ cov_g))


def main():
    n, d = 60, 7
    labels = np.array([i % 3 for i in range(n)])
    f = features(n, d, 0.0)
    f[:, 0] += 0.8 * labels  # some class signal
    scores = np.array([0.5 * (i % 5) + 0.1 * math.sin(i) for i in range(n)])
    wide = features(9, 14, 0.5)
    wide_labels = np.array([i % 2 for i in range(9)])
    print(f"classes n>=d  logme {logme_classes(f, labels, 3):.12f}")
    print(f"classes n>=d  hscore {h_score(f, labels, 3):.12f}")
    print(f"regression    logme {evidence(f, scores):.12f}")
    print(f"classes n<d   logme {logme_classes(wide, wide_labels, 2):.12f}")
    print(f"classes n<d   hscore {h_score(wide, wide_labels, 2):.12f}")


if __name__ == "__main__":
    main()
