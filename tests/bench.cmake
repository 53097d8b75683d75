# Benchmarks are not timed in tests, but they must keep running: bench_sweep drives the train,
# prefill and evaluate code paths through their public APIs (the evaluate mode builds a data set with
# data_build's parameters), so a changed parameter schema or signature fails here, not in a quiet
# benchmark window. Smallest shape, one thread, a few seconds. (bench/ is configured after tests/;
# the generator expression resolves the target at generate time.)
add_test(NAME bench_sweep_smoke COMMAND bash -c
    "set -e; for m in train prefill evaluate; do out=$($<TARGET_FILE:bench_sweep> $m h32 1 fp32); \
     grep -Eq '^t1[.]fp32[.](tokens|examples)_per_s [0-9.]+$' <<<\"$out\" || { echo \"bench_sweep $m h32: no rate in: $out\" >&2; exit 1; }; \
     echo \"ok: bench_sweep $m h32\"; done")
set_tests_properties(bench_sweep_smoke PROPERTIES TIMEOUT 300 ENVIRONMENT "OMP_WAIT_POLICY=passive")
