# Tests of the data and evaluate stages (issue 4): data artifacts, sources, AUC, scoring, CLI.
smelt_c_test(test_dataset ${CMAKE_CURRENT_SOURCE_DIR}/test_dataset.c)
smelt_c_test(test_auc ${CMAKE_CURRENT_SOURCE_DIR}/test_auc.c)
smelt_c_test(test_score ${CMAKE_CURRENT_SOURCE_DIR}/test_score.c)
smelt_c_test(test_data ${CMAKE_CURRENT_SOURCE_DIR}/test_data.c)
smelt_c_test(test_data_sources ${CMAKE_CURRENT_SOURCE_DIR}/test_data_sources.c)
