"""The mining benchmark's camera score (scripts/bench_mining.py)."""

import numpy as np
import pytest
from script_modules import load_script


@pytest.fixture(scope="module")
def bench():
    return load_script("bench_mining")


def cameras(azimuths, elevations):
    return {f"p{i}": {"azimuth": float(a), "elevation": float(e)} for i, (a, e) in enumerate(zip(azimuths, elevations))}


def test_a_turned_and_mirrored_set_of_cameras_is_right(bench):
    true = cameras([10, 100, 200, 310], [5, 20, 35, 10])
    turned = cameras([(-a + 77) % 360 for a in (10, 100, 200, 310)], [5, 20, 35, 10])
    errors = bench.camera_errors(turned, true)
    assert errors["azimuth_median"] == pytest.approx(0.0, abs=0.5)
    assert errors["azimuth_within_30"] == 1.0 and errors["elevation_median"] == 0.0 and errors["photos"] == 4


def test_cameras_off_by_a_half_turn_count_as_wrong(bench):
    true = cameras([0, 90, 180, 270, 45], [10] * 5)
    # three right, two seen from behind (the front/back confusion of a symmetric outline)
    reported = cameras([0, 90, 180, 90, 225], [30] * 5)
    errors = bench.camera_errors(reported, true)
    assert errors["azimuth_within_30"] == pytest.approx(0.6)
    assert errors["elevation_median"] == 20.0


def test_one_photo_says_nothing_about_cameras(bench):
    assert bench.camera_errors(cameras([10], [5]), cameras([50], [5])) is None
    # only the photos both sides know are compared
    assert bench.camera_errors(cameras([10, 20], [5, 5]), {"p0": {"azimuth": 0.0, "elevation": 5.0}}) is None


def test_random_cameras_are_mostly_wrong(bench):
    rng = np.random.default_rng(0)
    true = cameras(rng.uniform(0, 360, 40), np.zeros(40))
    reported = cameras(rng.uniform(0, 360, 40), np.zeros(40))
    assert bench.camera_errors(reported, true)["azimuth_within_30"] < 0.5


def test_a_pair_is_scored_by_its_relative_azimuth_not_split_between_the_two(bench):
    # 80 degrees apart in truth, 150 as reported: one photo is 70 degrees off wherever the set is turned
    errors = bench.camera_errors(cameras([0, 150], [0, 0]), cameras([0, 80], [0, 0]))
    assert errors["azimuth_within_30"] == 0.5


def test_a_tied_cluster_is_scored_against_the_same_object_every_run(bench):
    assert bench.majority_object(["lego_brick", "horse"]) == "horse"
    assert bench.majority_object(["horse", "lego_brick"]) == "horse"
    assert bench.majority_object(["lego_brick", "horse", "lego_brick"]) == "lego_brick"
    assert bench.majority_object([]) is None
