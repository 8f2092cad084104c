# 2. A static branch with a join using merge_artifacts() and inputs$a$x,
#    the flow built with the native |> pipe.

test_that("a static branch joins with merge_artifacts and inputs$step$x", {
  res <- run_flow("branchflow.R", "run")
  expect_exit(res, 0)
  out <- res$stdout
  for (s in c("start", "a", "b", "join", "end")) {
    expect_line(out, task_line_re(1, s, "Task finished successfully\\."), res)
  }
  expect_line(out, task_line_re(1, "end", "x is 3 ?"), res)
  expect_line(out, task_line_re(1, "end", "shared is from start ?"), res)
  expect_line(out, task_line_re(1, "end", "only_a is A ?"), res)
  expect_line(out, sprintf("^%s Done!$", TS_RE), res)

  # a and b ran as separate tasks; the join has both as parents.
  aid <- task_ids(res$dir, "BranchFlowR", "1", "a")
  bid <- task_ids(res$dir, "BranchFlowR", "1", "b")
  jid <- task_ids(res$dir, "BranchFlowR", "1", "join")
  expect_length(aid, 1)
  expect_length(bid, 1)
  expect_length(jid, 1)
  parents <- unlist(task_meta(res$dir, "BranchFlowR", "1", "join", jid)$parents)
  expect_setequal(parents, c(paste0("1/a/", aid), paste0("1/b/", bid)))
  arts <- names(task_artifacts(res$dir, "BranchFlowR", "1", "join", jid))
  expect_true(all(c("x", "shared", "only_a") %in% arts))
})
