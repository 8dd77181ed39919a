#!/bin/bash
# Prepares .devpkg-tw/ (git-ignored through .git/info/exclude) for issue #15's GPU call: the
# disaster-tweets study's `full` profile (tweets.py), which runs encoderlab's CLI in one process
# per arm and writes the report. Packs the wheels the device image may lack (pydantic as for
# prepare.sh; typer/rich for the CLI; matplotlib for the report's figures: tweets.sh installs a
# group only when its module does not import there) and the four data files. Then, with the
# `device` tool:  run  bash .devpkg-tw/tweets.sh  carry [".devpkg-tw"]  timeout_s 540
# Rehearse here first:  PY=$PWD/.venv/bin/python bash .devpkg-tw/tweets.sh cpu
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
grep -qx '/.devpkg-tw/' .git/info/exclude || echo '/.devpkg-tw/' >> .git/info/exclude
D=.devpkg-tw
rm -rf $D && mkdir -p $D/data $D/whl/pydantic $D/whl/typer $D/whl/matplotlib
PIP="python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp
  --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64"
$PIP -d $D/whl/pydantic pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 \
  typing-inspection==0.4.5 typing-extensions==4.16.0
$PIP -d $D/whl/typer typer==0.29.2 click==8.5.1 shellingham==1.5.4 rich==15.0.0 \
  markdown-it-py==4.3.0 mdurl==0.1.2 pygments==2.21.0
$PIP -d $D/whl/matplotlib matplotlib==3.11.2 contourpy==1.3.3 kiwisolver==1.5.1 pillow==13.0.0 \
  fonttools==4.68.0 cycler==0.12.1 pyparsing==3.3.3 python-dateutil==4.0.0 six
cp ../shared/data/disaster_tweets/train.csv ../shared/data/disaster_tweets/test.csv $D/data/
cp ../shared/data/wikitext-2/valid.txt $D/data/wiki.valid.txt
cp ../shared/data/wikitext-2/test.txt $D/data/wiki.test.txt
cp benchmarks/gpu_bundle/tweets.sh benchmarks/gpu_bundle/tweets.py $D/
du -sh $D
