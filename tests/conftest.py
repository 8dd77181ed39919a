import os
import random
from pathlib import Path

# Tiny test models run fastest on one thread, and two OpenMP pools fighting over 2 cores (a
# test process plus a subprocess it starts) slow down by 20x. Subprocesses inherit this.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"

WORDS = (
    "the a river city model train data small large quick brown fox jumps over lazy dog "
    "music film story review plot actor scene night day rain sun cold warm old new good bad "
    "is was are were has had will can may of in on at to from with by for and or but"
).split()


def synthetic_lines(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 30))) + " ." for _ in range(n)]


@pytest.fixture(autouse=True)
def _same_working_directory():
    """`--resume` moves into the folder a run started in (`cli._where_it_started`); in-process
    CLI calls would leave every later test there, reading relative paths from elsewhere."""
    here = os.getcwd()
    yield
    os.chdir(here)


@pytest.fixture
def corpus_txt(tmp_path: Path) -> Path:
    f = tmp_path / "corpus.txt"
    f.write_text("\n".join(synthetic_lines(400)) + "\n", encoding="utf-8")
    return f


def shared(*parts: str) -> Path:
    p = SHARED.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"{p} not present (the shared data sets sit beside the repository in CI)")
    return p


def run_cli(*args: object) -> int:
    """The `encoderlab` command in this process; its exit code."""
    from encoderlab.cli import main

    try:
        main([str(a) for a in args])
    except SystemExit as e:
        return int(e.code or 0)
    return 0


def default_sigint() -> None:
    """preexec_fn for a child process a test sends Ctrl-C (SIGINT): tests started from a
    background job (`make test &`, nohup) inherit SIGINT as ignored, the child would too, and an
    ignored SIGINT never reaches it (seen: SigIgn 0x81001007 in the child of a background
    `make test`). The child gets SIGINT as a terminal's Ctrl-C gives it."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def frozen_when(cmd: list[str], env: dict, ready, slice_s: float, limit_s: float = 300):
    """Start `cmd` in its own process group and let it run in slices of `slice_s` seconds,
    frozen (SIGSTOP) in between while `ready()` looks at what it wrote, so it cannot move on
    between the look and a kill: the frozen process once `ready()` is true, or None when it
    finished first (the caller tries shorter slices)."""
    import signal
    import subprocess
    import time

    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        time.sleep(slice_s)
        os.killpg(proc.pid, signal.SIGSTOP)
        if proc.poll() is not None:
            return None
        if ready():
            return proc
        os.killpg(proc.pid, signal.SIGCONT)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    pytest.fail(f"{' '.join(cmd[:4])}: not ready after {limit_s:.0f} s")


def kill_9(proc) -> None:
    """SIGKILL a process group frozen_when returned, and reap it."""
    import signal

    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


GOOD = "great fine lovely superb nice happy".split()
BAD = "awful poor sad terrible dull broken".split()
FILL = "the movie plot was and it a very with actor scene music".split()


def sentiment_rows(n: int, seed: int, max_fill: int = 10) -> list[dict]:
    """A learnable two-class task: one sentiment word among filler words (label 1: good)."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = rng.randint(0, 1)
        words = [rng.choice(FILL) for _ in range(rng.randint(3, max_fill))]
        words.insert(rng.randint(0, len(words)), rng.choice(GOOD if label else BAD))
        rows.append({"id": f"{seed}-{i}", "text": " ".join(words), "target": label})
    return rows


def crashing_fit(at_call: int):
    """A stand-in for `encoderlab.finetuning.fit` whose objective raises "simulated crash" at
    its `at_call`-th step call: a run killed mid-way, with its checkpoints, to resume."""
    from encoderlab import train as train_module

    real_fit = train_module.fit

    def fit(*args, **kwargs):
        objective = args[5]
        step, calls = objective.step, {"n": 0}

        def boom(model, batch):
            calls["n"] += 1
            if calls["n"] == at_call:
                raise RuntimeError("simulated crash")
            return step(model, batch)

        objective.step = boom
        return real_fit(*args, **kwargs)

    return fit
