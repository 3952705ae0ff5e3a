"""One reader of training.json for both trainers: a CLIP checkpoint and a detector report their cost the same way."""

import json

from reclip_eval.zoo.training_record import training_compute


def _checkpoint(tmp_path, record: dict):
    (tmp_path / "training.json").write_text(json.dumps(record))
    return tmp_path


def test_staged_clip_training_reports_device_hours_and_forward_macs(tmp_path):
    record = {"device": "NVIDIA H100", "devices": 2, "device_hours": 0.5, "wall_time_s": 900.0, "samples_seen": 30,
              "stages": [{"gmacs_per_sample": 1.5, "samples_seen": 10}, {"gmacs_per_sample": 4.0, "samples_seen": 20}]}
    assert training_compute(_checkpoint(tmp_path, record)) == {
        "train_device_hours": 0.5,  # two devices for 900 s of wall time: device-hours, not wall time
        "train_samples_seen": 30, "train_gmacs": 95.0, "train_device": "NVIDIA H100"}


def test_older_records_fall_back_to_wall_time_and_leave_uncounted_compute_empty(tmp_path):
    record = {"device": "cpu", "wall_time_s": 1800.0, "samples_seen": 8,
              "stages": [{"gmacs_per_sample": None, "samples_seen": 8}]}
    compute = training_compute(_checkpoint(tmp_path, record))
    assert compute["train_device_hours"] == 0.5 and compute["train_gmacs"] is None


def test_detector_records_count_images_and_no_compute_per_sample(tmp_path):
    record = {"recipe": "detect-shapes", "steps": 3, "images_seen": 48, "wall_time_s": 360.0, "device": "cpu"}
    assert training_compute(_checkpoint(tmp_path, record)) == {
        "train_device_hours": 0.1, "train_samples_seen": 48, "train_device": "cpu"}


def test_no_record_no_compute(tmp_path):
    assert training_compute(tmp_path) == {} and training_compute(None) == {}
