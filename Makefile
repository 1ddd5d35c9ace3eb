# The two set-up commands of the README: `make demo` (main job on the synthetic benchmark) and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test install clean

$(STAMP): setup.py
	# FFmpeg's shared libraries for the torchcodec backend, apt-get only where they are missing
	bash .ci/ensure_ffmpeg_libs.sh
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip >/dev/null
	# torch + torchvision unpinned first (see README: Install notes), then the package and the test, export and
	# torchcodec extras
	$(PY) -m pip install torch torchvision
	$(PY) -m pip install -e ".[test,export,torchcodec]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) tools/run_net.py --cfg configs/synthetic.yaml

test: $(STAMP)
	$(PY) -m pytest -q tests

clean:
	rm -rf $(VENV) output data/synthetic
