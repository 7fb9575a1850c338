# The two set-up commands are `make demo` and `make test`; each installs what it needs.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
FASHION := /usr/share/datasets/fashion-mnist

.PHONY: install demo test fashion-data gpu-data clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# The pinned torch resolves to the local CPU wheel; an open range would pull CUDA builds.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

# Fashion-MNIST from Debian's package where apt exists; tests that need it skip otherwise.
fashion-data:
	@if [ ! -d $(FASHION) ] && command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		(apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist) >/dev/null 2>&1 || \
		echo "note: could not install dataset-fashion-mnist; Fashion-MNIST tests will skip"; \
	fi

# A copy inside the checkout (ignored by git), for scripts/gpu-suite.sh on a machine without the package.
gpu-data: fashion-data
	mkdir -p data/fashion-mnist
	cp $(FASHION)/*-ubyte.gz data/fashion-mnist/

demo: install
	$(VENV)/bin/metassl bench digits --out runs/demo --jobs 2
	$(VENV)/bin/metassl report runs/demo

test: install fashion-data
	$(PY) -m pytest

clean:
	rm -rf $(VENV) runs build *.egg-info
