"""Write tests/fixtures/ridge_sklearn.json: reference RidgeCV fits for crate/tests/probe_ridge.rs.

The Rust `probelab::probe::RidgeCv` must match scikit-learn's
`RidgeCV(alphas=..., fit_intercept=...)` in its default efficient leave-one-out mode
(scoring=None, alpha_per_target=False, gcv_mode="auto") on the same data: same chosen alpha,
coefficients / intercept / predictions / per-alpha LOO errors within 1e-6 relative.

Requirements (this script installs nothing itself):

    pip install scikit-learn numpy

Generated with Python 3.11.7, scikit-learn 1.9.1, numpy 2.4.6 (scipy 1.17.1).
Run from the repository root:

    python3 tests/scripts/sklearn_ridge_fixture.py

Every X and y value is float32-representable and written with Python's shortest round-trip
repr, so the Rust side reads back exactly the values scikit-learn saw (X as f32 -> f64 exactly;
y parsed as f64 and rounded through f32, which recovers the exact value).
"""

import json
import os
import sys

import numpy as np
import sklearn
from sklearn.linear_model import RidgeCV

DEFAULT_ALPHAS = np.logspace(-2, 6, 17)
OUT = os.path.join(os.path.dirname(__file__), "..", "fixtures", "ridge_sklearn.json")


def f32(a):
    """Round to float32 and back so both sides see identical values."""
    return np.asarray(a, dtype=np.float32).astype(np.float64)


def planted(rng, x, k, noise):
    w = rng.normal(size=(x.shape[1], k))
    y = x @ w + noise * rng.normal(size=(x.shape[0], k)) + rng.normal(size=k) * 3.0
    return y


def make_cases():
    rng = np.random.RandomState(20240611)
    cases = []

    def add(name, x, y, x_test, alphas=DEFAULT_ALPHAS, fit_intercept=True):
        cases.append(
            dict(
                name=name,
                x=f32(x),
                y=f32(y),
                x_test=f32(x_test),
                alphas=np.asarray(alphas, dtype=np.float64),
                fit_intercept=fit_intercept,
            )
        )

    # n > d: covariance route.
    x = rng.normal(size=(70, 8)) * 2.0 + 1.5
    add("tall_k1", x[:60], planted(rng, x[:60], 1, 3.0), x[60:])
    x = rng.normal(size=(90, 12))
    add("tall_k2", x[:80], planted(rng, x[:80], 2, 4.0), x[80:])

    # n < d and n == d: Gram route.
    x = rng.normal(size=(35, 40))
    add("wide_k1", x[:25], planted(rng, x[:25], 1, 2.0), x[25:])
    x = rng.normal(size=(40, 50)) * 0.5
    add("wide_k2", x[:30], planted(rng, x[:30], 2, 1.0), x[30:])
    x = rng.normal(size=(28, 20))
    add("square_k2", x[:20], planted(rng, x[:20], 2, 2.0), x[20:])

    # Ill-conditioned: near-collinear columns and mixed scales (tall), low rank (wide).
    base = rng.normal(size=(60, 6))
    x = np.column_stack(
        [
            base,
            base[:, 0] + 1e-4 * rng.normal(size=60),
            base[:, 1] - base[:, 2] + 1e-5 * rng.normal(size=60),
            1000.0 * base[:, 3] + 1e-2 * rng.normal(size=60),
            0.001 * rng.normal(size=60),
        ]
    )
    add("collinear_tall_k2", x[:50], planted(rng, x[:50], 2, 2.0), x[50:])
    low = rng.normal(size=(30, 4)) @ rng.normal(size=(4, 30)) + 1e-6 * rng.normal(size=(30, 30))
    add("collinear_wide_k1", low[:20], planted(rng, low[:20], 1, 1.0), low[20:])

    # No intercept, with clearly non-zero feature and target means.
    x = rng.normal(size=(50, 6)) + 4.0
    add("no_intercept_k2", x[:40], planted(rng, x[:40], 2, 2.0), x[40:], fit_intercept=False)
    x = rng.normal(size=(20, 30)) + 2.0
    add("no_intercept_wide_k1", x[:15], planted(rng, x[:15], 1, 1.0), x[15:], fit_intercept=False)

    # A short, unsorted grid: ties and ordering follow the grid as given, three targets.
    x = rng.normal(size=(50, 15))
    add("custom_alphas_k3", x[:40], planted(rng, x[:40], 3, 5.0), x[40:], alphas=[0.5, 3.0, 0.1, 20.0, 7.0])
    return cases


def fit_case(case):
    x, y = case["x"], case["y"]
    k = y.shape[1]
    y_fit = y[:, 0] if k == 1 else y  # 1-D y for k = 1, as a user would pass it
    model = RidgeCV(alphas=case["alphas"], fit_intercept=case["fit_intercept"], store_cv_results=True)
    model.fit(x, y_fit)
    # cv_results_: (n, alphas) or (n, k, alphas) squared LOO errors.
    cv = model.cv_results_.reshape(x.shape[0], -1, len(case["alphas"]))
    cv_errors = cv.mean(axis=(0, 1))
    order = np.sort(cv_errors)
    margin = (order[1] - order[0]) / order[0] if len(order) > 1 else np.inf
    if margin < 1e-6:
        sys.exit(f"{case['name']}: best and runner-up alpha too close ({margin:.2e}); change the data")
    alpha_index = int(np.flatnonzero(case["alphas"] == model.alpha_)[0])
    assert alpha_index == int(np.argmin(cv_errors))
    coef = np.atleast_2d(model.coef_)
    intercept = np.atleast_1d(model.intercept_) * np.ones(k)
    return dict(
        name=case["name"],
        n_samples=x.shape[0],
        n_features=x.shape[1],
        n_targets=k,
        fit_intercept=case["fit_intercept"],
        gcv_route="gram" if x.shape[0] <= x.shape[1] else "cov",
        alphas=case["alphas"].tolist(),
        x=x.ravel().tolist(),
        y=y.ravel().tolist(),
        x_test=case["x_test"].ravel().tolist(),
        n_test=case["x_test"].shape[0],
        alpha=float(model.alpha_),
        alpha_index=alpha_index,
        selection_margin=float(margin),
        cv_errors=cv_errors.tolist(),
        best_score=float(model.best_score_),
        coef=coef.ravel().tolist(),
        intercept=intercept.tolist(),
        predict_train=model.predict(x).reshape(x.shape[0], k).ravel().tolist(),
        predict_test=model.predict(case["x_test"]).reshape(-1, k).ravel().tolist(),
    )


def main():
    out = dict(
        generator="tests/scripts/sklearn_ridge_fixture.py",
        sklearn_version=sklearn.__version__,
        numpy_version=np.__version__,
        default_alphas=DEFAULT_ALPHAS.tolist(),
        cases=[fit_case(c) for c in make_cases()],
    )
    with open(OUT, "w") as f:
        json.dump(out, f, separators=(",", ":"))
        f.write("\n")
    for c in out["cases"]:
        print(
            f"{c['name']:>22}: n={c['n_samples']:3d} d={c['n_features']:3d} k={c['n_targets']} "
            f"{c['gcv_route']:>4} alpha={c['alpha']:.4g} (#{c['alpha_index']}) margin={c['selection_margin']:.2e}"
        )
    print(f"wrote {os.path.normpath(OUT)} ({os.path.getsize(OUT)} bytes)")


if __name__ == "__main__":
    main()
