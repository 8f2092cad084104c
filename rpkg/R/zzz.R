# The session's embedded engine is stopped when R exits or the package is
# unloaded (the engine also watches R's pid and exits if R dies).
.onLoad <- function(libname, pkgname) {
  reg.finalizer(engine_session, function(e) stop_session_engine(), onexit = TRUE)
  invisible(NULL)
}

.onUnload <- function(libpath) {
  stop_session_engine()
}
