# Tests of the orchestrator: recipes, store, runner, CLI (issue "Foundation").
smelt_c_test(test_recipe ${CMAKE_CURRENT_SOURCE_DIR}/test_recipe.c)
smelt_c_test(test_store ${CMAKE_CURRENT_SOURCE_DIR}/test_store.c)
smelt_c_test(test_store_open ${CMAKE_CURRENT_SOURCE_DIR}/test_store_open.c)
foreach(t diamond resume_kill concurrent bad_recipes corrupt_gc export_import mpi plan_query failures)
  smelt_sh_test(cli_${t} cli/${t}.sh)
endforeach()
