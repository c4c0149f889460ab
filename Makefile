# Two commands on a fresh machine: `make demo` and `make test`.
.PHONY: demo test test-unit bench
demo:
	bash scripts/demo.sh
test:
	bash scripts/test.sh
test-unit:
	bash scripts/test.sh tests/unit -q
bench:
	bash scripts/bootstrap.sh && .venv/bin/python bench/pipeline_bench.py --quick && .venv/bin/python bench/ranking_bench.py
