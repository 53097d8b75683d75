# Tests of the train stage (issue 5): losses against PyTorch fixtures, batching, checkpoints,
# the stage end to end (SFT, distillation, on-policy, kill -9 and resume, MPI 1 vs 2 ranks).
smelt_c_test(test_train_loss ${CMAKE_CURRENT_SOURCE_DIR}/test_train_loss.c)
smelt_c_test(test_train_parts ${CMAKE_CURRENT_SOURCE_DIR}/test_train_parts.c)
foreach(t cli resume_kill mpi fit)
  smelt_sh_test(train_${t} train/${t}.sh)
endforeach()
