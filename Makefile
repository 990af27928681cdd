# The README's commands are scripts/sandbox and scripts/test; these are shortcuts.
.PHONY: test sandbox bench bench-quick

test:
	./scripts/test

sandbox:
	./scripts/sandbox

bench:
	scripts/setup test
	.venv/bin/python bench/run_all.py --write BENCHMARKS.md

bench-quick:
	.venv/bin/python bench/run_all.py --quick
