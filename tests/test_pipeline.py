"""The longitudinal pipeline: helpers against plain references, bad input, end to end."""

import itertools
import math

import numpy as np
import pytest

import fastct
from fastct import _atomic, pipeline
from fastct.pipeline import (
    growth_table,
    match_nodules,
    registration_error_mm,
    volume_doubling_time,
)


# -- matching ------------------------------------------------------------------------------
def brute_force_matching(a, b, tol):
    """All one-to-one assignments: most pairs within ``tol``, then least total distance."""
    best = (0, 0.0, [])
    n, m = len(a), len(b)
    for k in range(min(n, m), 0, -1):
        for rows in itertools.combinations(range(n), k):
            for cols in itertools.permutations(range(m), k):
                d = [np.linalg.norm(np.subtract(a[i], b[j])) for i, j in zip(rows, cols)]
                if all(x <= tol for x in d):
                    cand = (k, -sum(d), sorted(zip(rows, cols)))
                    if cand[:2] > best[:2]:
                        best = cand
        if best[0]:
            break
    return best[2]


@pytest.mark.parametrize("seed", range(6))
def test_matching_equals_brute_force(seed):
    rng = np.random.default_rng(seed)
    a = rng.uniform(0, 60, size=(rng.integers(1, 5), 3))
    b = np.concatenate([a + rng.normal(0, 3, a.shape), rng.uniform(0, 60, (2, 3))])
    b = b[rng.permutation(len(b))][: rng.integers(1, len(b) + 1)]
    got = match_nodules(a, b, tolerance_mm=8.0)
    assert [(i, j) for i, j, _ in got] == brute_force_matching(a, b, 8.0)
    for i, j, d in got:
        assert d == pytest.approx(np.linalg.norm(a[i] - b[j]))


def test_matching_uses_the_transform():
    a = np.array([[10.0, 20.0, 30.0], [40.0, 40.0, 40.0]])
    shift = np.array([5.0, -3.0, 2.0])
    b = (a + shift)[::-1]
    assert [(i, j) for i, j, _ in match_nodules(a, b, lambda p: p + shift, tolerance_mm=1)] == [
        (0, 1),
        (1, 0),
    ]
    assert match_nodules(a, b, tolerance_mm=1) == []
    assert match_nodules(np.zeros((0, 3)), b) == []


def test_doubling_time_and_growth_table():
    assert volume_doubling_time(100, 400, 60) == pytest.approx(30.0)
    assert volume_doubling_time(100, 100, 60) == math.inf
    assert volume_doubling_time(100, 0, 60) is None
    base = [
        {"center_mm": [0, 0, 0], "diameter_mm": 6.0, "volume_mm3": 100.0, "probability": 0.9},
        {"center_mm": [50, 0, 0], "diameter_mm": 5.0, "volume_mm3": 60.0, "probability": 0.8},
    ]
    follow = [
        {
            "center_mm": [1, 0, 0],
            "diameter_mm": 8.0,
            "volume_mm3": 200.0 * 1.1**3,
            "probability": 0.95,
        },
        {"center_mm": [90, 0, 0], "diameter_mm": 4.0, "volume_mm3": 30.0, "probability": 0.7},
    ]
    rows = growth_table(base, follow, [(0, 0, 1.0)], interval_days=90, scale=1.1)
    # rows are ordered most suspicious first (no measured type here: largest first)
    assert [(r["id"], r["nodule"], r["status"], r["change"]) for r in rows] == [
        ("N1", 1, "matched", "grow"),
        ("N2", 2, "not found at follow-up", "not found"),
        ("N3", 3, "new", "new"),
    ]
    assert rows[0]["volume_change_pct"] == pytest.approx(100.0)  # scale**3 taken out
    assert rows[0]["doubling_time_days"] == pytest.approx(90.0)
    assert rows[1]["volume_followup_mm3"] is None and rows[2]["doubling_time_days"] is None
    stable = growth_table(base[:1], [dict(follow[0], volume_mm3=110.0)], [(0, 0, 1.0)])
    assert stable[0]["change"] == "stable" and stable[0]["doubling_time_days"] is None


def test_registration_error_corners():
    m = np.eye(4)
    m[:3, :3] = 1.01 * np.eye(3)
    shape, spacing, origin = (5, 6, 7), (2.0, 1.0, 1.0), (10.0, 0.0, 0.0)
    # Corner-wise reference: a plain loop over the 8 corners.
    ref = 0.0
    for c in itertools.product(*[(0, n - 1) for n in shape]):
        p = np.asarray(origin) + np.asarray(c) * spacing
        ref = max(ref, np.linalg.norm(p - 1.01 * p))
    assert registration_error_mm(lambda p: p, m, shape, spacing, origin) == pytest.approx(ref)
    assert registration_error_mm(lambda p: p * 1.01, m, shape, spacing, origin) == pytest.approx(
        0.0, abs=1e-12
    )


def test_truth_hits_equals_plain_loop():
    rng = np.random.default_rng(3)
    truths = [
        {"id": k + 1, "center_mm": rng.uniform(0, 80, 3), "diameter_mm": d}
        for k, d in enumerate([3.0, 5.0, 8.0, 12.0, 20.0])
    ]
    dets = [{"center_mm": t["center_mm"] + rng.normal(0, 2, 3)} for t in truths[::2]]
    dets += [{"center_mm": rng.uniform(200, 300, 3)}]
    got = pipeline.truth_hits(dets, truths)
    found, missed, fp = 0, [], 0
    for t in truths:
        r = max(t["diameter_mm"] / 2, 3.0)
        hit = any(np.linalg.norm(d["center_mm"] - t["center_mm"]) <= r for d in dets)
        if t["diameter_mm"] >= 5.0:
            found += hit
            if not hit:
                missed.append(t["id"])
    for d in dets:
        fp += not any(
            np.linalg.norm(d["center_mm"] - t["center_mm"]) <= max(t["diameter_mm"] / 2, 3.0)
            for t in truths
        )
    assert (got["found"], got["total"], got["missed"], got["false_positives"]) == (
        found,
        4,
        missed,
        fp,
    )


# -- streamed block stages -------------------------------------------------------------------
def test_probability_and_difference_maps_streamed_equal_numpy(tmp_path):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 40, size=(9, 13, 11)).astype(np.int32)
    lut = rng.random(30).astype(np.float32)  # labels >= 30 are not in the table -> 0
    ref = np.where(labels < 30, lut[np.minimum(labels, 29)], 0).astype(np.float32)
    a = rng.normal(size=labels.shape).astype(np.float32)
    b = rng.integers(-1000, 100, size=labels.shape).astype(np.int16)
    with fastct.open(tmp_path / "x.h5", "w") as ar:
        lv = ar.create_volume("labels", labels, chunks=(4, 5, 3))
        av = ar.create_volume("a", a, chunks=(4, 5, 3))
        bv = ar.create_volume("b", b, chunks=(2, 7, 5))
        pv = ar.create_volume_like("p", lv, dtype=np.float32)
        dv = ar.create_volume_like("d", av, dtype=np.float32)
        pipeline.probability_map(lv, lut, pv)
        pipeline.difference_map(av, bv, dv)
    with fastct.open(tmp_path / "x.h5") as ar:
        np.testing.assert_array_equal(ar["p"].read(), ref)
        np.testing.assert_array_equal(ar["d"].read(), a - b.astype(np.float32))
    np.testing.assert_array_equal(pipeline.probability_map(labels, lut, None), ref)
    with pytest.raises(ValueError, match="b must have the shape of a"):
        pipeline.difference_map(a, b[:-1], None)


# -- bad input (caught before any work or any write) -----------------------------------------
@pytest.fixture()
def two_scans(tmp_path):
    path = tmp_path / "study.h5"
    img = np.full((8, 16, 16), -1000, np.int16)
    with fastct.open(path, "w") as ar:
        ar.create_volume("scans/a/image", img, spacing=(2, 1, 1), modality="CT", units="HU")
        ar.create_volume("scans/b/image", img, spacing=(2, 1, 1), modality="CT", units="HU")
        ar.create_volume("scans/mr/image", img, spacing=(2, 1, 1), modality="MR")
        ar.create_volume("scans/huge/image", img, spacing=(2, 1, 250))
        ar.create_volume("scans/fine/image", img, spacing=(0.15, 0.08, 0.08))
    return path


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        ({"baseline": "/scans/zz"}, ValueError, "baseline '/scans/zz' not found in archive"),
        ({"followup": "scans/nothing"}, ValueError, "followup '/scans/nothing' not found"),
        ({"followup": "/scans/mr"}, ValueError, "must be a CT scan, got modality 'MR'"),
        ({"followup": "/scans/huge"}, ValueError, "spacing .* must be within"),
        ({"followup": "/scans/fine"}, ValueError, "differ by more than 10x"),
        ({"followup": "/scans"}, ValueError, "group without an 'image' volume"),
        ({"transform": "affine"}, ValueError, r"transform must be one of \('rigid', 'simil"),
        ({"run_name": "a/b"}, ValueError, "run_name must be"),
        ({"interval_days": -3.0}, ValueError, "interval_days must be a finite number > 0"),
        ({"interval_days": "90"}, TypeError, "interval_days must be a real number"),
        ({"match_tolerance_mm": -1.0}, ValueError, "match_tolerance_mm must be a finite number"),
        ({"enhance_amount": float("nan")}, ValueError, "enhance_amount must be a finite number"),
        ({"report": "yes"}, TypeError, "report must be True or False"),
        ({"overwrite": "yes"}, TypeError, "overwrite must be True or False"),
        ({"max_memory": "lots"}, ValueError, "max_memory must be a number of bytes"),
        ({"max_memory": 0}, ValueError, "max_memory must be positive"),
        ({"max_memory": 2.5e9}, TypeError, "max_memory must be a number of bytes"),
    ],
)
def test_bad_input_writes_nothing(tmp_path, two_scans, kwargs, exc, match):
    before = two_scans.read_bytes()
    kwargs = {"baseline": "/scans/a", "followup": "/scans/b", **kwargs}
    with pytest.raises(exc, match=match):
        pipeline.run(two_scans, out_dir=tmp_path / "out", **kwargs)
    assert two_scans.read_bytes() == before
    assert not (tmp_path / "out").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["study.h5"]


def test_missing_archive_and_existing_out_dir(tmp_path, two_scans):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        pipeline.run(tmp_path / "nope.h5", out_dir=tmp_path / "out")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="already exists; pass overwrite=True"):
        pipeline.run(two_scans, "/scans/a", "/scans/b", out_dir=tmp_path / "out")
    assert (tmp_path / "out" / "keep.txt").read_text() == "mine"


def test_atomic_folder(tmp_path):
    # A folder left by a killed process (pid that no longer runs) is cleaned up.
    stale = tmp_path / ".fastct-tmp-999999999-abcd-res"
    (stale / "sub").mkdir(parents=True)
    target = tmp_path / "res"
    with pytest.raises(RuntimeError):
        with _atomic.atomic_folder(target, overwrite=False) as tmp:
            (tmp / "a.txt").write_text("x")
            raise RuntimeError("stage failed")
    assert list(tmp_path.iterdir()) == []
    with _atomic.atomic_folder(target, overwrite=False) as tmp:
        (tmp / "a.txt").write_text("1")
    with _atomic.atomic_folder(target, overwrite=True) as tmp:
        (tmp / "b.txt").write_text("2")
    assert [p.name for p in tmp_path.iterdir()] == ["res"]
    assert [p.name for p in target.iterdir()] == ["b.txt"]


# -- the stage table --------------------------------------------------------------------------
@pytest.mark.parametrize("truth, report", [(None, False), ({"nodules": {}}, True)])
def test_stage_table_order_labels_and_steps(tmp_path, truth, report):
    """The driver runs the per-scan stages scan by scan, then the pair, with the
    progress labels and timing keys of the single-function run it replaced."""
    import dataclasses

    from fastct.pipeline import _stages
    from fastct.pipeline._context import Clock, RunContext, RunOptions

    calls = []
    table = tuple(
        dataclasses.replace(s, func=lambda *a, _n=s.name: calls.append((_n, *a[1:])))
        for s in _stages.STAGE_TABLE
    )
    opts = RunOptions(
        run_name="r",
        transform="rigid",
        interval_days=None,
        enhance_radius_mm=2.0,
        enhance_amount=1.0,
        match_tolerance_mm=None,
        report=report,
    )
    ctx = RunContext(scans={}, options=opts, detector=None, truth=truth, out_dir=tmp_path)
    labels = []
    ctx.clock = Clock(lambda label, dt: labels.append(label), n_steps=0)
    _stages.run_stages(ctx, table)
    per_scan = ["denoise", "enhance", "lung mask", "supervoxels", "features", "detect"]
    expected = [f"{tp}: {label}" for tp in ("baseline", "followup") for label in per_scan]
    expected += ["register", "resample", "difference map", "match nodules"]
    expected += ["compare with ground truth"] * (truth is not None) + ["report"] * report
    assert labels == expected
    assert _stages.count_steps(ctx) == len(expected) == 16 + (truth is not None) + report
    ran = [n for n in pipeline.STAGES[1:] if n not in ("evaluate", "report")]
    ran += ["evaluate"] * (truth is not None) + ["report"] * report
    assert list(ctx.clock.timings) == ran
    names = [c[0] for c in calls]
    assert names[0] == "prepare" and names[-1] == "publish"
    assert names.index("record") == names.index("detect") + 1
    assert calls[names.index("record")] == ("record", "baseline")
    assert names.index("tables") < names.index("publish")
    assert ("report" in names) == report and ("evaluate" in names) == (truth is not None)
    assert pipeline.STAGES == (
        "load", "denoise", "enhance", "lungs", "supervoxels", "features", "detect",
        "register", "resample", "difference", "match", "evaluate", "report",
    )  # fmt: skip


# -- end to end (small phantom, the shipped detector) ----------------------------------------
def cli(*args):
    import contextlib
    import io

    from fastct.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    folder = tmp_path_factory.mktemp("e2e") / "demo"
    code, out, err = cli("demo", "--out", folder, "--size", "small")
    assert code == 0, err
    return folder, out


def test_demo_end_to_end(demo):
    import json

    from fastct.report import check_report

    folder, out = demo
    assert "report:" in out and "registration error vs truth" in out
    report = folder / "report" / "report.html"
    assert check_report(report) == []
    figures = {p.name for p in (folder / "report" / "figures").iterdir()}
    assert {
        "preprocessing.png",
        "supervoxels.png",
        "detections_baseline.png",
        "detections_followup.png",
        "checkerboard.png",
        "difference.png",
        "timings.png",
    } <= figures
    summary = json.loads((folder / "report" / "summary.json").read_text())
    assert summary["truth"]["registration_error_mm"] < 1.0
    with fastct.open(folder / "demo.h5") as ar:
        truth = json.loads(ar._file["/scans/phantom/truth"].attrs["nodules_json"])
    for tp in ("baseline", "followup"):
        hits = summary["truth"][tp]
        # Wiring check on the small preset (2.8 mm pixels): detections land on the true
        # nodules in each scan's physical frame (a frame or origin mistake finds none),
        # the largest nodule is always among them. The detector's sensitivity at 5 mm
        # is the medium demo's target (docs/benchmarks/pipeline.md).
        largest = max(truth[tp], key=lambda n: n["diameter_mm"])
        assert hits["found"] >= 2 and largest["id"] not in hits["missed"], hits
    assert set(summary["timings"]) >= {"denoise", "lungs", "register", "report"}
    assert any(r["status"] == "matched" for r in summary["nodules"])
    with fastct.open(folder / "demo.h5") as ar:
        for name in (
            "baseline/probability",
            "baseline/supervoxels",
            "followup/lungs",
            "followup_registered",
            "difference",
        ):
            vol = ar[f"/results/demo/{name}"]
            assert vol.shape == ar["/scans/phantom/baseline/image"].shape
        matrix = ar._file["/results/demo"].attrs["transform"]
        assert np.allclose(matrix, summary["registration"]["matrix"])


def test_demo_report_is_a_follow_up_read(demo):
    """Issue 16: one ID per nodule shared by the table, the crops and nodules.csv; growth
    only for pairs above the threshold; no negative doubling time; every row marked
    against the phantom's truth."""
    import csv
    import json
    import re

    folder, _ = demo
    rep = folder / "report"
    summary = json.loads((rep / "summary.json").read_text())
    text = (rep / "report.html").read_text()
    rows = summary["nodules"]
    ids = [r["id"] for r in rows]
    assert ids == [f"N{k}" for k in range(1, len(rows) + 1)]
    assert re.findall(r"<tr id='row-(N\d+)'", text) == ids
    assert sorted(re.findall(r"<figure id='crop-(N\d+)'", text)) == sorted(ids)
    with open(rep / "nodules.csv", newline="") as fh:
        assert [r["id"] for r in csv.DictReader(fh)] == ids
    thr = summary["thresholds"]["baseline"]
    assert thr is not None and "Research use only" in text and "resolved" not in text
    for r in rows:
        if r["doubling_time_days"] is not None:
            assert r["status"] == "matched" and r["doubling_time_days"] > 0
            assert min(r["probability_baseline"], r["probability_followup"]) >= thr
        assert r["verdict"] in (
            "true pair", "wrong match", "false-positive pair", "false positive",
            "true nodule, missed at follow-up", "true nodule, missed at baseline",
            "true nodule, gone at follow-up", "true new nodule", "small nodule",
        )  # fmt: skip
    for tp in ("baseline", "followup"):
        assert all(c["probability"] < thr for c in summary["candidates"][tp])
    counts = summary["truth"]["rows"]
    assert counts["per_scan"]["baseline"]["false_positives"] == sum(
        1 for r in rows if r["truth_baseline"] == "FP"
    )
    assert summary["exam_category"]["baseline"] in ("1", "2", "3", "4A", "4B")
    assert summary["model"]["sha256"] and len(summary["model"]["sha256"]) == 64


def test_demo_rerun_and_refusals(demo, tmp_path):
    folder, _ = demo
    # A folder that is not a demo output is refused without --overwrite.
    mine = tmp_path / "mine"
    mine.mkdir()
    code, _, err = cli("demo", "--out", mine, "--size", "tiny")
    assert code == 2 and "not a previous demo output" in err
    assert list(mine.iterdir()) == []
    # pipeline: an existing --out is refused, nothing written to the archive.
    archive = folder / "demo.h5"
    before = archive.read_bytes()
    args = ["pipeline", archive, "--baseline", "/scans/phantom/baseline", "--followup"]
    code, _, err = cli(*args, "/scans/phantom/followup", "--out", folder / "report")
    assert code == 2 and "already exists" in err
    code, _, err = cli(*args, "/scans/phantom/nope", "--out", tmp_path / "r")
    assert code == 2 and "not found in archive" in err
    # A model file of another schema: clear error, exit 2, nothing written.
    junk = tmp_path / "model.fastct-model"
    junk.write_bytes(b"PK\x03\x04 not really a model")
    code, _, err = cli(*args, "/scans/phantom/followup", "--out", tmp_path / "r", "--model", junk)
    assert code == 2 and "model file" in err
    assert archive.read_bytes() == before and not (tmp_path / "r").exists()


def test_failure_in_a_stage_leaves_nothing(demo, tmp_path):
    from fastct import classify

    folder, _ = demo
    archive = tmp_path / "copy.h5"
    archive.write_bytes((folder / "demo.h5").read_bytes())
    before = archive.read_bytes()

    class Failing(classify.NoduleDetector):
        def region_table(self, *args, **kwargs):
            raise RuntimeError("disk full")

    det = classify.default_detector()
    failing = Failing(**det.get_params())
    for attr in ("classifier_", "feature_names_"):
        setattr(failing, attr, getattr(det, attr))
    with pytest.raises(RuntimeError, match="disk full"):
        pipeline.run(
            archive,
            "/scans/phantom/baseline",
            "/scans/phantom/followup",
            out_dir=tmp_path / "out",
            model=failing,
            run_name="other",
        )
    assert archive.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy.h5"]


def test_streamed_run_equals_in_memory_run(demo, tmp_path):
    """``max_memory`` too small for the scan streams every per-scan stage through the
    archive; the demo (small phantom) ran in memory. Every volume, detection and
    table must be the same."""
    import json

    folder, _ = demo
    archive = tmp_path / "copy.h5"
    archive.write_bytes((folder / "demo.h5").read_bytes())
    result = pipeline.run(
        archive,
        "/scans/phantom/baseline",
        "/scans/phantom/followup",
        out_dir=tmp_path / "out",
        run_name="streamed",
        interval_days=90.0,
        report=False,
        max_memory="1K",
    )
    with fastct.open(archive) as ar:
        names = [n for n in ar.volumes() if n.startswith("/results/demo/")]
        assert len(names) >= 10
        for name in names:
            other = name.replace("/results/demo/", "/results/streamed/")
            np.testing.assert_array_equal(ar[other].read(), ar[name].read(), err_msg=name)
        for tp in ("baseline", "followup"):
            a = ar.get_attrs(f"/results/demo/{tp}")["detections_json"]
            b = ar.get_attrs(f"/results/streamed/{tp}")["detections_json"]
            assert json.loads(a) == json.loads(b)
        assert json.loads(ar.get_attrs("/results/demo")["nodules_json"]) == result.nodules
    # the per-stage resource profile covers every timed stage
    assert list(result.stage_profile) == list(result.timings)
    for row in result.stage_profile.values():
        assert set(row) == {"cpu_s", "read_mb", "written_mb", "peak_rss_mb"}
        assert min(row.values()) >= 0
    assert result.stage_profile["supervoxels"]["cpu_s"] > 0


@pytest.mark.parametrize(
    "text, expected",
    [("auto", None), (None, None), (1000, 1000), ("3G", 3 * 1024**3), ("512M", 512 * 1024**2),
     ("2.5GiB", int(2.5 * 1024**3)), ("100kb", 102400), ("7", 7)],
)  # fmt: skip
def test_parse_memory(text, expected):
    from fastct.pipeline._memory import fits_in_memory, parse_memory

    assert parse_memory(text) == expected
    if expected is not None:
        assert fits_in_memory((1, 1, 1), expected) == (expected >= 24)


def test_cli_max_memory_is_checked(tmp_path, two_scans):
    code, _, err = cli(
        "pipeline", two_scans, "--baseline", "/scans/a", "--followup", "/scans/b",
        "--out", tmp_path / "o", "--max-memory", "3X",
    )  # fmt: skip
    assert code == 2 and "--max-memory" in err and "3X" in err
    assert len(err.strip().splitlines()) == 1
