# Tests of the data and evaluate stages (issue 4): data artifacts, sources, AUC, scoring, CLI.
smelt_c_test(test_dataset ${CMAKE_CURRENT_SOURCE_DIR}/test_dataset.c)
smelt_c_test(test_auc ${CMAKE_CURRENT_SOURCE_DIR}/test_auc.c)
smelt_c_test(test_score ${CMAKE_CURRENT_SOURCE_DIR}/test_score.c)
smelt_c_test(test_data ${CMAKE_CURRENT_SOURCE_DIR}/test_data.c)
smelt_c_test(test_data_sources ${CMAKE_CURRENT_SOURCE_DIR}/test_data_sources.c)
# A helper of the shell tests (random models, split dumps); not a test.
add_executable(data_helper ${CMAKE_CURRENT_SOURCE_DIR}/data_helper.c)
target_link_libraries(data_helper PRIVATE smelt_pipeline smelt_stages smelt_model smelt_store smelt_common)
foreach(t evaluate_cli movielens_cli)
  smelt_sh_test(${t} cli/${t}.sh)
  set_property(TEST ${t} APPEND PROPERTY ENVIRONMENT "SMELT_DATA_HELPER=$<TARGET_FILE:data_helper>")
  set_tests_properties(${t} PROPERTIES SKIP_RETURN_CODE 77)
endforeach()
