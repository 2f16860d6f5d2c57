# The two commands a user needs:  make demo   and   make test
# Both install everything on a fresh Debian/Ubuntu machine (Python 3.11):
# CP2K and an MPI launcher through apt-get when missing, Python packages into .venv.
VENV ?= .venv
PYTHON ?= python3
SNAKEMAKE = $(VENV)/bin/snakemake
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test test-fast setup venv system clean rulegraph

DEMO = --profile profiles/local --configfile config/demo.yaml

demo: setup
	$(SNAKEMAKE) $(DEMO)
	@echo; echo "Campaign table (results/campaign.csv):"; cat results/campaign.txt
	$(SNAKEMAKE) $(DEMO) --report results/report.html
	@echo; echo "Campaign report: $(CURDIR)/results/report.html"

test: setup
	$(VENV)/bin/pytest

test-fast: setup  # unit tests only, no full campaigns
	$(VENV)/bin/pytest -m "not slow and not slurm"

setup: system venv

venv: $(VENV)/.installed  # Python packages only (clusters: CP2K comes from a module)

$(VENV)/.installed: requirements.txt pyproject.toml  # requirements.txt ends with -e . (alflow)
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r requirements.txt
	touch $@

system:
	@if ! command -v cp2k >/dev/null || ! command -v mpirun >/dev/null; then \
	  echo "Installing CP2K and Open MPI with apt-get"; \
	  $(SUDO) apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q cp2k openmpi-bin; \
	fi

rulegraph: docs/rulegraph.svg  # the README's picture of the workflow (needs graphviz's dot)

docs/rulegraph.svg: Snakefile rules/*.smk config/demo.yaml | venv
	@command -v dot >/dev/null || { $(SUDO) apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q graphviz; }
	mkdir -p docs
	$(SNAKEMAKE) --configfile config/demo.yaml --cores 1 --rulegraph | dot -Tsvg -o $@

clean:
	rm -rf results .snakemake
