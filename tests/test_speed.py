import numpy as np
import pytest

from bitlens import search, speed


def _systems(nq=4, n=50):
    return speed.synthetic_systems(nq, n, k=3, hash_bits=64, bebr_dims=32, float_dims=32, seed=1)


def _table(t_hash, t_bebr, t_float):
    return speed.speed_table(_systems(), times=[t_hash, t_bebr, t_float])


def test_sentence_follows_the_numbers_when_sdc_is_faster():
    df = _table(0.2, 0.1, 0.4)
    s = speed.claim_sentence(df)
    assert "SDC answered faster than Hamming codes (0.50× the time), as the paper claims" in s
    assert "SDC was faster than it (0.25× the time)" in s
    assert "100 ms vs hash" in s


def test_sentence_follows_the_numbers_when_sdc_is_slower():
    s = speed.claim_sentence(_table(0.1, 0.3, 0.2))
    assert "SDC answered slower than Hamming codes (3.00× the time), contrary to the paper's claim" in s
    assert "SDC was slower than it (1.50× the time)" in s
    assert "as the paper claims" not in s


def test_table_reports_bytes_per_item_and_ratios():
    df = _table(0.2, 0.1, 0.4).set_index("system")
    assert df.loc["hash", "bytes per item"] == 8 and df.loc["bebr", "bytes per item"] == 8
    assert df.loc["float", "bytes per item"] == 128 and df.loc["bebr", "memory vs float"] == 8 / 128
    assert df.loc["bebr", "response ms"] == pytest.approx(100) and df.loc["bebr", "time vs float"] == 0.25
    assert df.loc["hash", "ms per query"] == pytest.approx(200 / 4)


def test_real_measurement_runs_every_system_and_answers_correctly():
    systems = _systems()
    df = speed.speed_table(systems, repeat=1)
    assert list(df["system"]) == ["hash", "bebr", "float"] and (df["response ms"] > 0).all()
    assert "bitlens" in df.loc[0, "method"]
    d, i = systems[0].run()
    assert d.shape == (4, 3)


def test_systems_must_share_n():
    a = _systems(n=50)
    b = _systems(n=60)
    with pytest.raises(ValueError, match="equal N"):
        speed.speed_table([a[0], b[1]])


def test_float_system_without_faiss_uses_numpy(monkeypatch):
    monkeypatch.setattr(search.faiss_backend, "available", lambda: False)
    rng = np.random.default_rng(0)
    q, x = rng.standard_normal((3, 8)), rng.standard_normal((20, 8))
    s = speed.float_system(q, x, 4)
    assert "numpy" in s.method
    v, i = s.run()
    ref = np.sort(q.astype(np.float32) @ x.astype(np.float32).T, 1)[:, ::-1][:, :4]
    np.testing.assert_allclose(np.sort(v, 1)[:, ::-1], ref, rtol=1e-6)


def test_measure_many_warms_up_and_interleaves_rounds():
    log = []
    times = speed.measure_many([lambda: log.append("a"), lambda: log.append("b")], repeat=3, warmup=1)
    assert log == ["a", "b"] + ["a", "b"] * 3 and len(times) == 2
