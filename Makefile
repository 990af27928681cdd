# The README's commands are scripts/sandbox and scripts/test; these are shortcuts.
.PHONY: test sandbox bench bench-quick

test:
	./scripts/test

sandbox:
	./scripts/sandbox

# All five benchmarks of issue 7 (bench/run_all.py: ack latency, digest cost, fan-out, footprint,
# rollout watch) in full, results into BENCHMARKS.md; tens of minutes on 2 cores, so run it on a
# quiet machine. bench-quick is what CI runs (tests/e2e/test_bench.py): does each still work, no figures.
bench:
	scripts/setup test
	.venv/bin/python bench/run_all.py --write BENCHMARKS.md

bench-quick:
	.venv/bin/python bench/run_all.py --quick
