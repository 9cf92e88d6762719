"""The follow-up read of a pipeline report: IDs with crops, escaping, summary counts,
candidates apart, footer (HTML pieces built from a hand-made result, no pipeline run)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from fastct import report
from fastct.pipeline._outputs import PipelineResult, write_tables
from fastct.pipeline.growth import growth_table, truth_verdicts

EVIL = "<script>alert('x')</script>"


def _det(center, volume, p, d, kind="solid"):
    return {
        "center_mm": list(center), "diameter_mm": d, "volume_mm3": volume, "probability": p,
        "type": kind, "mean_diameter_mm": d, "solid_mean_diameter_mm": None,
        "volume_measured_mm3": volume, "slice": 3, "side": "left", "zone": "upper",
        "labels": [1],
    }  # fmt: skip


def _result(tmp_path: Path, truth: bool = True) -> PipelineResult:
    base = [_det((0, 0, 0), 100.0, 0.9, 6.0), _det((60, 0, 0), 50.0, 0.8, 4.0)]
    follow = [_det((0, 0, 1), 100.0 * 8, 0.95, 12.0), _det((90, 0, 0), 30.0, 0.7, 3.0)]
    rows = growth_table(base, follow, [(0, 0, 1.0)], interval_days=90, threshold=0.5)
    truths = {
        "baseline": [{"id": 1, "center_mm": [0, 0, 0], "diameter_mm": 6.0}],
        "followup": [{"id": 1, "center_mm": [0, 0, 0], "diameter_mm": 12.0}],
    }
    t = None
    if truth:
        t = {
            "registration_error_mm": 0.1,
            "rows": truth_verdicts(rows, {"baseline": base, "followup": follow}, truths),
        }
    return PipelineResult(
        run_name=EVIL,
        archive=Path(f"/data/{EVIL}.h5"),
        out_dir=tmp_path,
        report_path=tmp_path / "report.html",
        timings={"detect": 1.0},
        detections={"baseline": base, "followup": follow},
        nodules=rows,
        registration={"transform": "rigid", "scale": 1.0, "matrix": np.eye(4).tolist()},
        interval_days=90.0,
        truth=t,
        shape=(10, 20, 20),
        spacing=(1.0, 1.0, 1.0),
        candidates={"baseline": [], "followup": [_det((61, 0, 0), 40.0, 0.3, 4.0)]},
        thresholds={"baseline": 0.5, "followup": 0.5},
        exam_category={"baseline": "2", "followup": "4B"},
        model={"path": f"/m/{EVIL}.fastct-model", "sha256": "ab" * 32},
        parameters={"transform": "rigid", "baseline": f"/scans/{EVIL}"},
        created="2026-01-01T00:00:00+00:00",
    )


def test_read_pieces_escape_count_and_separate(tmp_path):
    res = _result(tmp_path)
    blocks = [
        report._RESEARCH_BANNER,
        report._summary_html(res),
        report._nodule_table_html(res),
        report._truth_rows_html(res.truth["rows"]),
        report._candidates_html(res),
        report._footer_html(res),
    ]
    text = "".join(blocks)
    assert "<script>" not in text and "&lt;script&gt;" in text
    assert "Research use only" in text
    # one row per nodule above the threshold, IDs in order, the candidate apart
    ids = [r["id"] for r in res.nodules]
    assert ids == ["N1", "N2", "N3"]
    for rid in ids:
        assert f"data-nodule='{rid}'" in text
    table, _, rest = report._nodule_table_html(res).partition("</table>")
    assert "0.30" not in table and "<details class='candidates'>" in text
    # growth: matched pair grew 8x in 90 days -> VDT 30 d; the others are not matched
    n1 = res.nodules[0]
    assert n1["status"] == "matched" and n1["doubling_time_days"] == pytest.approx(30.0)
    assert "not found at follow-up" in table and ">new<" in table
    assert "resolved" not in text
    assert (
        report._type_text(
            {"type": "solid", "type_baseline": "ground-glass", "type_followup": "solid"}
        )
        == "ground-glass \u2192 solid"
    )
    # truth: hits, false positives, misses, wrong matches are all counted
    assert "true pair" in table and "false positive" in table
    assert "1 true, <b>0 wrong matches</b>" in text
    assert "1/1 true nodules found, <b>1 false positives</b>" in text
    assert "ab" * 32 in text and "2026-01-01T00:00:00+00:00" in text
    assert "baseline <b>2</b>, follow-up <b>4B</b>" in text
    # the CSV next to the report carries the same IDs
    write_tables(tmp_path, res)
    csv = (tmp_path / "nodules.csv").read_text().splitlines()
    assert csv[0].startswith("id,nodule,status") and [c.split(",")[0] for c in csv[1:]] == ids


def test_check_report_wants_a_crop_per_nodule(tmp_path):
    res = _result(tmp_path, truth=False)
    plt = report._pyplot()
    fig, ax = plt.subplots()
    ax.imshow(np.zeros((4, 4)))
    src = report.save_figure(fig, tmp_path, "crop", tight=False)
    crops = [
        f"<figure data-nodule='{r['id']}'><img src='{src}' alt=''></figure>"
        for r in res.nodules[:-1]
    ]
    path = report.write_html(tmp_path, "t", [report._nodule_table_html(res), *crops])
    assert report.check_report(path) == ["nodule 'N3': no crop figure for this table row"]
    path = report.write_html(
        tmp_path, "t", [report._nodule_table_html(res), *crops, crops[0].replace("N1", "N3")]
    )
    assert report.check_report(path) == []


def test_axis_letters_follow_the_direction_cosines():
    assert report._axis_letters([0, 0, 1]) == ("L", "R")
    assert report._axis_letters([0, 0, -1]) == ("R", "L")
    assert report._axis_letters([0, 1, 0]) == ("P", "A")
    assert report._axis_letters([0, -0.2, 0.9]) == ("L", "R")
    assert report._axis_letters([-1, 0, 0]) == ("I", "S")


def test_model_info_hashes_the_file(tmp_path):
    from fastct.pipeline._inputs import model_info

    f = tmp_path / "m.bin"
    f.write_bytes(b"model bytes")
    info = model_info(f)
    assert info["sha256"] == hashlib.sha256(b"model bytes").hexdigest()
    assert info["path"] == str(f.resolve())
    assert model_info(object())["path"] is None


def test_resolved_detector_remembers_its_file(tmp_path, monkeypatch):
    from fastct import classify
    from fastct.classify._modelfile import DEFAULT_MODEL_PATH
    from fastct.pipeline._inputs import model_info, resolve_detector

    class Dummy:  # stands for a loaded detector (loading the real one takes seconds)
        pass

    monkeypatch.setattr(classify, "default_detector", lambda: Dummy())
    monkeypatch.setattr(classify, "load_detector", lambda path: Dummy())
    info = model_info(resolve_detector(None))  # what `fastct demo` hands to the run
    assert info["path"] == str(Path(DEFAULT_MODEL_PATH).resolve())
    assert info["sha256"] == hashlib.sha256(Path(DEFAULT_MODEL_PATH).read_bytes()).hexdigest()
    f = tmp_path / "other.fastct-model"
    f.write_bytes(b"another model")
    info = model_info(resolve_detector(f))
    assert info["sha256"] == hashlib.sha256(b"another model").hexdigest()
