# Two commands do everything on a fresh machine: `make demo` (the main job on the embedded default)
# and `make test`. Both create the environment (.venv) first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PAPERMILL := $(VENV)/bin/papermill --log-level WARNING
# headless executions: no progress-bar text in executed notebooks and reports (addressclip/progress.py)
export ADDRESSCLIP_PROGRESS ?= 0
EXECUTED := outputs/executed
REPORTS := outputs/reports
# torch/torchvision pinned to the releases this kind of machine holds on its disk (CPU use; CUDA build)
TORCH := torch==2.14.1 torchvision==0.29.1

.PHONY: env test demo reports kernel lab sync-notebooks clean-outputs

env: $(VENV)/.installed

# Everything with uv, which downloads and unpacks in parallel and links from its cache: on this 2-core machine 25-29 s
# against pip's 83 s for the project's packages, 15-17 s against pip's 60-112 s for torch. uv does not read pip's
# configuration, so torch comes from the indexes pip is configured with (global.index-url and extra-index-url: a
# mirror, or this machine's disk, which holds the 2.14.1 CUDA build) where there are any, else from PyPI; the rest
# from PyPI (behind a mirror, set UV_DEFAULT_INDEX). --compile-bytecode: this machine sets PYTHONDONTWRITEBYTECODE,
# so modules not compiled at install are compiled at every import.
PIP_INDEX = $(shell $(PYTHON) -m pip config get global.index-url 2>/dev/null)
PIP_EXTRA_INDEXES = $(shell $(PYTHON) -m pip config get global.extra-index-url 2>/dev/null)
TORCH_SOURCES = $(if $(PIP_INDEX),--default-index $(PIP_INDEX)) $(foreach url,$(PIP_EXTRA_INDEXES),--extra-index-url $(url)) \
  --index-strategy unsafe-best-match
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip uv
	$(VENV)/bin/uv pip install -q --python $(PY) --compile-bytecode $(TORCH_SOURCES) $(TORCH)
	$(VENV)/bin/uv pip install -q --python $(PY) --compile-bytecode -e '.[dev]'
	touch $@

# Every notebook with its default (smoke) parameters under nbval, and the unit tests; the 25 slowest at the end.
# TEST_WORKERS pytest-xdist workers share the cores; each test file, and the notebooks together, stay on one worker
# (tests/workers.py). The notebooks go first (as given: --no-loadscope-reorder), the longest chain. TEST_WORKERS=0: serial.
TEST_WORKERS ?= 2
test: env
	$(PY) -m pytest notebooks tests --nbval-lax -p no:cacheprovider -n $(TEST_WORKERS) --no-loadscope-reorder --durations=25

demo: env
	mkdir -p $(EXECUTED) $(REPORTS)
	$(PAPERMILL) notebooks/01_build_dataset.ipynb $(EXECUTED)/01_build_dataset.ipynb -p dataset helsinki-synth
	$(PAPERMILL) notebooks/01_build_dataset.ipynb $(EXECUTED)/01_build_dataset-kotka.ipynb -p dataset kotka-synth
	$(PAPERMILL) notebooks/02_train.ipynb $(EXECUTED)/02_train.ipynb -p profile demo -p run_name demo
	$(PAPERMILL) notebooks/03_evaluate.ipynb $(EXECUTED)/03_evaluate.ipynb -p run demo -p dataset helsinki-synth
	$(PAPERMILL) notebooks/04_ablations.ipynb $(EXECUTED)/04_ablations.ipynb -p profile demo
	$(PAPERMILL) notebooks/05_visualise.ipynb $(EXECUTED)/05_visualise.ipynb -p run demo -p dataset helsinki-synth
	$(MAKE) reports

reports: env
	$(VENV)/bin/jupyter nbconvert --to html --no-input --output-dir $(REPORTS) $(EXECUTED)/*.ipynb
	$(PY) -m addressclip.report --reports $(REPORTS)

# A Jupyter kernel named "addressclip" for a JupyterLab installed outside .venv (the notebooks' own kernelspec
# stays "python3", which papermill and nbval resolve inside .venv).
kernel: env
	$(PY) -m ipykernel install --user --name addressclip --display-name "Python (addressclip .venv)"

lab: env
	ADDRESSCLIP_PROGRESS=1 $(VENV)/bin/jupyter lab notebooks/

# Each notebook is paired with a percent-format script (notebooks/jupytext.toml): edit either file, then this brings
# the other in line (the newer file's cells win; outputs stay in the .ipynb only: commit it without them).
sync-notebooks: env
	$(VENV)/bin/jupytext --sync notebooks/*.ipynb

clean-outputs:
	rm -rf $(EXECUTED) $(REPORTS)
