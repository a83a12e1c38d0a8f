"""Benchmark reports: the speed ratios rest on pairs from the same round (benchmarks/forecast.py --rounds); the network timer times what it names."""

from __future__ import annotations

import pytest

from benchmarks.forecast import ratio_table


def test_ratio_is_taken_within_each_round_not_across_medians():
    # per round tmu / extrapolation: 4.0/2.0 = 2.0, 2.0/1.0 = 2.0, 3.0/3.0 = 1.0 -> median 2.0;
    # the ratio of the medians (3.0 / 2.0 = 1.5) would pair runs from different rounds
    times = [(4.0, 2.0), (2.0, 1.0), (3.0, 3.0)]
    rows = [{"region": "r", "method": m, "round": k, "compute_s": t}
            for k, (tmu, ext) in enumerate(times) for m, t in (("tmu", tmu), ("extrapolation", ext))]
    table = ratio_table(rows)
    tmu_row = next(line for line in table.splitlines() if line.startswith("| r | tmu"))
    assert "2.00 2.00 1.00" in tmu_row
    assert tmu_row.endswith("| 2.00 |")
    assert "| r | tmu | 3 | 3.00 |" in tmu_row  # the median time itself is still shown


def test_a_method_without_an_extrapolation_run_in_its_round_has_no_ratio():
    rows = [{"region": "r", "method": "tmu", "round": 0, "compute_s": 2.0}]
    assert ratio_table(rows).splitlines()[-1] == "| r | tmu | 1 | 2.00 | - | - |"


def test_network_speed_times_every_variant_it_was_given(capsys):
    from benchmarks.network_speed import main

    assert main(["--hidden", "8", "4", "--size", "32", "--leads", "2", "--rounds", "1"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if "random weights" in line]
    assert [row.split(",")[1].split("(")[0].strip() for row in rows] == ["8 ch", "4 ch"]
    assert all(float(row.split("|")[2]) > 0.0 for row in rows)


def test_validation_curves_follow_each_run_of_a_queue(tmp_path):
    """benchmarks/validation_curves.py: lines go to the run last announced for their model in that log,
    a resumed run's repeated iteration takes the later value, and arms average over their seeds."""
    from benchmarks.validation_curves import by_model, read_logs

    t = "2026-11-26 22:00:00,000"
    queue = [
        f"{t} radar_transfer: training swiss-south-tmu (seed 0, 200 iterations) -> /x/tmu-s0.pt",
        f"{t} nowcast.training: swiss-south-tmu it 100/200 loss 0.1 (distill 0.01) val_mse 0.0600, 1.0 s/it",
        f"{t} nowcast.training: swiss-south-tmu it 150/200 loss 0.1 (distill 0.01), 1.0 s/it",  # no validation
        f"{t} nowcast.training: swiss-south-tmu it 200/200 loss 0.1 (distill 0.01) val_mse 0.0500, 1.0 s/it",
        f"{t} radar_transfer: training swiss-south-tmu (seed 1, 200 iterations) -> /x/tmu-s1.pt",
        f"{t} nowcast.training: swiss-south-tmu it 100/200 loss 0.1 (distill 0.01) val_mse 0.0800, 1.0 s/it",
        f"{t} nowcast.training: swiss-south-tmu it 200/200 loss 0.1 (distill 0.01) val_mse 0.0900, 1.0 s/it",
        f"{t} nowcast.training: swiss-south-tmu it 200/200 loss 0.1 (distill 0.01) val_mse 0.0700, 1.0 s/it",  # resumed
        f"{t} nowcast.training: swiss-south-scratch it 100/200 loss 0.1 val_mse 0.5, 1.0 s/it",  # never announced
    ]
    (tmp_path / "queue.log").write_text("\n".join(queue))
    curves = read_logs([tmp_path / "queue.log"])
    assert curves == {("swiss-south-tmu", 0): {100: 0.06, 200: 0.05}, ("swiss-south-tmu", 1): {100: 0.08, 200: 0.07}}
    summary = by_model(curves)["swiss-south-tmu"]
    assert summary["iterations"] == [100, 200] and summary["seeds"] == [0, 1]
    assert summary["mean"] == pytest.approx([0.07, 0.06])
    assert summary["spread"] == pytest.approx([0.01, 0.01])


def test_validation_curves_compare_arms_at_the_same_seed():
    from benchmarks.validation_curves import relative_to

    curves = {("scratch", 0): {100: 0.05, 200: 0.04}, ("tmu", 0): {100: 0.055, 200: 0.04},
              ("scratch", 1): {100: 0.10}, ("tmu", 1): {100: 0.09}, ("tmu", 2): {100: 0.01}}  # seed 2: no scratch
    rel = relative_to(curves, "scratch")
    assert set(rel) == {("tmu", 0), ("tmu", 1)}
    assert rel[("tmu", 0)] == pytest.approx({100: 10.0, 200: 0.0})
    assert rel[("tmu", 1)] == pytest.approx({100: -10.0})


def _arm(per_seed_csi: list[float], leads: int = 12) -> dict:
    """A study result whose every lead of seed i scores per_seed_csi[i]."""
    rows = [[v] * leads for v in per_seed_csi]
    return {"scores": {"csi@1": {"per_seed": rows}}}


def test_the_transfer_order_needs_each_step_beyond_the_seed_spread():
    """radar_transfer.transfer_order: A > B only where the seed means differ by more than the larger spread;
    exactly at it is a tie, and one tie (or reversal) means the order does not hold."""
    from benchmarks.radar_transfer import transfer_order

    # scratch 0.500 ± 0.010; finetune 0.520 ± 0.010 (+0.020 > 0.010); TMU 0.540 ± 0.020: +0.020 is exactly
    # the larger spread (0.020): a tie
    results = {"scratch": _arm([0.49, 0.50, 0.51]), "finetune-nexrad-kbmx": _arm([0.51, 0.52, 0.53]),
               "tmu": _arm([0.52, 0.54, 0.56])}
    o = transfer_order(results)
    assert o["means"]["tmu"] == pytest.approx(0.54) and o["spreads"]["tmu"] == pytest.approx(0.02)
    assert o["pairs"] == ["=", ">"] and not o["holds"]
    results["tmu"] = _arm([0.5201, 0.5401, 0.5601])  # just beyond: the order holds
    o = transfer_order(results)
    assert o["pairs"] == [">", ">"] and o["holds"]
    results["scratch"] = _arm([0.54, 0.55, 0.56])  # scratch ahead of finetune by more than the spread
    assert transfer_order(results)["pairs"] == [">", "<"]
    # only the first hour counts: a late lead cannot rescue it
    late = {arm: {"scores": {"csi@1": {"per_seed": [[0.5] * 12 + [0.9 if arm == "tmu" else 0.1] * 12]}}}
            for arm in ("tmu", "finetune-nexrad-kbmx", "scratch")}
    assert transfer_order(late)["pairs"] == ["=", "="]


def test_window_map_shows_the_window_asked_for_and_refuses_one_the_store_lacks(tmp_path):
    """benchmarks/window_map.py: any sequence of a store as a map beside the baselines; a wrong index is one line."""
    from benchmarks.window_map import main
    from pipelines.simulate import simulate_dataset

    store = simulate_dataset("swiss-south", 2, 16, tmp_path / "test.zarr", seed=5, crop_size=32,
                             scheduler="synchronous")
    out = tmp_path / "map.png"
    assert main([str(store), "1", "--history", "4", "--out", str(out)]) == 0
    assert out.stat().st_size > 10_000
    with pytest.raises(SystemExit, match="no sequence 2 \\(it holds 2\\)"):
        main([str(store), "2", "--history", "4", "--out", str(tmp_path / "none.png")])
    assert not (tmp_path / "none.png").exists()


def test_the_order_line_reads_the_arms_it_is_given():
    """radar_transfer.order_line: a study with other arms (thirty-fourth round's specialists) reads their order,
    and says nothing where an arm is missing rather than reading another arm in its place."""
    from benchmarks.radar_transfer import order_line

    results = {"scratch": _arm([0.49, 0.50, 0.51]), "finetune-kbmx-growth": _arm([0.53, 0.54, 0.55]),
               "tmu-split": _arm([0.56, 0.57, 0.58]), "finetune-nexrad-kbmx": _arm([0.60, 0.61, 0.62])}
    line = order_line(results, "csi@1", ("tmu-split", "finetune-kbmx-growth", "scratch"))
    assert line == ("Order on mean CSI@1 0-60 min: tmu-split 0.570 ± 0.010 > finetune-kbmx-growth 0.540 ± 0.010 "
                    "> scratch 0.500 ± 0.010 (holds).")
    assert "< finetune-nexrad-kbmx" in order_line(results, "csi@1", ("tmu-split", "finetune-nexrad-kbmx"))
    assert order_line(results, "csi@1", ("tmu-split", "finetune-korpo-convective", "scratch")) == ""
    assert order_line(results, "csi@1") == ""  # the default arms: "tmu" is not in this study


def test_the_specialist_arms_are_built_from_the_specialists_and_checkpoint_by_their_own_name(monkeypatch):
    """The thirty-fourth round's arms name their configs by path; each trains from the specialist it says, into a
    checkpoint of its own config name, on the same archive and recipe as the other arms."""
    import benchmarks.radar_transfer as study
    from benchmarks.specialist_sources import SPECIALISTS

    # the stratiform store is made from the simulated training store, which a fresh clone does not have
    store = study.ROOT / "data/sim/swiss-south-train-stratiform.zarr"
    monkeypatch.setattr(study, "regime_training_store", lambda config, regimes: store)
    split = f"{study.SPLIT_CONFIGS}/"
    kw = {"train_regimes": ("stratiform",), "trend_samples": 0.0}
    scratch = study.study_config(study.NEURAL["scratch"], 2, 1000, "fp32", **kw)
    growth = study.study_config(study.NEURAL["finetune-kbmx-growth"], 2, 1000, "fp32", **kw)
    convective = study.study_config(study.NEURAL["finetune-korpo-convective"], 2, 1000, "fp32", **kw)
    tmu = study.study_config(study.NEURAL["tmu-split"], 2, 1000, "fp32", **kw)
    assert growth.checkpoint == "models/runs/study/swiss-south-finetune-kbmx-growth-stratiform-ptf0-it1000-s2.pt"
    assert tmu.checkpoint == "models/runs/study/swiss-south-tmu-split-stratiform-ptf0-it1000-s2.pt"
    assert growth.training.init_from == split + "src-nexrad-kbmx-growth.yaml"
    assert convective.training.init_from == split + "src-finland-korpo-convective.yaml"
    assert tmu.tmu.sources == [split + f"{name}.yaml" for name in SPECIALISTS] + ["src-eumetsat-ir", "mnist-source-3digit"]
    # the same archive, architecture and recipe as scratch: only the start (or the memory) differs
    for arm in (growth, convective):
        assert arm.model_dump(exclude={"name", "description", "checkpoint", "training"}) == \
            scratch.model_dump(exclude={"name", "description", "checkpoint", "training"})
        assert arm.training.model_dump(exclude={"init_from"}) == scratch.training.model_dump(exclude={"init_from"})
    assert tmu.data == scratch.data and tmu.architecture == scratch.architecture
    full_tmu = study.study_config(study.NEURAL["tmu"], 2, 1000, "fp32", **kw)
    assert tmu.model_dump(exclude={"name", "description", "checkpoint", "tmu"}) == \
        full_tmu.model_dump(exclude={"name", "description", "checkpoint", "tmu"})


def test_a_specialist_trains_only_on_its_regime_store(monkeypatch, tmp_path):
    """benchmarks/specialist_sources.py: each specialist names its zoo source's store of its one regime; a YAML that
    names another store is refused before anything trains."""
    import benchmarks.specialist_sources as specialists

    for name, (base, regime) in specialists.SPECIALISTS.items():
        config, zoo, got = specialists.specialist_config(name)
        assert got == regime and zoo.name == base and config.role == "source"
        assert config.data.path.endswith(f"-{regime}.zarr")
        assert config.checkpoint.startswith("models/runs/")  # never the zoo's own checkpoint
    text = (specialists.ROOT / specialists.SPLIT_CONFIGS / "src-nexrad-kbmx-growth.yaml").read_text()
    (tmp_path / specialists.SPLIT_CONFIGS).mkdir(parents=True)
    (tmp_path / specialists.SPLIT_CONFIGS / "src-nexrad-kbmx-growth.yaml").write_text(
        text.replace("nexrad-kbmx-train-growth_decay.zarr", "nexrad-kbmx-train.zarr"))
    monkeypatch.setattr(specialists, "ROOT", tmp_path)
    with pytest.raises(SystemExit, match="not the growth_decay store of src-nexrad-kbmx"):
        specialists.specialist_config("src-nexrad-kbmx-growth")


def test_an_order_of_arms_the_study_does_not_score_is_refused_before_any_work(tmp_path):
    """radar_transfer.py --order naming an arm not in --methods: one line, before a test set is made or read."""
    from benchmarks.radar_transfer import main

    missing = tmp_path / "never-made.zarr"
    with pytest.raises(SystemExit, match="--order: scratch, tmu-split not among the --methods scored"):
        main(["--methods", "extrapolation", "finetune-kbmx-growth", "--order", "tmu-split", "finetune-kbmx-growth",
              "scratch", "--test", str(missing), "--out", str(tmp_path / "out")])
    assert not missing.exists() and not (tmp_path / "out").exists()


@pytest.mark.parametrize("arm, field, values, checkpoint", [
    ("tmu-split-competitive", "variant", ("convex", "competitive"),  # thirty-fourth round, part 4: the update alone
     "models/runs/study/swiss-south-tmu-split-competitive-stratiform-ptf0-it1000-s1.pt"),
    ("tmu-split-top", "layer", ("bottom", "top"),  # thirty-fifth round, part 3: the layer the TMU sits at alone
     "models/runs/study/swiss-south-tmu-split-top-stratiform-ptf0-it1000-s1.pt"),
])
def test_a_tmu_split_variant_differs_from_the_split_tmu_in_one_field_only(monkeypatch, arm, field, values, checkpoint):
    """Same sources, data, recipe and architecture as ``tmu-split``: only the field compared differs."""
    import benchmarks.radar_transfer as study

    monkeypatch.setattr(study, "regime_training_store",
                        lambda config, regimes: study.ROOT / "data/sim/swiss-south-train-stratiform.zarr")
    kw = {"train_regimes": ("stratiform",), "trend_samples": 0.0}
    split = study.study_config(study.NEURAL["tmu-split"], 1, 1000, "fp32", **kw)
    other = study.study_config(study.NEURAL[arm], 1, 1000, "fp32", **kw)
    assert (getattr(split.tmu, field), getattr(other.tmu, field)) == values
    assert other.checkpoint == checkpoint
    skip = {"name", "description", "checkpoint", "tmu"}
    assert other.model_dump(exclude=skip) == split.model_dump(exclude=skip)
    assert other.tmu.model_dump(exclude={field}) == split.tmu.model_dump(exclude={field})
