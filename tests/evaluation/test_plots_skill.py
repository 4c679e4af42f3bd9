"""Skill-vs-lead table and figure (evaluation/plots_skill.py)."""
import numpy as np
import pandas as pd
import pytest

from rom_pipeline.evaluation.plots_skill import plot_skill_vs_lead, skill_by_lead


def long_table():
    lead = np.array([0.0, 1.0, 2.0, 3.0])
    rows = []
    for model, factor in (("mvar", 0.5), ("lstm", 2.0)):
        for run in ("a", "b"):
            rows.append(pd.DataFrame({
                "model": model, "run_id": run, "shift_mode": "lab_ensemble", "lead_time": lead,
                "r2": [0.9, 0.8, 0.5, 0.1], "crps": factor * np.array([1.0, 1.0, 2.0, 2.0]),
                "crps_climatology": [2.0, 2.0, 2.0, 2.0], "crps_hold": [1.0, 2.0, 4.0, 4.0],
                "energy": [1.0, 1.0, 1.0, 1.0], "energy_climatology": [4.0, 4.0, 2.0, 2.0],
                "energy_hold": [1.0, 1.0, 1.0, 1.0], "ensemble_variance": [1.0, 1.0, 3.0, 3.0],
                "ensemble_mean_mse": [2.0, 2.0, 2.0, 2.0],
            }))
        rows.append(rows[-1].assign(shift_mode="oracle", crps=np.nan))
    return pd.concat(rows, ignore_index=True)


def test_skill_by_lead_pools_frames_per_window():
    table = skill_by_lead(long_table(), edges=[0.0, 2.0], n_members=4)
    mvar = table[table.model == "mvar"].reset_index(drop=True)
    assert list(mvar.lead_start) == [0.0, 2.0] and np.isinf(mvar.lead_end[1])
    assert list(mvar.n_frames) == [4, 4]
    # window [0, 2): crps 0.5 per frame vs climatology 2 -> 0.75; vs hold (1 + 2)/2 -> 1 - 0.5/1.5
    assert mvar.crps_skill_climatology[0] == pytest.approx(0.75)
    assert mvar.crps_skill_hold[0] == pytest.approx(1 - 0.5 / 1.5)
    assert mvar.energy_skill_climatology[1] == pytest.approx(0.5)
    assert mvar.spread_skill[0] == pytest.approx(np.sqrt(5 / 4 * 1.0) / np.sqrt(2.0))
    assert mvar.r2_frame_mean[1] == pytest.approx(0.3)
    lstm = table[table.model == "lstm"].reset_index(drop=True)
    assert lstm.crps_skill_climatology[1] == pytest.approx(1 - 4.0 / 2.0)  # worse than climatology
    fig = plot_skill_vs_lead(table)
    assert len(fig.axes) == 2 and len(fig.axes[0].lines) == 2 * 2 + 1


def test_bad_edges_and_missing_mode_are_refused():
    with pytest.raises(ValueError, match="strictly increasing"):
        skill_by_lead(long_table(), edges=[2.0, 1.0], n_members=4)
    with pytest.raises(ValueError, match="add it to eval.shift_modes"):
        skill_by_lead(long_table(), edges=[0.0], n_members=4, shift_mode="hold")


def test_each_model_keeps_one_colour_in_both_panels():
    from matplotlib.colors import to_hex

    table = pd.DataFrame([
        {"model": m, "lead_start": a, "lead_end": b, "crps_skill_climatology": 0.1,
         "crps_skill_hold": 0.2, "spread_skill": 1.0}
        for m in ("LSTM", "MVAR", "climatology") for a, b in ((0.0, 2.0), (2.0, np.inf))
    ])
    left, right = plot_skill_vs_lead(table).axes
    colour = {line.get_label(): to_hex(line.get_color()) for line in left.lines + right.lines}
    for model in ("LSTM", "MVAR", "climatology"):
        assert colour[f"{model}: CRPS vs climatology"] == colour[f"{model}: CRPS vs held track"] == colour[model]
    assert len({colour[m] for m in ("LSTM", "MVAR", "climatology")}) == 3
