"""Under run_all, progress is a plain line printed on a timer, even while one iteration is still running."""
import io
import threading

from bitlens import progress


class _Sink(io.StringIO):
    def __init__(self):
        super().__init__()
        self.wrote = threading.Event()

    def write(self, s):
        n = super().write(s)
        if s.strip():
            self.wrote.set()
        return n


def test_log_mode_prints_during_a_long_iteration_with_position_and_eta(monkeypatch):
    sink = _Sink()
    bar = progress.LogProgress(range(4), desc="IBC", every=0.02, file=sink)
    seen, during = [], []
    for i in bar:
        seen.append(i)
        if i == 2:  # a slow iteration: lines come from the timer, not from the loop
            sink.wrote.clear()
            assert sink.wrote.wait(10), "no progress line while an iteration was running"
            during = sink.getvalue().splitlines()
    assert seen == [0, 1, 2, 3]
    line = during[-1]
    assert line.startswith("[progress] IBC: 2/4 (50%),") and "elapsed, ETA" in line


def test_progress_picks_the_log_bar_under_the_pipeline_and_honours_disable(monkeypatch):
    monkeypatch.setenv("BITLENS_PROGRESS", "log")
    bar = progress.progress(range(3), desc="x", initial=1, total=4, disable=None)
    assert isinstance(bar, progress.LogProgress) and not bar.disable and bar.n == 1
    assert list(bar) == [0, 1, 2] and bar.n == 4
    assert progress.progress(range(2), disable=True).disable


def test_a_bar_without_total_counts_items():
    bar = progress.LogProgress(iter([1, 2]), desc="y", every=60)
    list(bar)
    assert bar.line().startswith("[progress] y: 2 done,")


def test_short_loops_in_a_row_still_report_at_the_interval(monkeypatch):
    monkeypatch.setattr(progress, "_LAST_LINE", [None])
    sink = _Sink()
    first = progress.LogProgress(range(1), desc="a", every=0.3, file=sink)
    list(first)  # ends long before the interval: prints nothing
    assert sink.getvalue() == ""
    progress._LAST_LINE[0] = first._t0  # as if the last line came when the first loop started
    second = progress.LogProgress(range(2), desc="b", every=0.3, file=sink)
    for i in second:
        if i == 1:
            assert sink.wrote.wait(10)
    assert sink.getvalue().startswith("[progress] b: 1/2")
