"""12_bebr_eval's pieces: packed codes handed on by 11_bebr_train rank exactly as the float files they replace, and
the tables are assembled from the rows under the headline tie policy."""
import numpy as np
import pytest

from bitlens import codes
from bitlens.bebr import evaluate
from bitlens.metrics import TIE_POLICIES
from bitlens.stages import bebr_eval, bebr_train


def _values(rng, n, m, planes):
    return sum(0.5 ** i * np.where(rng.random((n, m)) < 0.5, -1.0, 1.0) for i in range(planes)).astype(np.float32)


def _head_dir(tmp_path, planes, n=40, m=16, seed=0):
    rng = np.random.default_rng(seed)
    img = _values(rng, n, m, planes)
    # captions near their images (a few flipped signs), so recalls are neither 0 nor 1
    txt = np.where(rng.random((n, m)) < 0.2, -img, img).astype(np.float32)
    d = tmp_path / f"head{planes}"
    d.mkdir()
    np.save(d / "feat_image.npy", img)
    np.save(d / "feat_txt.npy", txt)
    return d, img, txt


@pytest.mark.parametrize("planes", [1, 2])
def test_packed_codes_rank_exactly_as_the_float_files(tmp_path, planes):
    d, img, txt = _head_dir(tmp_path, planes)
    bebr_train.pack_head_outputs(d, planes)
    ci, ct = bebr_eval.load_embeddings(d, True, planes, 16, packed=True)
    assert isinstance(ci, codes.RecurrentCode) and len(ci) == 40 and ci.bits == 16 * planes
    np.testing.assert_array_equal(ci.values(), img)
    from_codes = evaluate.table_rows("h", ci, ct, True, planes, 16)
    from_floats = evaluate.table_rows("h", img.astype(np.float64), txt.astype(np.float64), True, planes, 16)
    assert from_codes == from_floats
    assert 0 < from_codes["i2t"]["pessimistic"]["r1"] < 1
    assert evaluate.official_ranks_agree(ci, ct, planes) == evaluate.official_ranks_agree(img, txt, planes) is True
    if planes == 1:
        np.testing.assert_array_equal(evaluate.sign_codes(ci), codes.binarize(img))


def test_codes_of_another_layout_are_refused_with_the_remedy(tmp_path):
    d, _, _ = _head_dir(tmp_path, 2)
    bebr_train.pack_head_outputs(d, 2)
    with pytest.raises(ValueError, match=r"16 dims × 2 planes, but bebr.heads asks for 16 × 1; re-run 11_bebr_train"):
        bebr_eval.load_embeddings(d, True, 1, 16, packed=True)
    with pytest.raises(ValueError, match="2 bit planes but the head 3"):
        evaluate.code_of(codes.load_packed(d / "codes_image.npz"), True, 3)
    with pytest.raises(ValueError, match="one bit plane"):
        evaluate.sign_codes(codes.load_packed(d / "codes_image.npz"))


def test_float_heads_and_released_embeddings_are_read_from_the_float_files(tmp_path):
    d, img, txt = _head_dir(tmp_path, 2)
    fi, ft = bebr_eval.load_embeddings(d, False, 1, 16, packed=True)
    assert fi.dtype == np.float64
    np.testing.assert_array_equal(fi, img)
    ri, _ = bebr_eval.load_embeddings(d, True, 2, 16, packed=False)  # released: floats packed on reading
    np.testing.assert_array_equal(ri.values(), img)


def _row(bits, r1, tie_shift=0.0):
    rec = {"r1": r1, "r5": r1 + 0.1, "r10": r1 + 0.2, "r50": r1 + 0.3, "medr": 2.0, "meanr": 3.5}
    return {"bits": bits, "i2t": {t: {k: v + (tie_shift * i if k == "r1" else 0) for k, v in rec.items()}
                                  for i, t in enumerate(TIE_POLICIES)},
            "t2i": {t: {**rec, "r1": r1 / 2} for t in TIE_POLICIES}}


def test_paper_table_shows_the_headline_ties_beside_the_published_numbers():
    rows = {"hash": _row(64, 0.1, 0.01), "float": _row(2048, 0.5)}
    base = {"LSH 64b": {**_row(64, 0.05), "baseline": "LSH"}}
    published = {"hash": {"bits": 2048, "recall@1": 0.2, "recall@5": 0.4, "recall@10": 0.5}}
    table = evaluate.paper_table(rows, base, published, TIE_POLICIES[1])
    assert [r["embedding"] for r in table] == ["hash", "float", "LSH 64b"]
    assert list(table[0]) == ["embedding", "kind", "bits", "R@1", "R@5", "R@10", "R@50", "medr", "meanr", "t2i R@1",
                              "t2i R@5", "t2i R@10", "paper bits", "paper R@1", "paper R@5", "paper R@10"]
    assert table[0]["R@1"] == pytest.approx(0.11) and table[0]["t2i R@1"] == 0.05
    assert table[0]["paper bits"] == 2048 and table[0]["paper R@10"] == 0.5
    assert table[1]["paper R@1"] is None  # no published row: empty paper columns
    assert table[2]["kind"] == "baseline" and "paper R@1" not in table[2]


def test_ties_and_clip_protocol_tables_list_every_policy_and_direction():
    rows = {"hash": _row(64, 0.1, 0.01)}
    ties = evaluate.ties_table(rows)
    assert [r["ties"] for r in ties] == list(TIE_POLICIES)
    assert [r["r1"] for r in ties] == pytest.approx([0.1 + 0.01 * i for i in range(len(TIE_POLICIES))])
    clip = evaluate.clip_protocol_table(rows, "pessimistic")
    assert clip == [{"embedding": "hash", "bits": 64, "i2t R@1": 0.1, "i2t R@5": 0.2, "i2t R@10": pytest.approx(0.3),
                     "t2i R@1": 0.05, "t2i R@5": 0.2, "t2i R@10": pytest.approx(0.3)}]
    assert set(evaluate.TIE_MEANING) == set(TIE_POLICIES)


def test_clip_protocol_caption_warns_that_karpathy_images_are_not_held_out():
    assert "not held out" in bebr_eval.clip_protocol_where("karpathy_test_5k")
    assert bebr_eval.clip_protocol_where("val2017").startswith("val2017 with all captions")
