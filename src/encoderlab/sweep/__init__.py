"""Hyperparameter sweeps on Ray Tune: one YAML file, every trial an ordinary encoderlab run.

    encoderlab sweep examples/disaster_tweets/sweep.yaml            # local Ray, all cores
    encoderlab sweep sweep.yaml --address ray://head:10001           # an existing cluster
    encoderlab sweep sweep.yaml --resume                             # after an interruption

A sweep file names a `base` config (fine-tuning or pretraining, relative to the sweep file),
a `space` of dotted config fields ({grid|choice|uniform|loguniform|randint}), the `metric` and
`mode`, the search algorithm (grid, random, optuna = TPE), a scheduler (none or ASHA, in
evaluations), resources per trial, concurrency and a time budget. Output in `out/`
(default `sweeps/<name>`):

  runs/<name>-<trial>-... one encoderlab run directory per trial (`encoderlab report` works)
  trials/<trial_id>.json  what each trial tried, its run directory, status and error
  trials.csv, trials.md   the ranked table; best.yaml: the best trial's config
  plots/<field>.png       the metric against each searched field
  report/                 the encoderlab report of the trial runs
  tune/                   Ray Tune's experiment state (what --resume restores)
  sweep.yaml, base-config.yaml   the sweep file and base config as the sweep started:
                          --resume refuses a sweep edited since (its trials would be mixed)
  .encoderlab-sweep       the marker a sweep writes first: it writes nowhere else
                          (but pretraining's token cache, data.cache_dir)
  run.lock                the process running the sweep: a second one there is refused

Trials report to Tune after every evaluation, and only once that evaluation's checkpoint is on
disk, so a trial ASHA stops early is a valid run (marked `stopped early` in run.json) with a
checkpoint. A trial that raises (out of memory, non-finite loss, a bad combination of values)
is recorded as failed with its error and the sweep goes on.

Ctrl-C (or SIGTERM) stops the sweep as Ray Tune's SIGUSR1 does: Tune saves its state, the
table marks the trials that did not finish `interrupted`, and the command exits 130 with the
`--resume` line.

The package by job: `spec` (the sweep file), `folder` (the output folder: its marker, what
--resume compares, starting over), `trial` (one trial, in a Ray worker), `execute` (driving
Ray Tune), `tables` (the ranked table, best.yaml, plots, report).
"""

from encoderlab.sweep.execute import run_sweep, start_ray, sweep_command
from encoderlab.sweep.spec import Dist, Resources, Scheduler, Sweep, SweepSpec, load_sweep
from encoderlab.sweep.tables import STATUSES, collect, write_outputs, write_plots
from encoderlab.sweep.trial import NonFiniteLoss, error_kind, run_trial, trial_config

__all__ = [
    "STATUSES",
    "Dist",
    "NonFiniteLoss",
    "Resources",
    "Scheduler",
    "Sweep",
    "SweepSpec",
    "collect",
    "error_kind",
    "load_sweep",
    "run_sweep",
    "run_trial",
    "start_ray",
    "sweep_command",
    "trial_config",
    "write_outputs",
    "write_plots",
]
