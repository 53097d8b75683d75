# Tests of the serving engine, the benchmark stage and smelt serve (issue 13).
smelt_c_test(test_engine ${CMAKE_CURRENT_SOURCE_DIR}/test_engine.c)
smelt_c_test(test_benchmark ${CMAKE_CURRENT_SOURCE_DIR}/test_benchmark.c)
foreach(t serve_cli benchmark_cli)
  smelt_sh_test(${t} cli/${t}.sh)
  set_property(TEST ${t} APPEND PROPERTY ENVIRONMENT "SMELT_DATA_HELPER=$<TARGET_FILE:data_helper>")
endforeach()
