"""GRPO math against hand-computed numbers."""

from __future__ import annotations

import math

import pytest
import torch

from empathy_rl.grpo import (
    ADVANTAGE_ESTIMATORS,
    KL_ESTIMATORS,
    LOSS_AGGREGATIONS,
    dr_grpo_advantages,
    get_advantage_estimator,
    get_kl_estimator,
    get_loss_aggregation,
    group_advantages,
    kl_penalty,
    masked_mean,
    masked_sum,
    policy_loss,
    register_advantage,
    register_aggregation,
    register_kl,
    sequence_log_probs,
    token_entropy_from_logits,
)

T = torch.tensor


def close(a: torch.Tensor, expected: list | float, atol: float = 1e-5) -> bool:
    return torch.allclose(a, torch.tensor(expected, dtype=a.dtype), atol=atol, rtol=0)


# --------------------------------------------------------------------------------------------
# Advantages
# --------------------------------------------------------------------------------------------


def test_group_advantages_population_std():
    adv = group_advantages(T([1.0, 0, 0, 1, 1, 1, 1, 1]), group_size=4)
    # group 1: mean 0.5, population std 0.5 -> +-0.5 / (0.5 + 1e-6); group 2 all equal -> 0
    assert close(adv, [1.0, -1, -1, 1, 0, 0, 0, 0])
    assert torch.equal(adv[4:], torch.zeros(4))
    # [0, 1, 2]: mean 1, population std sqrt(2/3) -> +-sqrt(3/2)
    assert close(group_advantages(T([0.0, 1, 2]), 3, eps=0.0), [-math.sqrt(1.5), 0.0, math.sqrt(1.5)])


def test_dr_grpo_only_centres():
    rewards = T([1.0, 0, 0, 1, 3, 1, 1, 1])
    expected = [0.5, -0.5, -0.5, 0.5, 1.5, -0.5, -0.5, -0.5]
    assert close(group_advantages(rewards, 4, normalize_std=False), expected)
    assert close(dr_grpo_advantages(rewards, 4), expected)


@pytest.mark.parametrize("normalize_std", [True, False])
@pytest.mark.parametrize("eps", [1e-6, 0.0])
def test_all_equal_groups_are_exactly_zero(normalize_std: bool, eps: float):
    # 0.1 and 0.3 are not exact in binary, so a plain r - mean would leave rounding residue
    adv = group_advantages(T([0.1] * 4 + [0.3] * 4), 4, normalize_std=normalize_std, eps=eps)
    assert torch.equal(adv, torch.zeros(8))


def test_advantage_dtypes_and_group_size_one():
    assert group_advantages(T([1, 0, 1, 1]), 2).dtype == torch.float32
    assert group_advantages(T([1.0, 0.0], dtype=torch.float64), 2).dtype == torch.float64
    assert torch.equal(group_advantages(T([1.0, 2.0]), 1), torch.zeros(2))


@pytest.mark.parametrize(
    "rewards, group_size, match",
    [
        (torch.zeros(7), 4, "length 7 is not a multiple of group_size 4"),
        (torch.zeros(2, 4), 4, "1-D"),
        (torch.zeros(4), 0, "group_size must be >= 1"),
    ],
)
def test_advantage_bad_inputs_raise(rewards: torch.Tensor, group_size: int, match: str):
    with pytest.raises(ValueError, match=match):
        group_advantages(rewards, group_size)


def test_advantage_registry():
    rewards = T([1.0, 0, 0, 1])
    assert get_advantage_estimator("grpo") is group_advantages
    assert torch.equal(get_advantage_estimator("grpo")(rewards, 4, normalize_std=False), rewards - 0.5)
    assert torch.equal(get_advantage_estimator("dr_grpo")(rewards, 4, normalize_std=True, eps=1e-6), rewards - 0.5)
    with pytest.raises(ValueError, match="unknown advantage estimator 'ppo'.*dr_grpo, grpo"):
        get_advantage_estimator("ppo")

    @register_advantage("test_zero")
    def zero(rewards: torch.Tensor, group_size: int, **_: object) -> torch.Tensor:
        return torch.zeros_like(rewards)

    try:
        assert get_advantage_estimator("test_zero") is zero
        with pytest.raises(ValueError, match="already registered"):
            register_advantage("test_zero")(dr_grpo_advantages)
    finally:
        del ADVANTAGE_ESTIMATORS["test_zero"]


# --------------------------------------------------------------------------------------------
# KL
# --------------------------------------------------------------------------------------------

LOGP, REF = T([0.0, -1.0, -2.0]), T([-1.0, -1.0, 0.0])  # logp - ref = [1, 0, -2]


def test_kl_kinds_by_hand():
    assert close(kl_penalty(LOGP, REF, "k1"), [1.0, 0.0, -2.0])
    assert close(kl_penalty(LOGP, REF, "k2"), [0.5, 0.0, 2.0])
    # x = ref - logp = [-1, 0, 2]; exp(x) - x - 1
    assert close(kl_penalty(LOGP, REF, "k3"), [math.exp(-1), 0.0, math.exp(2) - 3])


def test_k3_nonnegative_zero_when_equal_and_clamped():
    torch.manual_seed(0)
    logp = torch.randn(1000)
    assert torch.equal(kl_penalty(logp, logp, "k3"), torch.zeros(1000))
    for scale in (1e-6, 1e-4, 1.0, 10.0):
        assert (kl_penalty(logp, logp + scale * torch.randn(1000), "k3") >= 0).all()
    # log-ratio clamped to [-20, 20]: finite even for absurd gaps
    far = kl_penalty(T([0.0, -100.0]), T([-100.0, 0.0]), "k3")
    assert torch.isfinite(far).all()
    assert close(far[:1], [math.exp(-20) + 19])


def test_kl_registry():
    assert set(KL_ESTIMATORS) >= {"k1", "k2", "k3"}
    with pytest.raises(ValueError, match="unknown KL estimator 'k4'; known: k1, k2, k3"):
        kl_penalty(LOGP, REF, "k4")

    @register_kl("test_abs")
    def kl_abs(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
        return (logp - ref_logp).abs()

    try:
        assert get_kl_estimator("test_abs") is kl_abs
        assert close(kl_penalty(LOGP, REF, "test_abs"), [1.0, 0.0, 2.0])
    finally:
        del KL_ESTIMATORS["test_abs"]


# --------------------------------------------------------------------------------------------
# Masked helpers and aggregations
# --------------------------------------------------------------------------------------------


def test_masked_sum_and_mean_ignore_masked_nan():
    x = T([[1.0, float("nan")], [3.0, float("inf")]])
    mask = T([[1, 0], [1, 0]])
    assert masked_sum(x, mask).item() == 4.0
    assert masked_mean(x, mask.bool()).item() == 2.0
    assert torch.equal(masked_sum(x, mask, dim=-1), T([1.0, 3.0]))
    assert torch.equal(masked_mean(x, mask, dim=0), T([2.0, 0.0]))  # empty column -> 0, not NaN
    assert masked_mean(x, torch.zeros(2, 2)).item() == 0.0


# rows of a (4, 3) loss grid; masked slots hold NaN/inf that must not leak
RAGGED_LOSS = T([[1.0, 2.0, float("nan")], [4.0, float("inf"), 6.0], [7.0, 8.0, 9.0], [float("inf")] * 3])
RAGGED_MASK = T([[1, 1, 0], [1, 0, 0], [1, 1, 1], [0, 0, 0]])


@pytest.mark.parametrize(
    "name, expected",
    [
        ("token-mean", (1 + 2 + 4 + 7 + 8 + 9) / 6),  # 31 / 6
        ("seq-mean-token-mean", (1.5 + 4 + 8) / 3),  # all-masked row 4 is not a sequence
        ("seq-mean-token-sum", (3 + 4 + 24) / 3),
    ],
)
def test_aggregations_on_ragged_mask(name: str, expected: float):
    assert get_loss_aggregation(name)(RAGGED_LOSS, RAGGED_MASK).item() == pytest.approx(expected)


def test_aggregation_registry():
    assert set(LOSS_AGGREGATIONS) == {"token-mean", "seq-mean-token-mean", "seq-mean-token-sum"}
    with pytest.raises(ValueError, match="unknown loss aggregation 'seq-sum'; known: seq-mean-token-mean"):
        get_loss_aggregation("seq-sum")

    @register_aggregation("test_max")
    def agg_max(loss: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return torch.where(mask.bool(), loss, -torch.inf).max()

    try:
        assert get_loss_aggregation("test_max")(RAGGED_LOSS, RAGGED_MASK).item() == 9.0
    finally:
        del LOSS_AGGREGATIONS["test_max"]


# --------------------------------------------------------------------------------------------
# Policy loss
# --------------------------------------------------------------------------------------------


def leaf(x: torch.Tensor) -> torch.Tensor:
    return x.clone().requires_grad_(True)


def test_on_policy_loss_is_minus_mean_advantage_plus_kl():
    torch.manual_seed(0)
    logp = leaf(-torch.rand(2, 3))
    adv, mask = T([1.0, -0.5]), torch.ones(2, 3)
    loss, m = policy_loss(logp, logp.detach(), None, adv, mask, beta=0.0)
    assert loss.item() == pytest.approx(-(3 * 1.0 + 3 * -0.5) / 6)  # -0.25
    assert m["clip_frac"] == 0 and m["kl"] == 0
    assert m["ratio_mean"] == m["ratio_max"] == m["ratio_min"] == pytest.approx(1.0)
    assert "entropy" not in m

    ref = logp.detach() - 0.2  # k1 = 0.2 on every token
    loss, m = policy_loss(logp, logp.detach(), ref, adv, mask, beta=0.1, kl_kind="k1")
    assert loss.item() == pytest.approx(-0.25 + 0.1 * 0.2)
    assert m["kl"] == pytest.approx(0.2) and m["pg_loss"] == pytest.approx(-0.25)


def test_clipping_both_signs():
    # one token per sequence: (ratio, A) = (1.5, +1) (0.5, -1) (1.5, -1) (0.5, +1)
    ratio, adv = T([[1.5], [0.5], [1.5], [0.5]]), T([1.0, -1.0, -1.0, 1.0])
    logp = leaf(ratio.log())
    loss, m = policy_loss(logp, torch.zeros(4, 1), None, adv, torch.ones(4, 1), beta=0.0)
    # per token: -min(1.5, 1.2) = -1.2 (clipped) | -min(-0.5, -0.8) = 0.8 (clipped)
    #            -min(-1.5, -1.2) = 1.5          | -min(0.5, 0.8) = -0.5
    assert loss.item() == pytest.approx((-1.2 + 0.8 + 1.5 - 0.5) / 4)
    assert m["clip_frac"] == 0.5
    assert (m["ratio_min"], m["ratio_max"], m["ratio_mean"]) == pytest.approx((0.5, 1.5, 1.0))
    loss.backward()
    # clipped tokens get no gradient; the others get d(-A * ratio / 4)/dlogp = -A * ratio / 4
    assert close(logp.grad, [[0.0], [0.0], [1.5 / 4], [-0.5 / 4]])


def test_asymmetric_clip_high():
    logp = T([[math.log(1.5)], [math.log(0.5)]])
    loss, m = policy_loss(logp, torch.zeros(2, 1), None, T([1.0, -1.0]), torch.ones(2, 1), 0.2, 0.28, beta=0.0)
    assert loss.item() == pytest.approx((-1.28 + 0.8) / 2)
    assert m["clip_frac"] == 1.0


@pytest.mark.parametrize(
    "aggregation, expected",
    [
        ("token-mean", -(1 * 2 + 2 * 1 + 3 * 3) / 6),
        ("seq-mean-token-mean", -(1 + 2 + 3) / 3),
        ("seq-mean-token-sum", -(1 * 2 + 2 * 1 + 3 * 3) / 3),
    ],
)
def test_policy_loss_aggregations_ragged(aggregation: str, expected: float):
    # on-policy, so every token's loss is -A of its row; row 4 is all padding
    logp = leaf(torch.where(RAGGED_MASK.bool(), -1.0, float("nan")))
    adv = T([1.0, 2.0, 3.0, 4.0])
    loss, m = policy_loss(logp, logp.detach(), None, adv, RAGGED_MASK, beta=0.0, aggregation=aggregation)
    assert loss.item() == pytest.approx(expected)
    assert m["pg_loss"] == pytest.approx(expected)
    loss.backward()
    assert torch.isfinite(logp.grad).all()


def test_masked_nan_and_inf_do_not_leak():
    torch.manual_seed(0)
    mask = T([[1, 1, 0], [1, 0, 0]]).bool()
    logp, old, ref, ent = (-torch.rand(2, 3) for _ in range(4))
    clean, _ = policy_loss(logp, old, ref, T([1.0, -1.0]), mask, entropy=ent, entropy_coeff=0.01)

    def poison(x: torch.Tensor, value: float) -> torch.Tensor:
        return torch.where(mask, x, value)

    dirty_logp = leaf(poison(logp, float("nan")))
    loss, m = policy_loss(
        dirty_logp, poison(old, float("inf")), poison(ref, -float("inf")), T([1.0, -1.0]), mask.float(),
        entropy=poison(ent, float("nan")), entropy_coeff=0.01,
    )
    assert loss.item() == pytest.approx(clean.item())
    assert all(math.isfinite(v) for v in m.values())
    loss.backward()
    assert torch.isfinite(dirty_logp.grad).all()
    assert torch.equal(dirty_logp.grad[~mask], torch.zeros(3))


@pytest.mark.parametrize("aggregation", sorted(LOSS_AGGREGATIONS))
def test_all_masked_batch_is_zero_and_backward_works(aggregation: str):
    logp = leaf(torch.full((2, 3), float("nan")))
    zeros = torch.zeros(2, 3)
    loss, m = policy_loss(logp, zeros, zeros, T([1.0, -1.0]), zeros, aggregation=aggregation)
    assert loss.item() == 0.0 and loss.grad_fn is not None
    assert all(v == 0.0 for v in m.values())
    loss.backward()
    assert torch.equal(logp.grad, torch.zeros(2, 3))


def test_descent_step_raises_logp_of_positive_advantage_sequence():
    torch.manual_seed(0)
    logits = leaf(torch.randn(2, 4, 6))
    tokens = torch.randint(0, 6, (2, 4))
    logp = sequence_log_probs(logits, tokens)
    ref = logp.detach() + 0.1 * torch.randn(2, 4)
    loss, _ = policy_loss(logp, logp.detach(), ref, T([1.0, -1.0]), torch.ones(2, 4))
    loss.backward()
    with torch.no_grad():
        new_logp = sequence_log_probs(logits - 0.5 * logits.grad, tokens)
    assert (new_logp[0] > logp[0]).all()
    assert (new_logp[1] < logp[1]).all()


def test_gradient_reaches_only_logp():
    torch.manual_seed(0)
    logp, old, ref = (leaf(-torch.rand(2, 3)) for _ in range(3))
    adv = leaf(T([1.0, -1.0]))
    loss, _ = policy_loss(logp, old, ref, adv, torch.ones(2, 3))
    loss.backward()
    assert logp.grad is not None and logp.grad.abs().sum() > 0
    assert old.grad is None and ref.grad is None and adv.grad is None


def test_entropy_bonus_and_metric():
    logp, ent = torch.zeros(1, 2), T([[1.0, 3.0]])
    loss, m = policy_loss(logp, logp, None, T([0.0]), torch.ones(1, 2), beta=0.0, entropy=ent, entropy_coeff=0.1)
    assert loss.item() == pytest.approx(-0.1 * 2.0)
    assert m["entropy"] == pytest.approx(2.0) and m["pg_loss"] == 0.0


@pytest.mark.parametrize(
    "change, match",
    [
        ({"advantages": torch.zeros(2, 1)}, r"advantages must be \(B,\)"),
        ({"mask": torch.ones(2, 4)}, "mask must have the shape of logp"),
        ({"old_logp": torch.zeros(3, 3)}, "old_logp must have the shape"),
        ({"logp": torch.zeros(6)}, r"logp must be \(B, T\)"),
        ({"ref_logp": None}, "needs ref_logp"),
        ({"entropy_coeff": 0.01}, "needs entropy"),
        ({"clip_low": 1.5}, "clip_low"),
        ({"aggregation": "sum"}, "unknown loss aggregation"),
        ({"kl_kind": "k9", "beta": 0.0}, "unknown KL estimator"),
    ],
)
def test_policy_loss_validation(change: dict, match: str):
    zeros = torch.zeros(2, 3)
    args = dict(logp=zeros, old_logp=zeros, ref_logp=zeros, advantages=torch.zeros(2), mask=torch.ones(2, 3))
    with pytest.raises(ValueError, match=match):
        policy_loss(**{**args, **change})


def test_no_reference_needed_when_beta_zero():
    loss, m = policy_loss(torch.zeros(1, 2), torch.zeros(1, 2), None, T([1.0]), torch.ones(1, 2), beta=0.0)
    assert loss.item() == -1.0 and m["kl"] == 0.0


# --------------------------------------------------------------------------------------------
# From logits
# --------------------------------------------------------------------------------------------


def test_token_entropy_by_hand_and_with_banned_tokens():
    logits = T([[[0.0, 0.0, 0.0, 0.0], [0.0, -torch.inf, -torch.inf, -torch.inf], [1000.0, 0.0, -torch.inf, 0.0]]])
    logits.requires_grad_(True)
    ent = token_entropy_from_logits(logits)
    assert ent.shape == (1, 3)
    assert close(ent, [[math.log(4), 0.0, 0.0]])
    ent.sum().backward()
    assert torch.isfinite(logits.grad).all()

    torch.manual_seed(0)
    z = torch.randn(2, 3, 7)
    assert torch.allclose(token_entropy_from_logits(z), torch.distributions.Categorical(logits=z).entropy(), atol=1e-6)
    assert token_entropy_from_logits(z.bfloat16()).dtype == torch.float32


def test_sequence_log_probs_by_hand_and_temperature():
    logits = T([[[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]]])
    tokens = T([[2, 0]])
    # 3 - log(e + e^2 + e^3) ; uniform over 3 -> -log 3
    assert close(sequence_log_probs(logits, tokens), [[3 - math.log(math.e + math.e**2 + math.e**3), -math.log(3)]])
    # at T = 2 the logits are [0.5, 1, 1.5]: 1.5 - logsumexp = -log(1 + e^-0.5 + e^-1)
    assert close(sequence_log_probs(logits, tokens, 2.0)[:, :1], [[-math.log(1 + math.exp(-0.5) + math.exp(-1))]])

    half = sequence_log_probs(logits.bfloat16(), tokens)
    assert half.dtype == torch.float32 and torch.allclose(half, sequence_log_probs(logits, tokens), atol=1e-6)
    with pytest.raises(ValueError, match="tokens"):
        sequence_log_probs(logits, T([[2]]))
    with pytest.raises(ValueError, match="temperature"):
        sequence_log_probs(logits, tokens, 0.0)
