# The R-value msgpack codec (mp_pack, mp_read, ...) is canonical in the
# engine's base-R task runtime (shim/runtime/msgpack.R); scripts/install-rpkg.sh
# copies it into the package's R/ folder when it installs the package.
.onLoad <- function(libname, pkgname) {
  if (!exists("mp_pack", envir = asNamespace(pkgname), inherits = FALSE)) {
    stop("the metaflow package was installed without its msgpack codec: ",
         "install it with `make install` (scripts/install-rpkg.sh)", call. = FALSE)
  }
}
