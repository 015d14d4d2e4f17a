"""γ and margin schedules: hand-written sequences of the LPC presets, the E1 transition, caps, resume."""

from __future__ import annotations

import itertools
import json
import math
import pickle

import numpy as np
import pytest

from neuralcollapse.losses import ArcFaceLoss
from neuralcollapse.schedules import (
    GAMMA_PRESETS,
    PAPER_STEPS_PER_EPOCH,
    GammaSchedule,
    MarginSchedule,
    MarginValues,
    auto_period,
)

# --------------------------------------------------------------------------------------------------------
# lpc-paper (geometric): γ_e = min(0.01·1.05^{e−1}, 1e6)
# --------------------------------------------------------------------------------------------------------


def test_lpc_paper_first_epochs():
    sched = GammaSchedule.from_preset("lpc-paper")
    assert GammaSchedule() == sched  # the default schedule
    expected = [0.01, 0.0105, 0.011025, 0.01157625, 0.0121550625, 0.012762815625]
    np.testing.assert_allclose([sched(e) for e in range(1, 7)], expected, rtol=1e-14)
    assert sched(1) == 0.01
    assert sched(101) == pytest.approx(0.01 * 1.05**100, rel=1e-12)


def test_lpc_paper_cap_and_reference_overshoot():
    # 0.01·1.05^n first reaches 1e6 at n = ⌈log(1e8)/log(1.05)⌉ = 378, i.e. epoch 379.
    n_star = math.ceil(math.log(1e8) / math.log(1.05))
    assert n_star == 378
    capped = GammaSchedule.from_preset("lpc-paper")
    uncapped = GammaSchedule.from_preset("lpc-paper", cap=False)
    for sched in (capped, uncapped):
        assert sched(378) == pytest.approx(0.01 * 1.05**377, rel=1e-12) and sched(378) < 1e6
    assert capped(379) == capped(380) == capped(5000) == 1e6
    # The reference multiplies while γ < γ_max: its last step lands slightly above 1e6, then stays.
    overshoot = 0.01 * 1.05**378
    assert 1e6 < overshoot < 1.05e6
    assert uncapped(379) == pytest.approx(overshoot, rel=1e-12)
    assert uncapped(379) == uncapped(380) == uncapped(5000)
    # Repeated multiplication, as the reference: bit-identical to its running product.
    gamma = 0.01
    for e in range(1, 400):
        assert uncapped(e) == gamma
        if gamma < 1e6:
            gamma *= 1.05


def test_lpc_paper_svhn_preset():
    sched = GammaSchedule.from_preset("lpc-paper-svhn")
    assert sched(2) == pytest.approx(0.0103, rel=1e-14)
    assert sched(10_000) == 1e5


# --------------------------------------------------------------------------------------------------------
# lpc-2025 (two_phase)
# --------------------------------------------------------------------------------------------------------


def test_lpc_2025_sequence_by_hand():
    sched = GammaSchedule.from_preset("lpc-2025")
    # Phase 1: doubled at epochs 1, 6, 11, ... (before the epoch's training), from 1e−4.
    expected = {1: 2e-4, 2: 2e-4, 5: 2e-4, 6: 4e-4, 10: 4e-4, 11: 8e-4, 16: 1.6e-3, 21: 3.2e-3, 26: 6.4e-3}
    for epoch, value in expected.items():
        assert sched(epoch) == pytest.approx(value, rel=1e-14), epoch
    # 1e−4·2^23 = 838.8608 at epoch 111; the next doubling (epoch 116) is capped at 1e3: E1 = 116.
    assert sched(111) == pytest.approx(838.8608, rel=1e-14)
    assert sched(115) == pytest.approx(838.8608, rel=1e-14)
    assert sched(116) == 1e3
    # Phase 2 from E1 + 1 = 117, every 5 epochs, ×1.25 up to 1e6.
    phase2 = {117: 1250.0, 118: 1250.0, 121: 1250.0, 122: 1562.5, 126: 1562.5, 127: 1953.125, 132: 2441.40625}
    for epoch, value in phase2.items():
        assert sched(epoch) == value, epoch
    # The 30th step (epoch 117 + 5·29 = 262) gives 1e3·1.25^30 ≈ 8.08e5; the 31st (epoch 267) is capped at 1e6.
    assert sched(262) == pytest.approx(1e3 * 1.25**30, rel=1e-12)
    assert sched(266) == sched(262) < 1e6
    assert sched(267) == sched(268) == sched(1000) == 1e6


def test_lpc_2025_imagenet_phase1_step_one():
    sched = GammaSchedule.from_preset("lpc-2025-imagenet")
    assert [sched(e) for e in (1, 2, 3)] == pytest.approx([2e-4, 4e-4, 8e-4], rel=1e-14)
    assert sched(23) == pytest.approx(838.8608, rel=1e-14)
    assert sched(24) == 1e3  # E1 = 24
    assert [sched(e) for e in (25, 29, 30, 35)] == [1250.0, 1250.0, 1562.5, 1953.125]


def test_monotone_and_values_helper():
    for name in GAMMA_PRESETS:
        values = GammaSchedule.from_preset(name).values(400)
        assert len(values) == 400 and all(b >= a for a, b in itertools.pairwise(values))


# --------------------------------------------------------------------------------------------------------
# Other kinds
# --------------------------------------------------------------------------------------------------------


def test_constant_linear_cosine():
    assert GammaSchedule("constant", gamma0=0.5)(1) == GammaSchedule("constant", gamma0=0.5)(999) == 0.5
    lin = GammaSchedule("linear", gamma0=1.0, gamma_max=11.0, ramp_epochs=10)
    assert [lin(e) for e in (1, 2, 6, 11, 50)] == pytest.approx([1.0, 2.0, 6.0, 11.0, 11.0])
    cos = GammaSchedule("cosine", gamma0=0.0, gamma_max=2.0, ramp_epochs=4, start_epoch=3)
    assert [cos(e) for e in (1, 3, 4, 5, 6, 7, 100)] == pytest.approx(
        [0.0, 0.0, 1 - math.cos(math.pi / 4), 1.0, 1 + math.cos(math.pi / 4), 2.0, 2.0]
    )


def test_geometric_options():
    decay = GammaSchedule("geometric", gamma0=8.0, factor=0.5, gamma_max=100.0)
    assert [decay(e) for e in (1, 2, 4)] == [8.0, 4.0, 1.0]
    above = GammaSchedule("geometric", gamma0=10.0, factor=2.0, gamma_max=5.0)
    assert above(1) == above(3) == 5.0  # min(γ0·f^{e−1}, γ_max) caps from the first epoch
    assert GammaSchedule("geometric", gamma0=10.0, factor=2.0, gamma_max=5.0, cap=False)(3) == 10.0


# --------------------------------------------------------------------------------------------------------
# Purity and resume
# --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(GAMMA_PRESETS))
def test_resume_from_state_dict_is_exact(name):
    sched = GammaSchedule.from_preset(name, **({"cap": False} if name.startswith("lpc-paper") else {}))
    state = json.loads(json.dumps(sched.state_dict()))  # plain config, serialisable
    restored = GammaSchedule("constant")
    restored.load_state_dict(state)
    assert restored == sched
    # Out-of-order evaluation (resume at epoch 200, then look back) gives the uninterrupted values.
    uninterrupted = sched.values(300)
    assert [restored(e) for e in range(300, 0, -1)] == uninterrupted[::-1]
    assert pickle.loads(pickle.dumps(sched)) == sched


def test_gamma_bad_inputs():
    sched = GammaSchedule()
    for bad in (0, -3):
        with pytest.raises(ValueError, match=r"`epoch` must be >= 1"):
            sched(bad)
    for bad in (1.5, True, "3"):
        with pytest.raises(TypeError, match=r"`epoch` must be an int"):
            sched(bad)
    assert sched(np.int64(2)) == sched(2)
    with pytest.raises(ValueError, match=r"`kind` must be one of"):
        GammaSchedule("exponential")
    with pytest.raises(ValueError, match=r"`name` must be one of 'lpc-paper'"):
        GammaSchedule.from_preset("lpc")
    with pytest.raises(ValueError, match=r"`factor` is not a parameter of the 'linear' γ schedule"):
        GammaSchedule("linear", factor=2.0, ramp_epochs=3)
    with pytest.raises(ValueError, match=r"`ramp_epochs` is required"):
        GammaSchedule("cosine")
    with pytest.raises(ValueError, match=r"`gamma0` must be >= 0"):
        GammaSchedule(gamma0=-1.0)
    with pytest.raises(ValueError, match=r"`factor` must be > 0"):
        GammaSchedule(factor=0.0)
    with pytest.raises(ValueError, match=r"`step` must be >= 1"):
        GammaSchedule("two_phase", step=0)
    with pytest.raises(ValueError, match=r"`gamma_mid` must lie between"):
        GammaSchedule("two_phase", gamma_mid=1e7)
    with pytest.raises(TypeError, match=r"`cap` must be a bool"):
        GammaSchedule(cap=1)
    with pytest.raises(ValueError, match=r"`state_dict` must be a mapping with a 'kind'"):
        sched.load_state_dict({"gamma0": 1.0})
    with pytest.raises(ValueError, match=r"`num_epochs` must be >= 1"):
        sched.values(0)


# --------------------------------------------------------------------------------------------------------
# MarginSchedule
# --------------------------------------------------------------------------------------------------------


def test_margin_ramps_match_reference_expressions():
    arc = MarginSchedule.from_preset("lpc-arcface")
    assert MarginSchedule() == arc
    cos = MarginSchedule.from_preset("lpc-cosface")
    for epoch in range(1, 120):
        # luigisbailo/lpc trainer.py, verbatim.
        scale = min(16.0 + (epoch - 1) * 1.0, 64.0)
        margin = min(0.1 + (epoch - 1) * 0.01, 0.5)
        assert arc(epoch) == MarginValues(scale, margin)
        assert cos(epoch) == MarginValues(scale, min(0.1 + (epoch - 1) * 0.01, 0.35))
    assert arc(1) == (16.0, 0.1)
    assert arc(2) == (17.0, 0.11)
    assert arc(41).margin == pytest.approx(0.5) and arc(41).scale == 56.0
    assert arc(49) == (64.0, 0.5) and arc(1000) == (64.0, 0.5)
    assert cos(26).margin == pytest.approx(0.35) and cos(27).margin == 0.35


def test_margin_schedule_apply_state_and_errors():
    ramp = MarginSchedule(scale_start=30.0, scale_end=10.0, scale_step=5.0)  # a decreasing ramp
    assert [ramp(e).scale for e in (1, 2, 5, 9)] == [30.0, 25.0, 10.0, 10.0]
    loss = ArcFaceLoss()
    assert ramp.apply(loss, 3) == (20.0, 0.12000000000000001) and loss.scale == 20.0
    restored = MarginSchedule()
    restored.load_state_dict(ramp.state_dict())
    assert restored == ramp and [restored(e) for e in range(1, 60)] == [ramp(e) for e in range(1, 60)]
    with pytest.raises(TypeError, match=r"`loss` must have `scale` and `margin`"):
        ramp.apply(object(), 1)
    with pytest.raises(ValueError, match=r"`epoch` must be >= 1"):
        ramp(0)
    with pytest.raises(ValueError, match=r"`scale_start` must be > 0"):
        MarginSchedule(scale_start=0.0)
    with pytest.raises(ValueError, match=r"`margin_step` must be >= 0"):
        MarginSchedule(margin_step=-0.01)
    with pytest.raises(ValueError, match=r"`name` must be one of"):
        MarginSchedule.from_preset("arcface")
    with pytest.raises(ValueError, match=r"`state_dict` has unknown entries"):
        ramp.load_state_dict({"scale": 1.0})
    # A schedule value the loss rejects (degrees) surfaces the loss's error.
    with pytest.raises(ValueError, match="degrees"):
        MarginSchedule(margin_start=20.0, margin_end=30.0).apply(ArcFaceLoss(), 1)


# ---------------------------------------------------------------------------------------------------------------
# Step pacing (unit="step"): γ after s optimizer steps = γ_{⌊s/period⌋ + 1}


def test_step_paced_values_at_given_steps():
    paced = GammaSchedule.from_preset("lpc-paper", unit="step", period=391)
    by_hand = {0: 0.01, 1: 0.01, 390: 0.01, 391: 0.01 * 1.05, 781: 0.01 * 1.05, 782: 0.01 * 1.05 * 1.05}
    for step, gamma in by_hand.items():
        assert paced.at_step(step) == pytest.approx(gamma, rel=1e-12), step
    epoch_paced = GammaSchedule.from_preset("lpc-paper")
    for s in (0, 5000, 147_797, 147_798, 10**7):
        assert paced.at_step(s) == epoch_paced(s // 391 + 1)
    assert paced.at_step(10**7) == 1e6
    assert paced.value(epoch=1, step=391) == pytest.approx(0.0105)  # the step decides, not the epoch
    assert epoch_paced.value(epoch=2, step=0) == pytest.approx(0.0105)


def test_step_paced_two_phase_matches_its_epoch_form():
    base = GammaSchedule.from_preset("lpc-2025")
    paced = GammaSchedule.from_preset("lpc-2025", unit="step", period=7)
    for s in range(0, 7 * 300, 13):
        assert paced.at_step(s) == base(s // 7 + 1)


def test_final_epoch_per_kind():
    # 0.01·1.05^(E−1) ≥ 1e6 first at E − 1 = ⌈log(1e8)/log(1.05)⌉ = 378
    assert GammaSchedule.from_preset("lpc-paper").final_epoch() == 379
    assert GammaSchedule("constant", gamma0=3.0).final_epoch() == 1
    assert GammaSchedule("linear", gamma0=0.0, gamma_max=1.0, ramp_epochs=10, start_epoch=3).final_epoch() == 13
    sched = GammaSchedule.from_preset("lpc-2025")
    end = sched.final_epoch()
    assert sched(end) == 1e6 and sched(end - 1) < 1e6


def test_auto_period_fits_the_run_and_caps_at_the_paper_pace():
    sched = GammaSchedule.from_preset("lpc-paper")
    assert auto_period(sched, 10**7) == PAPER_STEPS_PER_EPOCH == 391
    period = auto_period(sched, 40_000)
    assert period == int(0.75 * 40_000 // 378) == 79
    paced = sched.with_period(period)
    assert paced.at_step(int(0.75 * 40_000)) == 1e6  # the final γ within the first 75 % of the run
    assert auto_period(sched, 100) == 1  # never below one step
    assert auto_period(GammaSchedule("constant"), 500) == 391
    assert auto_period(sched, 40_000, reach_fraction=0.5) == int(0.5 * 40_000 // 378)


def test_pacing_state_dict_round_trip_and_equality():
    paced = GammaSchedule.from_preset("lpc-paper", unit="step", period=50)
    restored = GammaSchedule()
    restored.load_state_dict(paced.state_dict())
    assert restored == paced and restored.unit == "step" and restored.period == 50
    assert restored.at_step(12_345) == paced.at_step(12_345)
    assert paced != GammaSchedule.from_preset("lpc-paper")  # the pacing is part of the configuration
    legacy = {k: v for k, v in GammaSchedule.from_preset("lpc-paper").state_dict().items() if k != "unit"}
    old = GammaSchedule()
    old.load_state_dict(legacy)  # checkpoints written before step pacing existed
    assert old.unit == "epoch" and old(3) == pytest.approx(0.011025)
    assert "unit='step', period=50" in repr(paced)


def test_describe_names_the_pacing_and_whether_the_run_reaches_the_final_gamma():
    text = GammaSchedule.from_preset("lpc-paper").describe(epochs=25)
    assert "per epoch" in text and "from epoch 379" in text and "not reached in 25 epochs" in text
    paced = GammaSchedule.from_preset("lpc-paper", unit="step", period=10)
    text = paced.describe(steps_per_epoch=22, epochs=200)
    assert "per 10 optimizer steps" in text and "from step 3780" in text and "(epoch 172)" in text
    assert "not reached" not in text


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"unit": "steps"}, ValueError, r"`unit` must be one of"),
        ({"unit": "step"}, ValueError, r"`period` .* is required with unit='step'"),
        ({"unit": "step", "period": 0}, ValueError, r"`period` must be >= 1"),
        ({"unit": "step", "period": 2.5}, TypeError, r"`period` must be an int"),
        ({"period": 10}, ValueError, r"`period` applies only to unit='step'"),
    ],
)
def test_pacing_arguments_are_validated(kwargs, error, match):
    with pytest.raises(error, match=match):
        GammaSchedule(**kwargs)


def test_at_step_checks_its_argument_and_unit():
    paced = GammaSchedule.from_preset("lpc-paper", unit="step", period=5)
    with pytest.raises(ValueError, match=r"`step` must be >= 0"):
        paced.at_step(-1)
    with pytest.raises(TypeError, match=r"`step` must be an int"):
        paced.at_step(1.0)
    with pytest.raises(ValueError, match=r"needs unit='step'"):
        GammaSchedule.from_preset("lpc-paper").at_step(3)
    with pytest.raises(ValueError, match=r"`reach_fraction` must lie in"):
        auto_period(GammaSchedule(), 100, reach_fraction=1.5)
    with pytest.raises(TypeError, match=r"`schedule` must be a GammaSchedule"):
        auto_period(lambda e: 1.0, 100)
