# Regenerates tests/vectors/<name>.mpk from cases.R with the base-R codec.
#   Rscript tests/vectors/generate.R [repo root, default "."]
args <- commandArgs(trailingOnly = TRUE)
root <- if (length(args)) args[1] else "."
dir <- file.path(root, "tests", "vectors")
source(file.path(root, "shim", "runtime", "msgpack.R"), keep.source = FALSE)
source(file.path(dir, "cases.R"), keep.source = FALSE)

cases <- mp_vector_cases()
unlink(setdiff(list.files(dir, "\\.mpk$", full.names = TRUE),
               file.path(dir, paste0(names(cases), ".mpk"))))
for (nm in names(cases)) {
  path <- file.path(dir, paste0(nm, ".mpk"))
  mp_write(cases[[nm]], path)
  cat(sprintf("%-12s %8d bytes\n", nm, file.size(path)))
}
