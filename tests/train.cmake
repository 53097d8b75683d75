# Tests of the train stage (issue 5): losses against PyTorch fixtures, batching, checkpoints,
# the stage end to end (SFT, distillation, on-policy, kill -9 and resume, MPI 1 vs 2 ranks), sequence
# fitting (issue 9) and FMCHISEL's distillation semantics (padded heads, CE in on-policy steps, new losses).
smelt_c_test(test_train_loss ${CMAKE_CURRENT_SOURCE_DIR}/test_train_loss.c)
smelt_c_test(test_train_parts ${CMAKE_CURRENT_SOURCE_DIR}/test_train_parts.c)
foreach(t cli resume_kill mpi fit distill)
  smelt_sh_test(train_${t} train/${t}.sh)
endforeach()
# distill.sh pads a teacher's head with the data tests' helper (tests/data.cmake)
set_property(TEST train_distill APPEND PROPERTY ENVIRONMENT "SMELT_DATA_HELPER=$<TARGET_FILE:data_helper>")
