"""Calibration and classification metrics on small cases worked out by hand."""

import math
from pathlib import Path

import pytest
import torch

from evaluation.calibration import (
    calibration_summary,
    expected_calibration_error,
    fit_temperature,
    reliability_bins,
)
from evaluation.classifier import load_classifier
from evaluation.metrics import classification_metrics
from evaluation.report import evaluate_checkpoint
from tests.conftest import tiny_config
from training.trainer import fit
from utils.checkpoint import load_checkpoint
from utils.errors import UserError


def test_ece_of_a_hand_computed_case() -> None:
    # top probabilities 0.9, 0.9, 0.6, 0.6 with 3 bins [0, 1/3], (1/3, 2/3], (2/3, 1]:
    # bin 3 holds the two 0.9s, one right: |0.5 - 0.9| = 0.4; bin 2 the 0.6s, both right:
    # |1.0 - 0.6| = 0.4; ECE = 2/4 * 0.4 + 2/4 * 0.4 = 0.4
    probabilities = torch.tensor([[0.9, 0.1], [0.9, 0.1], [0.4, 0.6], [0.4, 0.6]])
    labels = torch.tensor([0, 1, 1, 1])
    assert expected_calibration_error(probabilities, labels, bins=3) == pytest.approx(0.4)
    bins = reliability_bins(probabilities, labels, bins=3)
    assert bins.counts.tolist() == [0, 2, 2]
    assert bins.accuracy.tolist() == pytest.approx([0.0, 1.0, 0.5])
    assert bins.confidence.tolist() == pytest.approx([0.0, 0.6, 0.9])


def test_a_perfectly_calibrated_set_has_zero_ece() -> None:
    # confidence 0.75 on 4 images, 3 of them right
    probabilities = torch.tensor([[0.75, 0.25]] * 4)
    assert expected_calibration_error(probabilities, torch.tensor([0, 0, 0, 1])) == 0.0


def test_metrics_of_a_hand_computed_case() -> None:
    # true 0 0 0 1 1 2, predicted 0 0 1 1 2 2
    labels = torch.tensor([0, 0, 0, 1, 1, 2])
    logits = torch.nn.functional.one_hot(torch.tensor([0, 0, 1, 1, 2, 2]), 3).float() * 5
    m = classification_metrics(logits, labels, ["a", "b", "c"])
    assert m["confusion_matrix"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert m["accuracy"] == pytest.approx(4 / 6)
    a, b, c = (m["per_class"][n] for n in "abc")
    assert (a["precision"], a["recall"]) == pytest.approx((1.0, 2 / 3))
    assert (b["precision"], b["recall"]) == pytest.approx((0.5, 0.5))
    assert (c["precision"], c["recall"]) == pytest.approx((0.5, 1.0))
    assert a["f1"] == pytest.approx(0.8) and c["f1"] == pytest.approx(2 / 3)
    assert m["macro_f1"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    # a class with precision + recall below 1: true 0 0 0 0 1 1, predicted 1 1 1 0 0 1
    # class 1: precision 1/4, recall 1/2, F1 = 2 * 1/8 / (3/4) = 1/3
    low = classification_metrics(
        torch.nn.functional.one_hot(torch.tensor([1, 1, 1, 0, 0, 1]), 2).float(),
        torch.tensor([0, 0, 0, 0, 1, 1]),
        ["x", "y"],
    )
    assert low["per_class"]["y"]["f1"] == pytest.approx(1 / 3)
    assert low["per_class"]["x"]["f1"] == pytest.approx(2 * (1 / 2) * (1 / 4) / (3 / 4))
    confidence = math.exp(5) / (math.exp(5) + 2)
    assert m["ece"] == pytest.approx(abs(4 / 6 - confidence))  # all in the top bin


def test_temperature_undoes_overconfidence_and_keeps_predictions() -> None:
    gen = torch.Generator().manual_seed(0)
    true_logits = torch.randn(4000, 10, generator=gen) * 2
    labels = torch.multinomial(true_logits.softmax(1), 1, generator=gen).squeeze(1)
    overconfident = true_logits * 3  # the right temperature is 3
    temperature = fit_temperature(overconfident, labels)
    assert temperature == pytest.approx(3.0, rel=0.1)
    summary = calibration_summary(overconfident, labels, temperature)
    assert summary["ece_after"] < summary["ece_before"] / 3
    assert summary["nll_after"] < summary["nll_before"]
    assert torch.equal((overconfident / temperature).argmax(1), overconfident.argmax(1))


def test_calibrate_writes_a_copy_that_evaluation_and_prediction_apply(tmp_path: Path) -> None:
    fit(tiny_config("smoke", tmp_path, "train.epochs=1"), tmp_path / "run")
    path = tmp_path / "run" / "best.pt"
    report = evaluate_checkpoint(
        load_checkpoint(path), path, out_dir=tmp_path / "e", calibrate=True
    )
    calibration = report["calibration"]
    assert calibration["nll_after"] <= calibration["nll_before"] + 1e-9
    copy = Path(calibration["checkpoint"])
    assert (
        copy.name == "best-calibrated.pt" and (tmp_path / "e" / "reliability_diagram.png").is_file()
    )
    calibrated = load_checkpoint(copy)
    assert calibrated["temperature"] == pytest.approx(calibration["temperature"])
    again = evaluate_checkpoint(calibrated, copy, out_dir=tmp_path / "e2")
    assert again["loss"] == pytest.approx(calibration["nll_after"], rel=1e-5)
    assert again["accuracy"] == report["accuracy"]  # a temperature never changes a prediction
    assert again["ece"] == pytest.approx(calibration["ece_after"], rel=1e-5)
    classifier = load_classifier(copy)
    assert classifier.temperature == calibrated["temperature"]
    with pytest.raises(UserError, match="validation split"):
        evaluate_checkpoint(
            load_checkpoint(path), path, split="test", out_dir=tmp_path / "t", calibrate=True
        )
