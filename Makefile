# Developer entry points. Each target creates the virtual environment it needs,
# so on a fresh machine `make demo` and `make test` are all there is to type.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Pass extra pytest options with: make test PYTEST_ARGS="-k wire -x"
PYTEST_ARGS ?=

.PHONY: demo test install bench fuzz clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip

# Editable install: the compiled modules are built next to their sources.
install: $(BIN)/python
	$(BIN)/python -m pip install -e '.[test]'

demo: install
	$(BIN)/stt demo

test: install
	$(BIN)/python scripts/run_tests.py $(PYTEST_ARGS)

bench: install
	$(BIN)/python -m pip install -e '.[bench]'
	$(BIN)/python bench/bench_wire.py
	$(BIN)/python bench/bench_aead.py
	$(BIN)/python bench/bench_handshake.py
	$(BIN)/python bench/bench_engine.py
	$(BIN)/python bench/bench_transport.py
	$(BIN)/python bench/bench_priority.py
	$(BIN)/python bench/bench_sessions.py
	$(BIN)/python bench/bench_sessions.py --udp
	$(BIN)/python bench/bench_dht.py --impl stt --impl bmuller
	$(BIN)/python bench/bench_pubsub.py --impl stt --impl libp2p --impl libp2p-unlimited

fuzz: install
	$(BIN)/python fuzz/run 60

clean:
	rm -rf build dist *.egg-info $(VENV)
	find stt_proto -name '*.so' -delete
