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

.PHONY: env test demo reports kernel lab sync-notebooks clean-outputs \
  demo-01-helsinki demo-01-kotka demo-02 demo-03 demo-04 demo-05 demo-notebooks

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

# The demo's notebooks as a graph that make runs two at a time where they are independent (DEMO_JOBS; 1: one after
# the other): the two cities' datasets side by side, then 02, then 03, then 05 beside 04. 03 runs alone because it
# reports evaluation speed; 05 reads only what 02 and 03 wrote. 04 times AddressCLIP's query after its sweep, long
# after 05 has ended; its first baselines (CoOp) time theirs after a minute or more of training, which in the measured
# demos was after 05 had ended (a re-run reads those times back with the results). Alone, each would leave a core idle in
# imports, kernel start-ups and single-threaded plotting. Every notebook computes with its own processes and
# threads, so the results do not depend on the order (tests/test_demo_graph.py checks the graph).
DEMO_JOBS ?= 2
demo: env
	mkdir -p $(EXECUTED) $(REPORTS)
	$(MAKE) --no-print-directory -j$(DEMO_JOBS) demo-notebooks
	$(MAKE) --no-print-directory reports

# $(call notebook,NOTEBOOK,EXECUTED COPY,PARAMETERS[,ENVIRONMENT]): the command as it starts (without a progress bar:
# two may run at once), then how long it took or that it failed. The demo-* targets are make demo's steps (it builds
# env first).
papermill_command = $(if $(4),$(4) )$(PAPERMILL) --no-progress-bar notebooks/$(1).ipynb $(EXECUTED)/$(2).ipynb $(3)
notebook = @echo '$(subst ','\'',$(call papermill_command,$(1),$(2),$(3),$(4)))'; start=$$(date +%s); \
  $(call papermill_command,$(1),$(2),$(3),$(4)) || { status=$$?; \
  echo "$(EXECUTED)/$(2).ipynb: failed after $$(( $$(date +%s) - start )) s"; exit $$status; }; \
  echo "$(EXECUTED)/$(2).ipynb: done in $$(( $$(date +%s) - start )) s"

# Under make demo, 05 runs beside 04, whose sweep holds every core with a one-thread process (addressclip/threads.py),
# so 05 computes with one thread too (OMP_NUM_THREADS, read at start by torch, numpy's BLAS and scikit-learn). With
# torch's default of a thread per core, the three processes' threads spin-wait for each other's cores: in
# bench/bench_last_phase.py, 05 took 127.8 s with two threads and 48.6 s with one, and CoOp's seeds beside it 105-112 s
# and 77 s (README, "Speed"). Run alone (DEMO_JOBS=1, after 04), 05 keeps every core.
BESIDE_SWEEP = $(if $(filter 1,$(DEMO_JOBS)),,OMP_NUM_THREADS=1)

demo-01-helsinki:
	$(call notebook,01_build_dataset,01_build_dataset,-p dataset helsinki-synth)
demo-01-kotka:
	$(call notebook,01_build_dataset,01_build_dataset-kotka,-p dataset kotka-synth)
demo-02: demo-01-helsinki demo-01-kotka
	$(call notebook,02_train,02_train,-p profile demo -p run_name demo)
demo-03: demo-02
	$(call notebook,03_evaluate,03_evaluate,-p run demo -p dataset helsinki-synth)
demo-04: demo-03
	$(call notebook,04_ablations,04_ablations,-p profile demo)
demo-05: demo-03
	$(call notebook,05_visualise,05_visualise,-p run demo -p dataset helsinki-synth,$(BESIDE_SWEEP))
demo-notebooks: demo-04 demo-05

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
