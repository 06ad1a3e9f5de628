"""Progress outside a terminal: single-line log records with done/total, rate and ETA, a heartbeat
while nothing finishes, unwrapped status lines, and silence when disabled."""

from __future__ import annotations

import logging
import re
import time

import pytest
from gexplain.pipelines.progress import Progress


def test_log_mode_lines_carry_done_total_rate_and_eta(caplog: pytest.LogCaptureFixture) -> None:
    progress = Progress(log_every=0.0)
    assert progress.mode == "log"  # pytest's stderr is not a terminal
    with caplog.at_level(logging.INFO, logger="gexplain"), progress.task("evaluate: faithfulness", 4) as task:
        for _ in range(4):
            time.sleep(0.01)
            task.advance()
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "evaluate: faithfulness: started, 4 to do"
    middle = [line for line in lines if "ETA" in line]
    assert middle, lines
    assert re.fullmatch(
        r"evaluate: faithfulness: \d/4 \(\d+%\), [\d.]+(/s|/min| s each), ETA \d+ s, elapsed \d+ s", middle[0]
    )
    assert re.fullmatch(r"evaluate: faithfulness: done 4/4 \(100%\) in \d+ s", lines[-1])
    assert all("\n" not in line for line in lines)


def test_heartbeat_logs_a_task_that_finishes_nothing(caplog: pytest.LogCaptureFixture) -> None:
    progress = Progress(log_every=0.2)
    with caplog.at_level(logging.INFO, logger="gexplain"), progress.task("report: render", None):
        time.sleep(1.0)
    beats = [r.getMessage() for r in caplog.records if r.getMessage().startswith("report: render: 0")]
    assert len(beats) >= 2, caplog.text
    progress.close()


def test_status_lines_are_not_wrapped_and_disabled_is_silent(capsys: pytest.CaptureFixture[str]) -> None:
    long = "evaluate: " + " ".join(f"word{i}" for i in range(60))  # ~400 characters
    Progress().print(long)
    assert capsys.readouterr().err.rstrip("\n") == long
    off = Progress(enabled=False)
    assert off.mode == "off"
    with off.task("x", 2) as task:
        task.advance(2)
    off.print("nothing")
    assert capsys.readouterr().err == ""
