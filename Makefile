# The two commands of the README: `make demo` (quickstart search + retrain) and `make test`.
# Both create .venv if it is absent and install everything into it (~6.5 GB: torch here is a CUDA build).
VENV   ?= .venv
PY     := $(VENV)/bin/python
NAS    := $(VENV)/bin/nas
STAMP  := $(VENV)/.installed-stamp
RUN    ?= quickstart-$(shell date +%Y%m%d-%H%M%S)
SHELL  := /bin/bash
.SHELLFLAGS := -o pipefail -c
# pip prints a harmless "Location ... is ignored" line per package for this machine's local index.
QUIET  := 2>&1 | { grep -v 'is ignored: it is neither a file nor a directory' || true; }

.PHONY: demo test test-slow install cifar-search

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check torch==2.14.1 torchvision==0.29.1 $(QUIET)
	$(PY) -m pip install -q --disable-pip-version-check -e ".[test,nb201,peers]" $(QUIET)
	$(PY) -c "import torch, torchvision, ray, optuna, timm, fvcore, space, train, evaluators, search"
	touch $(STAMP)

demo: $(STAMP)
	$(NAS) search configs/quickstart.yaml --name $(RUN)
	$(NAS) show results/$(RUN)/best.yaml --input-size 16 --in-chans 1
	$(NAS) retrain results/$(RUN)/best.yaml --data digits --epochs 15 --out results/$(RUN)/retrain

# The CPU-hour CIFAR-10 search (docs/cifar10_search.md): search, the front against every CIFAR preset trained with
# the search's proxy protocol, the HTML report. NAS_DATA_DIR or configs/cifar10_search.yaml's data_dir: the data.
CIFAR_RUN     ?= cifar10_search-$(shell date +%Y%m%d-%H%M%S)
CIFAR_PRESETS := wrn-16-1,wrn-16-2,wrn-16-4,ghostnet-cifar,g-ghost-cifar,sknet-cifar,resnext-cifar,mgic-cifar,gconv-cifar,resattn-cifar
cifar-search: $(STAMP)
	$(NAS) search configs/cifar10_search.yaml --name $(CIFAR_RUN)
	$(NAS) compare results/$(CIFAR_RUN) --presets $(CIFAR_PRESETS) --jobs 2
	$(NAS) report results/$(CIFAR_RUN)

test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m pytest -q

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow
