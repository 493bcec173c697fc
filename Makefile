# dc2flow: two commands do all set-up on a fresh machine.
#   make demo   - create .venv, install pinned dependencies, render raft R22 of a tiny synthetic visit
#   make test   - the whole test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO := demo
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: venv demo test bench constraints clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $@

demo: venv
	$(BIN)/dc2flow make-catalog --outdir $(DEMO)/catalogs --visit 1001 --ra-deg 55.0 --dec-deg -30.0 \
	    --band r --seed 1001 --radius-deg 0.5 --star-density 4000 --galaxy-density 50000
	$(BIN)/snakemake --cores 2 --config catalogs='[$(DEMO)/catalogs/phosim_cat_1001.txt]' \
	    sensors='[R22_S00,R22_S01,R22_S02,R22_S10,R22_S11,R22_S12,R22_S20,R22_S21,R22_S22]' outdir=$(DEMO)/results
	@echo
	@echo "Images of raft R22 for visit 1001:"
	@ls -1 $(DEMO)/results/00001001/eimage_*.fits
	@echo "Mosaic and validation figure: $(DEMO)/results/validation/00001001/{mosaic,summary}.png"
	@$(BIN)/dc2flow status $(DEMO)/results
	@echo "Look at the images: $(BIN)/dc2flow viewer $(DEMO)/results   (http://127.0.0.1:8765/)"

# Tests marked serial measure wall time or load the whole machine: they run alone, after the rest.
# ruff lints the package, tests and scripts first (the rules' Snakemake syntax: snakemake --lint, in the tests).
test: venv
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -n 2 --durations=15 -m "not serial" tests
	$(BIN)/python -m pytest --durations=5 -m serial tests

bench: venv
	$(BIN)/python benchmarks/render_vs_galsim.py

constraints: venv
	grep '^#' constraints.txt > constraints.txt.new
	$(BIN)/python -m pip freeze --all --exclude-editable | grep -v -e '^dc2flow' -e '^pip==' >> constraints.txt.new
	mv constraints.txt.new constraints.txt

clean:
	rm -rf $(DEMO) .snakemake
