"""Update rules and gradient clipping: CS231n's published values, torch.optim step for step, dtypes, errors."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import on
from rnncap.backend import device_of, to_device, to_numpy
from rnncap.gradcheck import rel_error
from rnncap.optim import (
    DEFAULTS,
    STATE_KEYS,
    UPDATE_RULES,
    adam,
    clip_grad_norm,
    get_update_rule,
    global_norm,
    resolve_hyperparameters,
    rmsprop,
    sgd,
    sgd_momentum,
)

N, D = 4, 5


def _cs231n_arrays():
    """The inputs of CS231n assignment 2's optimizer checks."""
    w = np.linspace(-0.4, 0.6, num=N * D).reshape(N, D)
    dw = np.linspace(-0.6, 0.4, num=N * D).reshape(N, D)
    return w, dw


def test_sgd_momentum_cs231n():
    w, dw = _cs231n_arrays()
    v = np.linspace(0.6, 0.9, num=N * D).reshape(N, D)
    next_w, config = sgd_momentum(w, dw, {"learning_rate": 1e-3, "velocity": v})
    expected_next_w = np.asarray(
        [
            [0.1406, 0.20738947, 0.27417895, 0.34096842, 0.40775789],
            [0.47454737, 0.54133684, 0.60812632, 0.67491579, 0.74170526],
            [0.80849474, 0.87528421, 0.94207368, 1.00886316, 1.07565263],
            [1.14244211, 1.20923158, 1.27602105, 1.34281053, 1.4096],
        ]
    )
    expected_velocity = np.asarray(
        [
            [0.5406, 0.55475789, 0.56891579, 0.58307368, 0.59723158],
            [0.61138947, 0.62554737, 0.63970526, 0.65386316, 0.66802105],
            [0.68217895, 0.69633684, 0.71049474, 0.72465263, 0.73881053],
            [0.75296842, 0.76712632, 0.78128421, 0.79544211, 0.8096],
        ]
    )
    assert rel_error(next_w, expected_next_w) < 1e-8
    assert rel_error(config["velocity"], expected_velocity) < 1e-8


def test_rmsprop_cs231n():
    w, dw = _cs231n_arrays()
    cache = np.linspace(0.6, 0.9, num=N * D).reshape(N, D)
    next_w, config = rmsprop(w, dw, {"learning_rate": 1e-2, "cache": cache})
    expected_next_w = np.asarray(
        [
            [-0.39223849, -0.34037513, -0.28849239, -0.23659121, -0.18467247],
            [-0.132737, -0.08078555, -0.02881884, 0.02316247, 0.07515774],
            [0.12716641, 0.17918792, 0.23122175, 0.28326742, 0.33532447],
            [0.38739248, 0.43947102, 0.49155973, 0.54365823, 0.59576619],
        ]
    )
    expected_cache = np.asarray(
        [
            [0.5976, 0.6126277, 0.6277108, 0.64284931, 0.65804321],
            [0.67329252, 0.68859723, 0.70395734, 0.71937285, 0.73484377],
            [0.75037008, 0.7659518, 0.78158892, 0.79728144, 0.81302936],
            [0.82883269, 0.84469141, 0.86060554, 0.87657507, 0.8926],
        ]
    )
    assert rel_error(next_w, expected_next_w) < 1e-7
    assert rel_error(config["cache"], expected_cache) < 1e-7


def test_adam_cs231n():
    w, dw = _cs231n_arrays()
    m = np.linspace(0.6, 0.9, num=N * D).reshape(N, D)
    v = np.linspace(0.7, 0.5, num=N * D).reshape(N, D)
    next_w, config = adam(w, dw, {"learning_rate": 1e-2, "m": m, "v": v, "t": 5})
    expected_next_w = np.asarray(
        [
            [-0.40094747, -0.34836187, -0.29577703, -0.24319299, -0.19060977],
            [-0.1380274, -0.08544591, -0.03286534, 0.01971428, 0.0722929],
            [0.1248705, 0.17744702, 0.23002243, 0.28259667, 0.33516969],
            [0.38774145, 0.44031188, 0.49288093, 0.54544852, 0.59801459],
        ]
    )
    expected_v = np.asarray(
        [
            [0.69966, 0.68908382, 0.67851319, 0.66794809, 0.65738853],
            [0.64683452, 0.63628604, 0.6257431, 0.61520571, 0.60467385],
            [0.59414753, 0.58362676, 0.57311152, 0.56260183, 0.55209767],
            [0.54159906, 0.53110598, 0.52061845, 0.51013645, 0.49966],
        ]
    )
    expected_m = np.asarray(
        [
            [0.48, 0.49947368, 0.51894737, 0.53842105, 0.55789474],
            [0.57736842, 0.59684211, 0.61631579, 0.63578947, 0.65526316],
            [0.67473684, 0.69421053, 0.71368421, 0.73315789, 0.75263158],
            [0.77210526, 0.79157895, 0.81105263, 0.83052632, 0.85],
        ]
    )
    # CS231n's notebook reports 1.14e-07 for next_w: its expected values are rounded to 8 decimals.
    assert rel_error(next_w, expected_next_w) < 2e-7
    assert rel_error(config["v"], expected_v) < 1e-7
    assert rel_error(config["m"], expected_m) < 1e-7
    assert config["t"] == 6


def _torch_optimizer(torch, rule: str, param, config: dict):
    """torch.optim's equivalent of one of our rules with the same hyper-parameters."""
    hyper = resolve_hyperparameters(rule, config)
    lr = hyper["learning_rate"]
    if rule == "sgd":
        return torch.optim.SGD([param], lr=lr)
    if rule == "sgd_momentum":
        return torch.optim.SGD([param], lr=lr, momentum=hyper["momentum"])
    if rule == "rmsprop":
        return torch.optim.RMSprop([param], lr=lr, alpha=hyper["decay_rate"], eps=hyper["epsilon"])
    return torch.optim.Adam([param], lr=lr, betas=(hyper["beta1"], hyper["beta2"]), eps=hyper["epsilon"])


@pytest.mark.parametrize("rule", sorted(UPDATE_RULES))
@pytest.mark.parametrize("config", [{}, {"learning_rate": 3e-2}], ids=["defaults", "lr3e-2"])
def test_matches_torch_optim(rule, config, device):
    """Ten steps in float64 on random gradients: our rules (on each device) and torch.optim agree to rounding."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    w = rng.standard_normal((6, 7))
    param = torch.nn.Parameter(torch.from_numpy(w.copy()))
    optimizer = _torch_optimizer(torch, rule, param, config)
    ours = dict(config)
    w = to_device(w, device)
    for _ in range(10):
        dw = rng.standard_normal(w.shape)
        w, ours = UPDATE_RULES[rule](w, to_device(dw, device), ours)
        param.grad = torch.from_numpy(dw.copy())
        optimizer.step()
    assert device_of(w) == device
    np.testing.assert_allclose(to_numpy(w), param.detach().numpy(), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("rule", sorted(UPDATE_RULES))
def test_in_place_keeps_float32_and_leaves_gradient(rule, device):
    rng = np.random.default_rng(1)
    w, dw = on(device, [rng.standard_normal((3, 4)).astype(np.float32), rng.standard_normal((3, 4)).astype(np.float32)])
    dw_before = dw.copy()
    next_w, config = UPDATE_RULES[rule](w, dw)
    assert next_w is w  # updated in place, no new array per step
    assert next_w.dtype == np.float32
    assert all(config[key].dtype == np.float32 for key in STATE_KEYS[rule] if key != "t")
    assert all(device_of(config[key]) == device for key in STATE_KEYS[rule] if key != "t")  # beside the weights
    np.testing.assert_array_equal(to_numpy(dw), to_numpy(dw_before))
    # A float64 gradient does not upcast float32 weights either.
    next_w, _ = UPDATE_RULES[rule](w, dw.astype(np.float64), config)
    assert next_w.dtype == np.float32


@pytest.mark.parametrize("rule", sorted(UPDATE_RULES))
def test_defaults_and_state_are_filled_in(rule):
    next_w, config = UPDATE_RULES[rule](np.ones(3), np.ones(3))
    for key, value in DEFAULTS[rule].items():
        assert config[key] == value
    for key in STATE_KEYS[rule]:
        assert key in config
    assert next_w.shape == (3,)


def test_cs231n_defaults():
    assert DEFAULTS["sgd"]["learning_rate"] == DEFAULTS["sgd_momentum"]["learning_rate"] == 1e-2
    assert DEFAULTS["rmsprop"] == {"learning_rate": 1e-2, "decay_rate": 0.99, "epsilon": 1e-8}
    assert DEFAULTS["adam"] == {"learning_rate": 1e-3, "beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8}
    assert DEFAULTS["sgd_momentum"]["momentum"] == 0.9
    assert set(UPDATE_RULES) == set(DEFAULTS) == set(STATE_KEYS)


def test_read_only_or_integer_weights_are_copied():
    w = np.ones(3)
    w.flags.writeable = False
    next_w, _ = sgd(w, np.ones(3), {"learning_rate": 0.5})
    np.testing.assert_array_equal(next_w, [0.5, 0.5, 0.5])
    np.testing.assert_array_equal(w, [1, 1, 1])
    next_w, _ = sgd(np.ones(3, dtype=np.int64), np.ones(3), {"learning_rate": 0.5})
    assert next_w.dtype == np.float64
    np.testing.assert_array_equal(next_w, [0.5, 0.5, 0.5])


def test_unknown_rule_name():
    with pytest.raises(ValueError, match="unknown update rule 'adamw'.*adam"):
        get_update_rule("adamw")
    assert get_update_rule("adam") is adam


@pytest.mark.parametrize(
    ("rule", "config", "message"),
    [
        ("sgd", {"learning_rat": 1e-2}, r"unknown config keys \['learning_rat'\]"),
        ("sgd", {"momentum": 0.9}, r"unknown config keys \['momentum'\]"),
        ("sgd", {"learning_rate": -1.0}, r"learning_rate must be in \[0, inf\), got -1.0"),
        ("sgd", {"learning_rate": float("nan")}, "learning_rate must be in"),
        ("sgd", {"learning_rate": "0.1"}, "learning_rate must be a real number"),
        ("sgd_momentum", {"momentum": 1.0}, r"momentum must be in \[0, 1\)"),
        ("rmsprop", {"decay_rate": -0.1}, "decay_rate must be in"),
        ("rmsprop", {"epsilon": 0.0}, r"epsilon must be in \(0, inf\)"),
        ("adam", {"beta2": 1.5}, "beta2 must be in"),
        ("adam", {"t": -1}, "t must be a non-negative integer"),
        ("adam", {"m": np.zeros(4)}, r"state 'm' has shape \(4,\), expected \(3,\)"),
    ],
)
def test_bad_hyperparameters(rule, config, message):
    with pytest.raises(ValueError, match=message):
        UPDATE_RULES[rule](np.ones(3), np.ones(3), config)


def test_gradient_shape_must_match():
    with pytest.raises(ValueError, match=r"gradient shape \(3, 1\) does not match weight shape \(3,\)"):
        adam(np.ones(3), np.ones((3, 1)))


def test_clip_grad_norm_matches_torch(device):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    grads = {"a": rng.standard_normal((4, 3)), "b": rng.standard_normal(5)}
    tensors = [torch.nn.Parameter(torch.zeros(g.shape, dtype=torch.float64)) for g in grads.values()]
    for t, g in zip(tensors, grads.values(), strict=True):
        t.grad = torch.from_numpy(g.copy())
    expected_norm = float(torch.nn.utils.clip_grad_norm_(tensors, max_norm=1.0))
    grads = {name: to_device(g, device) for name, g in grads.items()}
    norm = clip_grad_norm(grads, 1.0)
    assert norm == pytest.approx(expected_norm, rel=1e-14)
    for t, g in zip(tensors, grads.values(), strict=True):
        np.testing.assert_allclose(to_numpy(g), t.grad.numpy(), rtol=1e-14)
    assert global_norm(grads) == pytest.approx(1.0, rel=1e-5)


def test_clip_grad_norm_below_limit_or_non_finite_leaves_gradients():
    grads = {"a": np.array([3.0, 4.0], dtype=np.float32)}
    assert clip_grad_norm(grads, 10.0) == pytest.approx(5.0)
    np.testing.assert_array_equal(grads["a"], [3.0, 4.0])
    grads = {"a": np.array([np.inf, 1.0])}
    assert clip_grad_norm(grads, 1.0) == np.inf
    np.testing.assert_array_equal(grads["a"], [np.inf, 1.0])


@pytest.mark.parametrize("max_norm", [0.0, -1.0, float("inf"), float("nan"), None])
def test_clip_grad_norm_rejects_bad_limit(max_norm):
    with pytest.raises(ValueError, match="max_norm must be a positive finite number"):
        clip_grad_norm({"a": np.ones(2)}, max_norm)
