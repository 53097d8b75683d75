# Tests of the data and evaluate stages (issue 4): data artifacts, sources, AUC, scoring, CLI.
smelt_c_test(test_dataset ${CMAKE_CURRENT_SOURCE_DIR}/test_dataset.c)
