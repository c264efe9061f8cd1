"""The HTML report: self-contained, with plots that decode to PNGs, and the teacher's findings."""

from __future__ import annotations

import base64
import re

import numpy as np
import pytest

from hardneg.errors import HardnegError
from hardneg.mine import Miner
from hardneg.report_html import render_html
from hardneg.retrieve.bm25 import BM25Retriever
from hardneg.select import SelectionConfig

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class WordTeacher:
    def key(self) -> str:
        return "word-teacher"

    def score_pairs(self, queries, documents, *, show_progress=True):
        return np.array([4.0 * len(set(q.lower().split()) & set(d.lower().split())) / max(len(q.split()), 1) - 2.0
                         for q, d in zip(queries, documents)], dtype=np.float32)


def images(page: str) -> list[bytes]:
    uris = re.findall(r"<img[^>]*src='data:image/png;base64,([A-Za-z0-9+/=]+)'", page)
    return [base64.b64decode(u, validate=True) for u in uris]


def test_report_page_embeds_decodable_plots_and_examples(tmp_path, tiny_train):
    config = SelectionConfig(num_negatives=2, denoise="absolute", denoise_threshold=0.0, if_short="pad")
    Miner(BM25Retriever(), config, depth=20, run_dir=tmp_path, show_progress=False, teacher=WordTeacher()).mine(tiny_train)
    page_path = render_html(tmp_path)
    page = page_path.read_text(encoding="utf-8")
    pngs = images(page)
    assert len(pngs) >= 2  # drops per step + one histogram per source
    import io

    import matplotlib.image as mpimg

    for png in pngs:
        assert png.startswith(PNG_MAGIC)
        assert mpimg.imread(io.BytesIO(png), format="png").shape[0] > 50
    assert "src='http" not in page and "src=\"http" not in page  # nothing to fetch: viewable offline
    assert "est. false negatives in raw top-10" in page and "bm25" in page
    assert "dropped as false negatives" in page and "denoise" in page
    # examples: the query with the most dropped false negatives first, its drops and kept negatives side by side
    assert page.count("<table class='ex'>") == 5
    first = page.split("<table class='ex'>")[1].split("</table>")[0]
    cells = re.findall(r"<td>(.*?)</td>", first, flags=re.S)
    assert len(cells) == 3 and "<em>none</em>" not in cells[1] and "<em>none</em>" not in cells[2]
    for cell in cells[1:]:
        for doc_id, score in re.findall(r"<b>(.*?)</b> <span class='score'>(.*?)</span>", cell):
            assert doc_id in tiny_train.corpus.row_of
        dropped_scores = [float(s) for s in re.findall(r"<span class='score'>(.*?)</span>", cells[1])]
    assert dropped_scores and all(s > 0.0 for s in dropped_scores)  # the rule: teacher logit > 0


def test_report_page_without_teacher_still_renders(tmp_path, tiny_train):
    Miner(BM25Retriever(), SelectionConfig(num_negatives=2), depth=20, run_dir=tmp_path,
          show_progress=False).mine(tiny_train)
    page = render_html(tmp_path, tmp_path / "out.html").read_text(encoding="utf-8")
    assert len(images(page)) >= 2 and "Teacher" not in page
    # no denoise rule: no column that would be empty in every example; two per example (positives, kept)
    assert "dropped as false negatives" not in page
    first = page.split("<table class='ex'>")[1].split("</table>")[0]
    assert re.findall(r"<th class='l'>(.*?)</th>", first) == ["positives", "kept hard negatives"]


@pytest.fixture
def recorded_plots(monkeypatch):
    """report_html drawing on a recording stand-in for matplotlib: ``hist`` (labels, legend counts cut off) and
    ``bars`` (label -> width) say what was drawn."""
    import hardneg.report_html as report_html

    drawn = {"hist": [], "bars": {}}

    class Axes:
        def hist(self, values, **kwargs):
            drawn["hist"].append(kwargs["label"].split(" (n=")[0])

        def barh(self, labels, widths, color):
            drawn["bars"].update(zip(labels, widths))

        def __getattr__(self, name):
            return lambda *a, **k: None

    class Plt:
        def subplots(self, *a, **k):
            return object(), Axes()

        def close(self, fig):
            pass

    monkeypatch.setattr(report_html, "_pyplot", Plt)
    monkeypatch.setattr(report_html, "_png", lambda fig: "data:image/png;base64,")
    return drawn


def test_score_histograms_show_the_kept_negatives_and_denoising_only_when_it_ran(recorded_plots):
    from hardneg.report_html import _plots

    groups = {"bm25|positive": np.ones(3), "bm25|candidates": np.zeros(5), "bm25|after_denoise": np.zeros(5),
              "all|negative": np.zeros(2)}
    _plots(groups, "retriever score")
    assert recorded_plots["hist"] == ["positives", "candidates", "kept negatives"]
    recorded_plots["hist"].clear()
    _plots({**groups, "bm25|after_denoise": np.zeros(3)}, "retriever score")
    assert recorded_plots["hist"] == ["positives", "candidates (before denoising)", "candidates after denoising",
                                      "kept negatives"]


def test_drops_plot_shows_padding_as_added(recorded_plots):
    from hardneg.report_html import _drops_plot

    _drops_plot({"positive": 3, "not_sampled": 146_000, "padding": -6})
    assert recorded_plots["bars"] == {"positive": 3, "not_sampled": 146_000, "padding (added)": 6}


def test_report_of_an_empty_run_dir_says_what_to_do(tmp_path):
    with pytest.raises(HardnegError, match="hardneg mine"):
        render_html(tmp_path)


def test_report_of_a_training_output_points_to_its_two_reports(tmp_path):
    (tmp_path / "train_summary.json").write_text("{}")
    (tmp_path / "hardneg-run").mkdir()
    (tmp_path / "hardneg-run" / "report.json").write_text("{}")
    with pytest.raises(HardnegError) as info:
        render_html(tmp_path)
    assert str(info.value) == (f"{tmp_path} is a training output: its training report is {tmp_path / 'report.html'}, "
                               f"and the mining report of its negatives: hardneg report {tmp_path / 'hardneg-run'}.")
