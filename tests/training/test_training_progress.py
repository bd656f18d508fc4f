"""Training progress off a terminal: one line every train.log_every steps (and at the last step)."""

from bnlab.training.progress import Progress


def test_a_line_every_log_every_steps(capsys) -> None:
    bar = Progress(100, log_every=25, description="run")
    for step in (3, 10, 24, 25, 26, 49, 52, 60, 99, 100):  # updates arrive at sync points
        bar.update(step, loss=1.0, lr=0.1, img_s=10.0)
    bar.close()
    steps = [
        int(ln.split()[2].split("/")[0]) for ln in capsys.readouterr().err.splitlines() if " step " in ln
    ]
    assert steps == [25, 52, 99, 100]


def test_resumed_run_counts_from_its_start(capsys) -> None:
    bar = Progress(100, log_every=50, start=60, description="run")
    for step in (61, 99, 100):
        bar.update(step, loss=1.0, lr=0.1, img_s=10.0)
    steps = [ln.split()[2] for ln in capsys.readouterr().err.splitlines() if " step " in ln]
    assert steps == ["100/100"]
