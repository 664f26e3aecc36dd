# Two commands do all the set-up on a fresh machine:
#   make run    create .venv, install memnets, run the default job
#   make test   the same set-up, then the linter, the docs build and the test suite
#               (with the docstrings' examples: tests/test_docs_build.py runs them)
# make docs builds the guides and the API reference into docs/_build/html.
VENV ?= .venv
PY := $(VENV)/bin/python
# torch's CPU build; override on a GPU machine, e.g. make TORCH_SPEC=torch test
TORCH_SPEC ?= torch==2.13.0

.PHONY: run test lint docs bench install clean

$(VENV)/.installed: pyproject.toml Makefile
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

install: $(VENV)/.installed

# the default job: a small LSTM and an Elman tanh RNN on the adding problem (T = 100);
# prints a table and writes runs/default/curves.png (finished runs are not repeated)
run: install
	$(VENV)/bin/memnets compare adding --models lstm,elman --out runs/default

lint: install
	$(PY) -m ruff check src tests benchmarks scripts docs/conf.py

# every Sphinx warning is an error (-W), and all of them are listed before it stops
docs: install
# -E: read every page again (autodoc does not see a docstring change otherwise)
	$(PY) -m sphinx -b html -E -W --keep-going -q -j auto docs docs/_build/html

test: lint docs
	$(PY) -m pytest -q

bench: install
	$(PY) benchmarks/rnn_speed.py

clean:
	rm -rf $(VENV) build src/*.egg-info docs/_build
