"""The sweep runner and the compare command, on tiny synthetic runs."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from evaluation.compare import (
    add_deltas,
    compare_runs,
    load_reference_rows,
    merge_reference,
    summarise_groups,
)
from evaluation.results_table import markdown_table
from evaluation.run_records import RunResult, load_run
from experiments import sweep
from experiments.archive import archive_run
from experiments.sweep import (
    Evaluation,
    PlannedRun,
    read_plan,
    run_sweep,
    select_runs,
    train_command,
)
from tests.conftest import REPO, CliRunner, wait_for
from training.finetune import with_pretrained_defaults
from utils.config import config_to_dict, load_config, read_yaml
from utils.errors import UserError

TINY = ["data.synthetic_samples=300", "train.epochs=2", "data.batch_size=50"]
# The same, as a plan row's overrides (whose epochs the test sets), with no timed choices.
TINY_ROW = [
    "data.synthetic_samples=300",
    "data.batch_size=50",
    "train.precision=fp32",
    "train.layout_probe=false",
]


def test_sweep_runs_resumes_and_skips(tmp_path: Path, run_in_process: CliRunner) -> None:
    plan = [
        PlannedRun("smoke-s0", "smoke.yaml", [*TINY, "train.seed=0"]),
        PlannedRun("smoke-s1", "smoke.yaml", [*TINY, "train.seed=1"]),
    ]
    assert run_sweep(plan, tmp_path, None) == 0
    for name in ("smoke-s0", "smoke-s1"):
        assert json.loads((tmp_path / name / "summary.json").read_text())["epochs_run"] == 2
    # A run killed before finishing has last.pt but no summary.json: it is resumed, not restarted.
    (tmp_path / "smoke-s1" / "summary.json").unlink()
    assert "--resume" in train_command(plan[1], tmp_path / "smoke-s1", None)
    assert "--resume" not in train_command(plan[0], tmp_path / "new-run", "data")
    mtime = (tmp_path / "smoke-s0" / "last.pt").stat().st_mtime_ns
    scores = (Evaluation.parse("test"), Evaluation.parse("test:flip"))
    assert run_sweep(plan, tmp_path, None, tmp_path / "records", scores) == 0
    assert (tmp_path / "smoke-s0" / "last.pt").stat().st_mtime_ns == mtime  # skipped
    for name in ("smoke-s0", "smoke-s1"):  # the skipped run's records are kept too
        assert (tmp_path / "records" / name / "summary.json").is_file()
    assert (tmp_path / "smoke-s1" / "summary.json").is_file()
    # Each finished run, skipped or not, is scored on the test split once, with and without TTA.
    test_metrics = tmp_path / "smoke-s0" / "eval-test" / "metrics.json"
    scored = json.loads(test_metrics.read_text())
    assert scored["split"] == "test" and scored["tta"] == "none"
    flipped = json.loads((tmp_path / "smoke-s1/eval-test-flip/metrics.json").read_text())
    assert flipped["tta"] == "flip"
    scored_at = test_metrics.stat().st_mtime_ns
    assert run_sweep(plan, tmp_path, None, None, scores) == 0
    assert test_metrics.stat().st_mtime_ns == scored_at

    result = compare_runs([tmp_path / "smoke-s0", tmp_path / "smoke-s1"], tmp_path / "out")
    (row,) = result["rows"]
    accs = [
        100 * json.loads((tmp_path / n / "summary.json").read_text())["best_val_acc"]
        for n in ("smoke-s0", "smoke-s1")
    ]
    assert row["group"] == "smoke" and row["seeds"] == [0, 1]
    assert row["val_acc_mean"] == pytest.approx(sum(accs) / 2, abs=0.01)
    assert row["max_val_acc_mean"] >= row["val_acc_mean"]
    for name in ("results.md", "results.json", "results_val_loss.png", "results_val_acc.png"):
        assert (tmp_path / "out" / name).is_file()
    assert [p.name for p in result["plots"]][-1] == "results_scores.png"  # runs scored on test
    assert (tmp_path / "out" / "results_scores.png").stat().st_size > 10_000
    assert "| smoke | 0, 1 |" in (tmp_path / "out" / "results.md").read_text()
    test_accs = [
        100 * json.loads((tmp_path / n / "eval-test/metrics.json").read_text())["accuracy"]
        for n in ("smoke-s0", "smoke-s1")
    ]
    assert row["test"]["none"]["acc_mean"] == pytest.approx(sum(test_accs) / 2, abs=0.01)
    assert set(row["test"]) == {"none", "flip"}
    header = (tmp_path / "out" / "results.md").read_text().splitlines()[0]
    assert "| test acc (%) | test loss | test acc, flip TTA (%) |" in header

    # The records the sweep archived (no weights) rebuild the same row.
    archived = [tmp_path / "records" / n for n in ("smoke-s0", "smoke-s1")]
    assert not list((tmp_path / "records").rglob("*.pt"))
    (again,) = compare_runs(archived, tmp_path / "out2")["rows"]
    assert {**again, "runs": None} == {**row, "runs": None}
    with pytest.raises(UserError, match="not a finished run"):
        archive_run(tmp_path / "missing-run", tmp_path / "records")
    with pytest.raises(UserError, match="already in"):
        archive_run(archived[0], tmp_path / "records")
    # The command line: an earlier table as reference, written over by the new one.
    (tmp_path / "ref.json").write_text(json.dumps([{**row, "group": "other", "seeds": [5]}]))
    proc = run_in_process(
        "compare.py",
        *map(str, archived),
        "--reference",
        "ref.json",
        "--prefix",
        "ref",
        "--output-dir",
        ".",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    table = (tmp_path / "ref.md").read_text()
    assert "| other † | 5 |" in table and "| smoke | 0, 1 |" in table


def write_run_records(run_dir: Path, best_epoch: int, epochs_run: int) -> dict[str, object]:
    """The records of a one-epoch finished run named ``r`` in ``run_dir``; returns its summary."""
    summary = {"best_val_acc": 0.5, "best_val_loss": 1.0, "best_epoch": best_epoch}
    summary |= {"epochs_run": epochs_run, "train_seconds": 1.0, "hardware": "cpu"}
    row = {"epoch": 1, "val_loss": 1.0, "val_acc": 0.5, "epoch_time_s": 1.0}
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text("name: r\ntrain: {seed: 0}\n")
    (run_dir / "summary.json").write_text(json.dumps(summary))
    (run_dir / "metrics.json").write_text(json.dumps([row]))
    return summary


def fake_run(
    group: str, seed: int, acc: float, loss: float, test_acc: float | None = None
) -> RunResult:
    summary = {"best_val_acc": acc, "best_val_loss": loss, "best_epoch": 3, "epochs_run": 5}
    summary |= {"train_seconds": 60.0, "hardware": "cpu"}
    history = [{"epoch": 1, "val_acc": acc, "epoch_time_s": 10.0}]
    test = {} if test_acc is None else {"none": {"acc": test_acc, "loss": loss + 0.01}}
    return RunResult(Path(f"{group}-s{seed}"), group, seed, summary, history, test)


def rows_with_deltas(runs: list[RunResult]) -> list[dict[str, object]]:
    """The comparison rows of ``runs``, each variation with its change against its parent."""
    rows = summarise_groups(runs)
    add_deltas(rows)
    return rows


def test_variations_are_reported_against_their_parent() -> None:
    runs = [
        fake_run("optimized", 0, 0.80, 0.60),
        fake_run("optimized", 1, 0.82, 0.58),
        fake_run("optimized-no-wd", 0, 0.785, 0.65),
        fake_run("optimized-no-wd-x", 0, 0.79, 0.64),
        fake_run("baseline", 0, 0.70, 0.90),
    ]
    rows = rows_with_deltas(runs)
    by_group = {r["group"]: r for r in rows}
    assert by_group["optimized-no-wd"]["vs"] == "optimized"
    assert by_group["optimized-no-wd"]["delta_val_acc"] == pytest.approx(-2.5)
    assert by_group["optimized-no-wd"]["delta_val_loss"] == pytest.approx(0.06)
    assert by_group["optimized-no-wd-x"]["vs"] == "optimized-no-wd"  # the closest parent
    assert "vs" not in by_group["baseline"] and "vs" not in by_group["optimized"]
    assert "| -2.50 pts / +0.0600 vs optimized |" in markdown_table(rows)


def test_a_budgeted_variation_is_reported_against_its_parent_at_the_same_budget() -> None:
    runs = [
        fake_run("budget (0.75 PFLOP)", 0, 0.85, 0.50),
        fake_run("budget (4.5 PFLOP)", 0, 0.91, 0.44),
        fake_run("budget-cutout (4.5 PFLOP)", 0, 0.92, 0.41),
        fake_run("budget-ema (2 PFLOP)", 0, 0.89, 0.46),
    ]
    rows = rows_with_deltas(runs)
    by_group = {r["group"]: r for r in rows}
    assert by_group["budget-cutout (4.5 PFLOP)"]["vs"] == "budget (4.5 PFLOP)"
    assert by_group["budget-cutout (4.5 PFLOP)"]["delta_val_acc"] == pytest.approx(1.0)
    assert "vs" not in by_group["budget-ema (2 PFLOP)"]  # no parent at its budget
    assert "vs" not in by_group["budget (4.5 PFLOP)"]


def test_test_columns_show_groups_whose_every_run_was_scored() -> None:
    runs = [
        fake_run("optimized", 0, 0.80, 0.60, test_acc=0.79),
        fake_run("optimized", 1, 0.82, 0.58, test_acc=0.81),
        fake_run("optimized-no-wd", 0, 0.785, 0.65, test_acc=0.76),
        fake_run("baseline", 0, 0.70, 0.90, test_acc=0.69),
        fake_run("baseline", 1, 0.71, 0.88),  # not scored: the group has no test figure
    ]
    rows = rows_with_deltas(runs)
    by_group = {r["group"]: r for r in rows}
    assert by_group["optimized"]["test"]["none"]["acc_mean"] == pytest.approx(80.0)
    assert by_group["optimized"]["test"]["none"]["acc_std"] == pytest.approx(1.41, abs=0.01)
    assert "test" not in by_group["baseline"]
    assert by_group["optimized-no-wd"]["delta_test_acc"] == pytest.approx(-4.0)
    lines = markdown_table(rows).splitlines()
    header = "| run | seeds | val acc (%) | val loss | test acc (%) | test loss | best epoch |"
    assert lines[0].startswith(header)
    assert "| 80.00 ± 1.41 | 0.6000 ± 0.0141 |" in lines[2]
    assert lines[4].startswith("| baseline | 0, 1 | 70.50 ± 0.71 | 0.8900 ± 0.0141 |  |  |")
    assert "-2.50 pts / +0.0600; test -4.00 pts vs optimized" in lines[3]
    assert lines[0].endswith("| change in val acc / loss; test acc |")
    assert by_group["baseline"]["test_runs_scored"] == 1
    assert "only some runs were scored on the test split (baseline: 1 of 2)" in "\n".join(lines)


def test_runs_trained_to_a_time_budget_show_their_plan() -> None:
    replanned = fake_run("best-120min", 0, 0.85, 0.45)
    replanned.summary["time_budget"] = {
        "minutes": 120.0, "first_planned_epochs": 13, "planned_epochs": 15,
        "epochs_run": 15, "minutes_used": 118.2,
    }  # fmt: skip
    as_planned = fake_run("best-60min", 0, 0.80, 0.55)
    as_planned.summary["time_budget"] = {
        "minutes": 60.0, "first_planned_epochs": 7, "planned_epochs": 7,
        "epochs_run": 7, "minutes_used": 58.0,
    }  # fmt: skip
    rows = summarise_groups([replanned, as_planned, fake_run("best", 0, 0.9, 0.3)])
    lines = markdown_table(rows).splitlines()
    assert lines[0].endswith("| wall time (min) | time budget: planned epochs |")
    assert lines[2].endswith("| 120 min: 13 → 15 |")
    assert lines[3].endswith("| 60 min: 7 |")
    assert lines[4].endswith("| 1.0 |  |")  # no budget: the cell stays empty
    assert "time budget" not in markdown_table(rows[2:])  # no run had one: no column


@pytest.mark.parametrize(
    ("wrong", "says"),
    [
        ({"checkpoint": "r/last.pt", "epoch": 6}, "with .*r/last.pt at epoch 6"),
        ({"epoch": 6}, "best.pt at epoch 6"),
        ({"checkpoint": "other-run/best.pt"}, "other-run/best.pt"),
        ({"split": "val"}, "the val split"),
        ({"tta": "flip"}, "TTA flip"),  # written by the evaluate.py that had one folder
        ({"flip_tta": True, "tta": None}, "TTA flip"),  # older still: no tta key
    ],
)
def test_a_test_score_is_refused_unless_it_is_of_the_kept_best_pt_as_named(
    tmp_path: Path, wrong: dict[str, object], says: str
) -> None:
    run = tmp_path / "r"
    write_run_records(run, best_epoch=4, epochs_run=6)
    (run / "eval-test").mkdir()
    scored = {"checkpoint": str(run / "best.pt"), "epoch": 4, "split": "test", "tta": "none"}
    scored |= {"accuracy": 0.5, "loss": 1.0}
    (run / "eval-test/metrics.json").write_text(json.dumps(scored))
    assert load_run(run).test == {"none": {"acc": 0.5, "loss": 1.0}}
    if "checkpoint" in wrong:
        wrong = {**wrong, "checkpoint": str(tmp_path / str(wrong["checkpoint"]))}
    edited = {k: v for k, v in {**scored, **wrong}.items() if v is not None}
    (run / "eval-test/metrics.json").write_text(json.dumps(edited))
    with pytest.raises(UserError, match=f"{says}.*not the test split") as refused:
        load_run(run)
    assert "evaluate.py --ckpt" in str(refused.value)


@pytest.mark.parametrize("text", ["val:mirror", "holdout", "test:flip:x"])
def test_an_evaluation_that_is_not_split_and_tta_is_refused(text: str) -> None:
    with pytest.raises(UserError, match="expected SPLIT"):
        Evaluation.parse(text)


def test_reference_rows_join_the_table_and_the_changes(tmp_path: Path) -> None:
    earlier = summarise_groups(
        [
            fake_run("optimized", 0, 0.80, 0.60),
            fake_run("optimized", 1, 0.82, 0.58),
            fake_run("optimized-no-wd", 0, 0.785, 0.65),
            fake_run("baseline", 0, 0.70, 0.90),
        ]
    )
    add_deltas(earlier)
    (tmp_path / "earlier.json").write_text(json.dumps(earlier))
    reference = load_reference_rows(tmp_path / "earlier.json")
    measured = summarise_groups(
        [fake_run("optimized-no-es", 0, 0.83, 0.55), fake_run("baseline", 0, 0.72, 0.88)]
    )
    rows = merge_reference(reference, measured, "earlier.json")
    add_deltas(rows)
    by_group = {r["group"]: r for r in rows}
    assert [r["group"] for r in rows] == [
        "optimized",
        "optimized-no-wd",
        "baseline",
        "optimized-no-es",
    ]
    assert by_group["optimized-no-es"]["delta_val_acc"] == pytest.approx(2.0)  # vs 81 (reference)
    assert by_group["baseline"] == measured[1]  # a measured group replaces its reference row
    assert by_group["optimized"]["from"] == "earlier.json" and "from" not in by_group["baseline"]
    table = markdown_table(rows)
    assert "| optimized † | 0, 1 |" in table and "| baseline | 0 |" in table
    assert "† from earlier.json" in table


def test_reference_rows_lose_changes_against_parents_no_longer_there() -> None:
    rows = summarise_groups([fake_run("optimized-no-wd", 0, 0.785, 0.65, test_acc=0.77)])
    rows[0] |= {"vs": "optimized", "delta_val_acc": -2.5, "delta_val_loss": 0.06}
    rows[0] |= {"delta_test_acc": -3.0}
    merged = merge_reference(rows, [], "old.json")
    add_deltas(merged)
    assert "vs" not in merged[0] and "delta_val_acc" not in merged[0]
    assert "delta_test_acc" not in merged[0]
    assert merged[0]["test"]["none"]["acc_mean"] == pytest.approx(77.0)  # its own figures stay


def test_reference_rows_with_and_without_test_figures_share_a_table() -> None:
    old = summarise_groups([fake_run("baseline", 0, 0.70, 0.90)])  # an older results JSON
    measured = summarise_groups([fake_run("baseline-aug", 0, 0.80, 0.60, test_acc=0.79)])
    rows = merge_reference(old, measured, "old.json")
    add_deltas(rows)
    assert "delta_test_acc" not in rows[1]  # the parent has no test figure
    lines = markdown_table(rows).splitlines()
    assert lines[2].startswith("| baseline † | 0 | 70.00 | 0.9000 |  |  |")
    assert lines[3].startswith("| baseline-aug | 0 | 80.00 | 0.6000 | 79.00 | 0.6100 |")


@pytest.mark.parametrize("text", ["not json", '{"group": "a"}', '[{"group": "a"}]'])
def test_a_reference_that_is_not_a_results_file_is_refused(tmp_path: Path, text: str) -> None:
    (tmp_path / "bad.json").write_text(text)
    with pytest.raises(UserError, match=r"bad\.json"):
        load_reference_rows(tmp_path / "bad.json")


def test_a_missing_or_binary_reference_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not found"):
        load_reference_rows(tmp_path / "missing.json")
    (tmp_path / "binary.json").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(UserError, match="not JSON"):
        load_reference_rows(tmp_path / "binary.json")


def test_the_hardware_note_names_each_setup_and_its_rows() -> None:
    runs = [fake_run("optimized", 0, 0.80, 0.60), fake_run("baseline", 0, 0.70, 0.90)]
    rows = summarise_groups(runs)
    assert "Hardware: cpu\n" in markdown_table(rows)
    rows[1] |= {"hardware": "cpu (AVX2)", "precision": "fp32"}
    table = markdown_table(rows)
    assert "Hardware: cpu (optimized)" in table and "Hardware: cpu (AVX2), fp32 (baseline)" in table


def test_headline_plan_covers_seeds_and_ablations() -> None:
    plan = read_plan(Path(__file__).parent.parent / "experiments" / "headline.yaml")
    names = {run.name for run in plan}
    assert {"baseline-s0", "baseline-s2", "optimized-s0", "optimized-s2"} <= names
    assert len(names) == 14


def test_only_selects_rows_in_plan_order_and_rejects_unknown_names() -> None:
    plan = [PlannedRun(name, "smoke.yaml") for name in ("a", "b", "c")]
    assert [run.name for run in select_runs(plan, ["c", "a"])] == ["a", "c"]
    assert select_runs(plan, None) == plan
    with pytest.raises(UserError, match="not in the plan: x"):
        select_runs(plan, ["b", "x"])


@pytest.mark.parametrize(
    "text",
    [
        "runs: []",
        "- a\n- b",
        "runs:\n  - {name: a}",
        "runs:\n  - {name: a, config: x.yaml}\n  - {name: a, config: y.yaml}",
        "runs: [{name: a, config: x.yaml}",  # not YAML
        "runs:\n  - {name: a, config: x.yaml, sets: [train.seed=1]}",  # a misspelt key
        "runs:\n  - {name: a, config: x.yaml, set: train.seed=1}",  # not a list
    ],
)
def test_malformed_plans_stop_with_a_message(tmp_path: Path, text: str) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text(text)
    with pytest.raises(UserError, match=r"plan\.yaml") as stop:
        read_plan(path)
    assert "\n" not in str(stop.value)


def test_missing_plan_stops_with_a_message(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not found"):
        read_plan(tmp_path / "missing.yaml")


def test_print_gives_the_command_of_each_selected_row(
    capsys: pytest.CaptureFixture[str],
) -> None:
    plan = Path(__file__).parent.parent / "experiments" / "headline.yaml"
    argv = ["sweep", str(plan), "--print", "--only", "optimized-no-wd", "--data-root", "d"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys, "argv", argv)
        sweep.main()
    (line,) = capsys.readouterr().out.splitlines()
    assert line.startswith("python train.py --config optimized.yaml --run-name optimized-no-wd")
    assert "--set optim.weight_decay=0" in line and line.endswith("--data-root d")


def test_set_overrides_every_row_after_its_own(capsys: pytest.CaptureFixture[str]) -> None:
    plan = Path(__file__).parent.parent / "experiments" / "headline.yaml"
    argv = ["sweep", str(plan), "--print", "--only", "baseline-es", "--only", "optimized-s1"]
    argv += ["--set", "train.precision=fp32"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys, "argv", argv)
        sweep.main()
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and all("train.precision=bf16" in line for line in lines)
    for line in lines:  # the plan pins bf16; the later fp32 wins
        words = line.split()
        config = words[words.index("--config") + 1]
        overrides = [w for w in words if "=" in w and not w.startswith("output_dir")]
        assert load_config(config, overrides).train.precision == "fp32"


@pytest.mark.parametrize(
    "plan", sorted((Path(__file__).parent.parent / "experiments").glob("*.yaml"))
)
def test_every_planned_recipe_passes_the_config_checks(plan: Path) -> None:
    for run in read_plan(plan):
        load_config(run.config, run.overrides)


def test_the_long_budget_config_is_the_recipe_of_its_archived_run() -> None:
    """configs/budget-long.yaml, as experiments/budget_long.yaml runs it, resolves to the config
    the archived budget-450-cutout-s0 run (the release model) trained with, once settled as the
    run settles it; only the paths the sweep's command line sets, and keys added since, are left
    out of the comparison."""
    plan = {run.name: run for run in read_plan(REPO / "experiments" / "budget_long.yaml")}
    run = plan["budget-450-cutout-s0"]
    planned = config_to_dict(with_pretrained_defaults(load_config(run.config, run.overrides)))
    archived = read_yaml(
        REPO / "docs" / "results" / "runs" / "budget-450-cutout-s0" / "config.yaml"
    )
    del archived["output_dir"], archived["data"]["root"]
    for section, values in archived.items():
        if isinstance(values, dict):
            assert {key: planned[section][key] for key in values} == values, section
        else:
            assert planned[section] == values, section


def test_a_run_without_per_epoch_metrics_is_refused(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text("name: r\ntrain: {seed: 0}\n")
    (tmp_path / "summary.json").write_text(json.dumps({"best_val_acc": 0.5}))
    for metrics in (None, "[]"):
        if metrics is not None:
            (tmp_path / "metrics.json").write_text(metrics)
        with pytest.raises(UserError, match="no per-epoch metrics"):
            load_run(tmp_path)


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("summary.json", '{"best_val_acc": 0.5, "best_', "JSONDecodeError"),  # cut short
        ("summary.json", '{"best_val_acc": 0.5}', "summary.json lacks best_val_loss"),
        ("config.yaml", "name: r\ntrain: [", "config.yaml: not valid YAML"),
        ("config.yaml", "train: {seed: 0}\n", "config.yaml lacks name"),
        ("metrics.json", '[{"epoch": 1, "val_acc": 0.5}]', "row 1 lacks val_loss, epoch_time_s"),
    ],
)
def test_unreadable_run_records_are_one_line(
    tmp_path: Path, name: str, text: str, message: str
) -> None:
    summary = write_run_records(tmp_path, best_epoch=1, epochs_run=1)
    assert load_run(tmp_path).summary == summary
    (tmp_path / name).write_text(text)
    with pytest.raises(UserError, match=message) as err:
        load_run(tmp_path)
    assert "\n" not in str(err.value)


@pytest.mark.slow
@pytest.mark.parametrize("stop", ["ctrl-c", "sigterm"])
def test_a_stopped_sweep_saves_its_training_and_goes_no_further(tmp_path: Path, stop: str) -> None:
    """Ctrl-C reaches the whole foreground group; SIGTERM here only the sweep, which passes it
    on. Either way the training saves its position and the next row does not start."""
    tiny = ", ".join([*TINY_ROW, "train.epochs=50"])
    rows = [f"{{name: r{i}, config: smoke.yaml, set: [{tiny}]}}" for i in (1, 2)]
    (tmp_path / "plan.yaml").write_text(f"runs: [{', '.join(rows)}]")
    command = [sys.executable, "-m", "experiments.sweep", str(tmp_path / "plan.yaml")]
    proc = subprocess.Popen(
        [*command, "--output-dir", str(tmp_path)], cwd=REPO, start_new_session=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    wait_for(tmp_path / "r1" / "last.pt", proc)
    if stop == "ctrl-c":
        os.killpg(proc.pid, signal.SIGINT)
    else:
        proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    signum = signal.SIGINT if stop == "ctrl-c" else signal.SIGTERM
    assert proc.returncode == 128 + signum, stderr
    assert "Resume with: python train.py --resume" in stderr and "Traceback" not in stderr
    assert "r1: stopped; run again to continue" in stdout
    assert not (tmp_path / "r2").exists()


def test_a_group_is_seeds_of_one_recipe_or_is_refused(tmp_path: Path) -> None:
    configs = {  # seeds may differ in where and how they ran, and an older one lack new keys
        "s0": "train: {seed: 0, precision: auto, budget_pflop: 1.5}\ndata: {cutout: 0}",
        "s1": "train: {seed: 1, precision: bf16, budget_pflop: 1.5, save_every_minutes: 10}\n"
        "data: {cutout: 0, root: elsewhere, num_workers: 0}",
        "s2": "train: {seed: 2, budget_pflop: 1.5}",
        "cutout": "train: {seed: 3, budget_pflop: 1.5}\ndata: {cutout: 12}",
    }
    runs = {}
    for name, config in configs.items():
        write_run_records(tmp_path / name, best_epoch=1, epochs_run=1)
        (tmp_path / name / "config.yaml").write_text(f"name: budget\n{config}\n")
        runs[name] = load_run(tmp_path / name)
    (row,) = summarise_groups([runs["s0"], runs["s1"], runs["s2"]])
    assert row["seeds"] == [0, 1, 2]
    with pytest.raises(
        UserError, match=r"s0 and .*cutout are both in group 'budget \(1\.5 PFLOP\)'"
    ):
        summarise_groups([runs["s0"], runs["s1"], runs["cutout"]])
    with pytest.raises(UserError, match=r"recipes: data\.cutout \(0 / 12\)\. Give the variant"):
        summarise_groups([runs["s0"], runs["cutout"]])


def test_one_recipe_at_two_compute_budgets_makes_two_groups(tmp_path: Path) -> None:
    budgets = {"a": "0.75", "b": "1.95", "c": "1.95", "d": None}
    for name, budget in budgets.items():
        write_run_records(tmp_path / name, best_epoch=1, epochs_run=1)
        train = f"{{seed: 0, budget_pflop: {budget}}}" if budget else "{seed: 0}"
        (tmp_path / name / "config.yaml").write_text(f"name: budget\ntrain: {train}\n")
    groups = [load_run(tmp_path / name).group for name in budgets]
    assert groups == ["budget (0.75 PFLOP)", "budget (1.95 PFLOP)", "budget (1.95 PFLOP)", "budget"]
    (tmp_path / "a" / "config.yaml").write_text("name: budget\ntrain: {seed: 0, budget_pflop: x}\n")
    with pytest.raises(UserError, match=r"train\.budget_pflop should be a number"):
        load_run(tmp_path / "a")
