"""Progress outside a terminal: single-line log records with done/total, rate and ETA at most 30 s
apart on an injected clock (no sleeping), a heartbeat while nothing finishes, unwrapped status and
error lines, bars on a terminal, Dask task counts, and silence when disabled."""

from __future__ import annotations

import io
import logging
import re

import dask.array as da
import pytest
from gexplain.pipelines.cli import main as cli_main
from gexplain.pipelines.progress import Progress, dask_tasks
from rich.console import Console

LINE = re.compile(
    r"(?P<what>.+): (?P<done>\d+)/(?P<total>\d+) \(\d+%\), [\d.]+(/s|/min| s each), "
    r"ETA (\d+ s|\d+ min \d\d s|unknown), elapsed (\d+ s|\d+ min \d\d s)"
)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Lines(logging.Handler):
    """Records (clock time, message) of each ``gexplain`` log record."""

    def __init__(self, clock: Clock) -> None:
        super().__init__(logging.INFO)
        self.clock = clock
        self.seen: list[tuple[float, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.seen.append((self.clock(), record.getMessage()))


@pytest.fixture
def lines() -> tuple[Clock, Lines]:
    clock = Clock()
    handler = Lines(clock)
    logger = logging.getLogger("gexplain")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield clock, handler
    logger.removeHandler(handler)
    logger.setLevel(level)


def test_log_lines_come_at_most_30_s_apart_with_done_total_rate_and_eta(lines: tuple[Clock, Lines]) -> None:
    clock, seen = lines
    progress = Progress(clock=clock, heartbeat=False)
    assert progress.mode == "log"  # pytest's stderr is not a terminal
    with progress.task("evaluate: faithfulness (sample blocks)", 10) as task:
        for second in range(1, 301):  # one item every 20 s for 200 s, then 100 s with none
            clock.now += 1.0
            if second % 20 == 0 and second <= 200:
                task.advance()
            progress.beat()  # what the heartbeat thread does once a second
    progress.close()
    times = [t for t, _ in seen.seen]
    messages = [m for _, m in seen.seen]
    assert messages[0] == "evaluate: faithfulness (sample blocks): started, 10 to do"
    assert messages[-1] == "evaluate: faithfulness (sample blocks): done 10/10 (100%) in 5 min 00 s"
    assert max(b - a for a, b in zip(times, times[1:], strict=False)) <= 30.0
    middle = messages[1:-1]
    assert len(middle) >= 300 // 30 - 1
    for message in middle:
        m = LINE.fullmatch(message)
        assert m, message
        assert m["what"] == "evaluate: faithfulness (sample blocks)" and m["total"] == "10"
    # at 116 s (4 x 29 s): 5 items done, 5/116 per s = 2.59/min, the 5 left take 116 s more
    assert (1116.0, "evaluate: faithfulness (sample blocks): 5/10 (50%), 2.59/min, ETA 1 min 56 s, "
            "elapsed 1 min 56 s") in seen.seen  # fmt: skip


def test_a_task_without_total_beats_with_elapsed_time(lines: tuple[Clock, Lines]) -> None:
    clock, seen = lines
    progress = Progress(clock=clock, heartbeat=False)
    with progress.task("report: render"):
        for _ in range(95):
            clock.now += 1.0
            progress.beat()
    progress.close()
    beats = [m for _, m in seen.seen[1:-1]]
    assert beats == [f"report: render: 0 done, 0/s, elapsed {s}" for s in ("29 s", "58 s", "1 min 27 s")]
    assert seen.seen[-1][1] == "report: render: done 0 in 1 min 35 s"


def test_the_storage_callback_sets_totals(lines: tuple[Clock, Lines]) -> None:
    clock, seen = lines
    progress = Progress(clock=clock, log_every=0.0, heartbeat=False)
    with progress.task("ingest: rows written") as task:
        for done in (4, 8, 10):
            clock.now += 2.0
            task.report(done, 10)
    assert [m for _, m in seen.seen[1:3]] == [
        "ingest: rows written: 4/10 (40%), 2/s, ETA 3 s, elapsed 2 s",
        "ingest: rows written: 8/10 (80%), 2/s, ETA 1 s, elapsed 4 s",
    ]


def test_dask_tasks_are_counted(lines: tuple[Clock, Lines]) -> None:
    clock, seen = lines
    progress = Progress(clock=clock, heartbeat=False)
    x = da.ones((8, 8), chunks=(2, 8))
    with progress.task("normalize: write layers (dask tasks)") as task, dask_tasks(task):
        (x + 1).sum().compute(scheduler="threads")
        (x * 2).compute(scheduler="sync")
    n_tasks = len(dict((x + 1).sum().__dask_graph__())) + len(dict((x * 2).__dask_graph__()))
    assert task.total == task.done and 8 <= task.done <= n_tasks  # no task of the graph counted twice
    assert seen.seen[-1][1].startswith(
        f"normalize: write layers (dask tasks): done {task.done:g}/{task.done:g}"
    )


def test_a_terminal_gets_a_bar() -> None:
    out = io.StringIO()
    progress = Progress(console=Console(file=out, force_terminal=True, width=100))
    assert progress.mode == "bar"
    with progress.task("explain explain_a: sample blocks", 4) as task:
        for _ in range(4):
            task.advance()
    progress.close()
    text = out.getvalue()
    assert "explain explain_a: sample blocks" in text and "4/4" in text and "━" in text


def test_nothing_wraps_outside_a_terminal(
    capsys: pytest.CaptureFixture[str], lines: tuple[Clock, Lines]
) -> None:
    clock, seen = lines
    long = "evaluate: " + " ".join(f"word{i}" for i in range(60))  # ~400 characters
    progress = Progress(clock=clock, log_every=0.0, heartbeat=False)
    progress.print(long)
    with progress.task(long, 2) as task:
        clock.now += 1.0
        task.advance()
    assert capsys.readouterr().err.rstrip("\n") == long
    assert all("\n" not in m and m.startswith(long) for _, m in seen.seen)
    # the CLI's error line (rich would fold it at 80 columns outside a terminal)
    store = "/nonexistent/" + "deeply/nested/" * 12 + "store.zarr"
    assert cli_main.main(["info", store]) == 2
    err = capsys.readouterr().err
    assert len(err.rstrip("\n").splitlines()) == 1 and store in err, err
    assert cli_main._interrupted() == cli_main.INTERRUPTED
    assert capsys.readouterr().err == "interrupted; rerun to resume\n"


def test_disabled_is_silent(capsys: pytest.CaptureFixture[str], lines: tuple[Clock, Lines]) -> None:
    off = Progress(enabled=False)
    assert off.mode == "off"
    with off.task("x", 2) as task:
        task.advance(2)
    off.print("nothing")
    assert capsys.readouterr().err == "" and lines[1].seen == []
