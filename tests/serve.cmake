# Tests of the serving engine, the benchmark stage and smelt serve (issue 13).
smelt_c_test(test_engine ${CMAKE_CURRENT_SOURCE_DIR}/test_engine.c)
