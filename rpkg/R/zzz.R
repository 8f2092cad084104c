# The R-value msgpack codec (mp_pack, mp_read, ...) is canonical in the
# engine's base-R task runtime (shim/runtime/msgpack.R). scripts/install-rpkg.sh
# copies it into inst/runtime/, and it is sourced into the namespace here:
# .onLoad runs before the namespace is sealed, so the assignments are allowed.
.onLoad <- function(libname, pkgname) {
  path <- file.path(libname, pkgname, "runtime", "msgpack.R")
  # pkgload::load_all() loads from a source tree, where the copy is in inst/.
  if (!file.exists(path)) path <- file.path(libname, pkgname, "inst", "runtime", "msgpack.R")
  if (!file.exists(path)) {
    stop("the metaflow package was installed without its msgpack runtime (", path,
         "): install it with `make install` (scripts/install-rpkg.sh)", call. = FALSE)
  }
  sys.source(path, envir = asNamespace(pkgname), keep.source = FALSE)
}
