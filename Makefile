# Two commands on a fresh machine: `make demo` (the main job) and `make test` (what CI runs).
# Each sets up .venv and the services it needs by itself.
.PHONY: demo demo-serve test test-fast test-unit lint bench

demo:        ## the whole pipeline on embedded Kafka + Redis, prints the ranked galleries
	bash scripts/demo.sh

demo-serve:  ## the demo, then the gallery page on http://127.0.0.1:8080/ until Ctrl-C
	bash scripts/demo.sh --serve

test:        ## static gates, then the whole suite (= .ci/run)
	bash scripts/lint.sh
	bash scripts/test.sh

test-fast:   ## unit tests + the fast integration tests (< 3 min here): run while you work
	bash scripts/test.sh -m "not slow" -q

test-unit:   ## pure code only, no services (~1 min)
	bash scripts/test.sh tests/unit -q

lint:        ## ruff check, ruff format --check, mypy
	bash scripts/lint.sh

bench:
	bash scripts/bootstrap.sh && .venv/bin/python -m bench.pipeline_bench --quick && .venv/bin/python -m bench.ranking_bench
