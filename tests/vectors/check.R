# Checks the committed vectors against the base-R codec: for every case,
# mp_read(file) is identical() to the case, mp_pack(case) equals the file's
# bytes, and mp_unpack() of those bytes round-trips. Exits non-zero on failure.
#   Rscript tests/vectors/check.R [repo root, default "."]
args <- commandArgs(trailingOnly = TRUE)
root <- if (length(args)) args[1] else "."
dir <- file.path(root, "tests", "vectors")
source(file.path(root, "shim", "runtime", "msgpack.R"), keep.source = FALSE)
source(file.path(dir, "cases.R"), keep.source = FALSE)

cases <- mp_vector_cases()
failures <- character(0)
fail <- function(...) failures <<- c(failures, paste0(...))
for (nm in names(cases)) {
  path <- file.path(dir, paste0(nm, ".mpk"))
  if (!file.exists(path)) {
    fail(nm, ": missing ", path, " (run tests/vectors/generate.R)")
    next
  }
  want <- cases[[nm]]
  bytes <- readBin(path, "raw", file.size(path))
  got <- tryCatch(mp_read(path), error = function(e) e)
  if (inherits(got, "error")) fail(nm, ": mp_read failed: ", conditionMessage(got))
  else if (!identical(got, want)) fail(nm, ": mp_read(file) is not identical to the case")
  if (!identical(mp_pack(want), bytes)) fail(nm, ": mp_pack(case) differs from the file")
  if (!identical(mp_unpack(bytes), want)) fail(nm, ": mp_unpack(file bytes) is not identical")
}
extra <- setdiff(sub("\\.mpk$", "", list.files(dir, "\\.mpk$")), names(cases))
if (length(extra)) fail("files without a case: ", paste(extra, collapse = ", "))

if (length(failures)) {
  cat(paste0("FAIL ", failures, "\n"), sep = "")
  quit(status = 1)
}
cat(sprintf("ok: %d vectors\n", length(cases)))
