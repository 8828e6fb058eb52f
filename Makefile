# Two commands for a fresh machine: `make demo` and `make test`.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install demo test test-unit test-integration lint bench clean kafka

$(BIN)/python:
	$(PY) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q --disable-pip-version-check torch==2.13.0
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/streamrec demo $(if $(RATE),--rate $(RATE),)

# promtool (Debian's prometheus package) validates deploy/prometheus; installed when missing.
.PHONY: promtool
promtool:
	@command -v promtool >/dev/null 2>&1 || { (apt-get update -qq && apt-get install -y -qq prometheus >/dev/null) \
	  || echo "could not install Debian's prometheus package (promtool); deploy tests will fail"; }

# Apache Kafka for the integration tests (they run on Tansu and on Kafka; STREAMREC_TEST_BROKERS=tansu|kafka picks
# one): the jars deploy/kafka/pom.xml names, copied from Maven Central into the git-ignored .kafka/lib.
KAFKA_LIB := .kafka/lib
KAFKA_STAMP := $(KAFKA_LIB)/.installed

$(KAFKA_STAMP): deploy/kafka/pom.xml
	@command -v mvn >/dev/null 2>&1 && command -v java >/dev/null 2>&1 || { \
	  echo "make kafka: needs Maven (mvn) and Java 17+ on the PATH"; exit 1; }
	rm -rf $(KAFKA_LIB)
	mvn -q -B -Dstyle.color=never -f deploy/kafka/pom.xml dependency:copy-dependencies -DincludeScope=runtime \
	  -DoutputDirectory=$(CURDIR)/$(KAFKA_LIB)
	touch $(KAFKA_STAMP)

kafka: $(KAFKA_STAMP)

test: $(STAMP) promtool kafka
	$(BIN)/python -m pytest -q --durations=25

test-unit: $(STAMP)
	$(BIN)/python -m pytest -q tests/unit learners connectors stream

test-integration: $(STAMP) kafka
	$(BIN)/python -m pytest -q tests/integration

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy learners

bench: $(STAMP)
	$(BIN)/python benchmarks/throughput.py

clean:
	rm -rf $(VENV) .streamrec .kafka build *.egg-info
