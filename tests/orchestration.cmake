# Tests of the orchestrator: recipes, store, runner, CLI (issue "Foundation").
smelt_c_test(test_recipe ${CMAKE_CURRENT_SOURCE_DIR}/test_recipe.c)
smelt_c_test(test_store ${CMAKE_CURRENT_SOURCE_DIR}/test_store.c)
smelt_c_test(test_store_open ${CMAKE_CURRENT_SOURCE_DIR}/test_store_open.c)
foreach(t diamond resume_kill concurrent bad_recipes corrupt_gc export_import mpi plan_query failures recipes)
  smelt_sh_test(cli_${t} cli/${t}.sh)
endforeach()
# smelt with the store's fault-injection hook (tests/fault_hook.c), for cli_store_faults only.
add_executable(smelt_faults ${cmd_srcs} ${CMAKE_CURRENT_SOURCE_DIR}/fault_hook.c)
target_link_libraries(smelt_faults PRIVATE smelt_pipeline smelt_serve smelt_stages smelt_model smelt_store smelt_common)
smelt_sh_test(cli_store_faults cli/store_faults.sh)
set_property(TEST cli_store_faults APPEND PROPERTY ENVIRONMENT "SMELT_FAULTS_BIN=$<TARGET_FILE:smelt_faults>")
# Every test that needs ../shared fails (not skips) without it under SMELT_REQUIRE_SHARED=1.
smelt_sh_test(shared_required shared_required.sh)
set_property(TEST shared_required APPEND PROPERTY ENVIRONMENT "SMELT_TEST_BIN_DIR=${CMAKE_CURRENT_BINARY_DIR}")
