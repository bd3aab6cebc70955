"""train/importance.py on a model whose dependence is known: permutation importance is 0 for an
input the model ignores, clearly positive for the one it uses, reproducible with the seed."""

from __future__ import annotations

import numpy as np

from slotml.train.importance import format_importance, permutation, ranked


def test_permutation_importance_of_a_known_model() -> None:
    rng = np.random.default_rng(3)
    X = rng.standard_normal((4000, 3)).astype(np.float32)
    p_true = 1 / (1 + np.exp(-3 * X[:, 0] - 0.3 * X[:, 2]))
    y = (rng.random(4000) < p_true).astype(np.int8)

    def predict(x: np.ndarray) -> np.ndarray:
        return 1 / (1 + np.exp(-3 * x[:, 0] - 0.3 * x[:, 2]))

    names = ["signal", "noise", "weak"]
    got = permutation(predict, X, y, names, repeats=4, seed=1)
    m = got["mean"]
    assert m["noise"] == 0.0 and got["std"]["noise"] == 0.0  # never read: shuffling changes nothing
    assert m["signal"] > 0.1 and m["signal"] > 10 * m["weak"] > 0
    assert got["rows"] == 4000 and got["repeats"] == 4 and got["metric"] == "brier"
    assert permutation(predict, X, y, names, repeats=4, seed=1) == got  # fixed seed: reproducible
    sub = permutation(predict, X, y, names, repeats=2, seed=1, max_rows=500)
    assert sub["rows"] == 500 and sub["mean"]["signal"] > 0.1

    imp = {"gain": {"signal": 9.0, "noise": 1.0, "weak": 0.0}, "permutation": m,
           "permutation_std": got["std"], "rows": 4000, "repeats": 4, "seed": 1, "base": got["base"]}
    assert [r["feature"] for r in ranked(imp)] == ["signal", "weak", "noise"]
    assert ranked(imp)[0]["gain_share"] == 0.9
    text = format_importance(imp, top=2)
    assert "signal" in text and "90.0%" in text and "1 more features" in text
    assert format_importance(None) == "feature importance: not computed"
